#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: fleet_report
short_description: The report of an evacuation - per VM outcome, totals, timeline - as JSON and Markdown
version_added: 1.0.0
description:
  - "Gathers what each VM of an evacuation left (the plan's entry, and the migration's result or
    its failure) into one report - per VM status (C(migrated), C(skipped: already migrated),
    C(refused), C(failed), C(drained), C(not run)), bytes, seconds, downtime, warnings, the error
    with its advice - with the totals and a timeline of which VMs moved when."
  - Writes C(sxm-<name>.json) and C(sxm-<name>.md) into O(report_dir).
  - Fails, after writing the report, when a VM failed or did not run (so that the playbook's
    exit status says so); C(drained) and C(refused) VMs are named in the report without failing it
    unless O(fail_on_refused).
author:
  - xapi.sxm contributors (@xapi-sxm)
options:
  vms:
    description:
      - One entry per VM - the plan's entry (M(xapi.sxm.evacuation_plan)'s C(vms) item) with
        C(result) (the role's C(sxm_result)) or C(failure) (the failed task's result, with
        C(msg), C(error_code), C(advice)) and C(started)/C(ended) (epoch seconds).
    type: list
    elements: dict
    required: true
  started:
    description: When the evacuation started (epoch seconds).
    type: float
    required: true
  name:
    description: The evacuation's name; the reports' file names carry it.
    type: str
    default: evacuation
  report_dir:
    description: Where to write the reports; not set, none is written.
    type: path
  fail_on_refused:
    description: Fail also when a VM was refused by its preflight.
    type: bool
    default: false
notes:
  - Supports check mode (the report is returned, not written).
seealso:
  - module: xapi.sxm.evacuation_plan
  - module: xapi.sxm.migration_report
"""

EXAMPLES = r"""
- name: Report on the evacuation
  xapi.sxm.fleet_report:
    vms: "{{ entries }}"
    started: "{{ evacuation_started }}"
    name: host1-refresh
    report_dir: /var/tmp/sxm-reports
"""

RETURN = r"""
report:
  description: C(counts) per status, C(seconds), C(bytes_written), C(failed) (names), C(vms) and C(timeline).
  returned: always
  type: dict
reports:
  description: Paths of the JSON and Markdown reports.
  returned: when O(report_dir) is set and not in check mode
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xapi.sxm.plugins.module_utils import fleet


def main():
    module = AnsibleModule(argument_spec=dict(
        vms=dict(type="list", elements="dict", required=True), started=dict(type="float", required=True),
        name=dict(type="str", default="evacuation"), report_dir=dict(type="path"),
        fail_on_refused=dict(type="bool", default=False)), supports_check_mode=True)
    p = module.params
    report = fleet.fleet_report(p["vms"], p["started"])
    out = {"changed": False, "report": report}
    if p["report_dir"] and not module.check_mode:
        out["reports"] = fleet.write_fleet_report(report, p["report_dir"], p["name"])
    failed = list(report["failed"])
    if p["fail_on_refused"]:
        failed += [vm["name"] for vm in report["vms"] if vm["status"] == "refused"]
    if failed:
        module.fail_json(msg="%d of %d VMs did not migrate: %s. What to do: see each one's error and advice in "
                             "the report, then run the evacuation again (what migrated is skipped)"
                             % (len(failed), len(report["vms"]), ", ".join(failed)), **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()

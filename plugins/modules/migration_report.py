#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: migration_report
short_description: One result and a JSON and Markdown report from the steps of a migration
version_added: 0.2.0
description:
  - Merges the results of a migration's steps (M(xapi.sxm.migration_plan),
    M(xapi.sxm.vdi_mirror), M(xapi.sxm.vm_metadata), M(xapi.sxm.migration_verify),
    M(xapi.sxm.vm_cutover)) into one, draws both snapshot trees side by side, and with
    O(report_dir) writes C(sxm-<vm uuid>.json), C(sxm-<vm uuid>.md) and C(sxm-<vm uuid>.html) (both
    trees drawn side by side, no JavaScript) there.
  - Talks to no pool.
author:
  - xapi.sxm contributors (@xapi-sxm)
options:
  results:
    description: The registered results of the steps, in the order they ran.
    type: list
    elements: dict
    required: true
  report_dir:
    description: Folder for the reports; none written if not set.
    type: path
  started:
    description: Epoch seconds when the migration started, for C(timings.total_s).
    type: float
notes:
  - Writes files only on the host it runs on; in check mode it writes nothing.
"""

EXAMPLES = r"""
- name: Report on a migration from its registered steps
  xapi.sxm.migration_report:
    results: ["{{ plan }}", "{{ mirrored }}"]
    report_dir: /var/tmp/sxm-reports
  register: report
"""

RETURN = r"""
result:
  description: The merged result (the role publishes it as C(sxm_result)).
  returned: always
  type: dict
reports:
  description: Paths of the JSON, Markdown and HTML reports.
  returned: when O(report_dir) is set
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xapi.sxm.plugins.module_utils.report import merged_report, write_reports

STEP_NOISE = ("invocation", "failed", "skipped", "waited_s", "diff", "ansible_job_id")


def main():
    module = AnsibleModule(argument_spec=dict(results=dict(type="list", elements="dict", required=True),
                                              report_dir=dict(type="path"), started=dict(type="float")),
                           supports_check_mode=True)
    steps = [dict((k, v) for k, v in step.items() if k not in STEP_NOISE)
             for step in module.params["results"] if not step.get("skipped")]
    result = merged_report(steps)
    if module.params["started"]:
        result["timings"]["total_s"] = round(time.time() - module.params["started"], 3)
    out = {"changed": False, "result": result}
    if module.params["report_dir"] and not module.check_mode:
        out["reports"] = result["reports"] = write_reports(result, module.params["report_dir"])
    module.exit_json(**out)


if __name__ == "__main__":
    main()

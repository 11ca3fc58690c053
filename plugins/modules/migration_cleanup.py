#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: migration_cleanup
short_description: Remove everything a VM's migration made on the destination
version_added: 0.2.0
description:
  - Removes the destination VM and snapshot VMs of a migration job and every disk that carries
    the job's C(sxm:job) marker, on any SR of the destination (a destination SR changed
    between runs leaves nothing behind).
  - A complete migration is kept unless O(include_complete) is set; the source is never
    touched. Refuses while another run holds the job's lock.
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.pools
  - xapi.sxm.job
options:
  vm:
    description:
      - The source VM, by uuid or unique name. A uuid is enough when the source VM no longer
        exists.
    type: str
    required: true
  include_complete:
    description: Also remove the copy of a migration that completed.
    type: bool
    default: false
notes:
  - Supports check mode (lists what would be removed) and diff mode.
seealso:
  - module: xapi.sxm.vdi_mirror
"""

EXAMPLES = r"""
- name: Remove what a failed migration of vm01 left on pool B
  xapi.sxm.migration_cleanup:
    source: "{{ pool_a }}"
    destination: "{{ pool_b }}"
    vm: vm01
"""

RETURN = r"""
removed:
  description: Uuids of the VMs and VDIs removed (or that would be, in check mode).
  returned: success
  type: dict
"""

from ansible_collections.xapi.sxm.plugins.module_utils import cleanup, plan
from ansible_collections.xapi.sxm.plugins.module_utils.errors import InputError
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule


def job_of(src, wanted):
    """The job id (source VM uuid): from the source if it still has the VM, else ``wanted``
    itself when it is a uuid."""
    try:
        return plan.find_vm(src, wanted)[1]["uuid"]
    except InputError:
        if len(wanted) == 36 and wanted.count("-") == 4:
            return wanted
        raise


def work(m):
    src, dst = m.pools()
    job = job_of(src, m.params["vm"])
    with m.job(dst, job):
        removed = cleanup.cleanup(dst, job, m.params["include_complete"], m.check_mode)
    changed = bool(removed["vms"] or removed["vdis"])
    return {"changed": changed, "vm_uuid": job, "removed": removed,
            "diff_texts": ("%d VM(s), %d disk(s) of job %s\n" % (len(removed["vms"]), len(removed["vdis"]), job),
                           "nothing of job %s\n" % job)}


def main():
    SxmModule(dict(vm=dict(type="str", required=True), include_complete=dict(type="bool", default=False)),
              pools=2, job=True).run(work)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: migration_cleanup
short_description: Roll a VM's migration back - the source as it was, nothing left on the destination
version_added: 0.2.0
description:
  - Puts the source VM's C(blocked_operations), tags and power state back as they were before
    the job (recorded on the destination VM when it was imported), then removes the destination
    VM and snapshot VMs of the job and every disk that carries the job's C(sxm:job) marker, on
    any SR of the destination (a destination SR changed between runs leaves nothing behind).
  - The source comes first; if restoring it fails, nothing is removed and a re-run continues.
  - A complete migration is kept unless O(include_complete) is set, and a verified copy whose
    source no longer exists (a C(destroy) disposition) is never removed. Refuses while another
    run holds the job's lock.
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
    description: Also remove the copy of a migration that completed (and lift its C(block) disposition).
    type: bool
    default: false
  restore_source:
    description:
      - Put the source's C(blocked_operations), tags and power state back as they were. A source
        that was running is started again; none is ever stopped.
      - V(false) only removes what the job made on the destination.
    type: bool
    default: true
notes:
  - Supports check mode (lists what would be removed and restored) and diff mode.
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
  sample: {"vms": ["7d7a7c16-7f0e-4c2c-9a53-0b8f2f2d6f10"], "vdis": []}
transient_snapshots_removed:
  description: How many transient snapshots a killed warm run left on the source were removed.
  returned: success
  type: int
restored:
  description: What was put back on the source (or would be, in check mode), one line each.
  returned: success
  type: list
  elements: str
  sample: ["blocked operation start: unblocked"]
"""

from ansible_collections.xapi.sxm.plugins.module_utils import cleanup, plan
from ansible_collections.xapi.sxm.plugins.module_utils.errors import InputError
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule


def source_vm(src, wanted):
    """(job id, (ref, record) of the source VM or None): the job id is the source VM's uuid,
    or ``wanted`` itself when it is a uuid the source no longer has."""
    try:
        ref, rec = plan.find_vm(src, wanted)
        return rec["uuid"], (ref, rec)
    except InputError:
        if len(wanted) == 36 and wanted.count("-") == 4:
            return wanted, None
        raise


def work(m):
    src, dst = m.pools()
    job, src_vm = source_vm(src, m.params["vm"])
    with m.job(dst, job):
        done = cleanup.rollback(src, dst, job, src_vm, m.params["include_complete"], m.params["restore_source"],
                                m.check_mode)
    removed, restored = done["removed"], done["restored"]
    changed = bool(removed["vms"] or removed["vdis"] or restored or done["transient_snapshots_removed"])
    before = "%d VM(s), %d disk(s) of job %s on the destination\nsource: %s\n" % (
        len(removed["vms"]), len(removed["vdis"]), job, "; ".join(restored) or "as it was")
    return {"changed": changed, "vm_uuid": job, "removed": removed, "restored": restored, "warnings": done["left"],
            "transient_snapshots_removed": done["transient_snapshots_removed"],
            "diff_texts": (before, "nothing of job %s on the destination\nsource: as it was\n" % job)}


def main():
    SxmModule(dict(vm=dict(type="str", required=True), include_complete=dict(type="bool", default=False),
                   restore_source=dict(type="bool", default=True)),
              pools=2, job=True).run(work)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vm_metadata
short_description: Recreate a VM and its snapshot VMs on the destination, with the snapshot-time fix-ups
version_added: 0.2.0
description:
  - Imports the VM and every snapshot VM with XAPI's metadata export and import, keeping their
    uuids, names, times and parent links, the disks mapped to the mirrors that M(xapi.sxm.vdi_mirror)
    made and every network mapped (never a new, unconnected network).
  - The destination VM is created already marked as this job's and with C(start) blocked, so
    it is never unmarked or startable before the cut-over.
  - Then restores the source's C(snapshot_time) on the destination snapshot disks where the
    destination session may (local C(root)) and checks it after an C(SR.scan); what cannot be
    kept is returned per disk.
  - Idempotent. A destination VM that already equals the source's tree is not imported again;
    one left by an earlier run that no longer matches is replaced. Run it again after an
    C(SR.scan) to redo the fix-ups.
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.pools
  - xapi.sxm.migration
  - xapi.sxm.job
notes:
  - Supports check mode (a dry-run import checks networks and versions) and diff mode (the
    destination's tree before and after).
seealso:
  - module: xapi.sxm.vdi_mirror
  - module: xapi.sxm.migration_verify
"""

EXAMPLES = r"""
- name: Import vm01's metadata on pool B, once its disks are mirrored
  xapi.sxm.vm_metadata:
    source: "{{ pool_a }}"
    destination: "{{ pool_b }}"
    vm: vm01
  register: imported
"""

RETURN = r"""
destination_vm_uuid:
  description: Uuid of the destination VM (the source's).
  returned: success
  type: str
network_mapping:
  description: Source network name to the destination network it maps to.
  returned: always
  type: dict
snapshot_time_not_kept:
  description: Destination snapshot disks whose C(snapshot_time) differs from the source's, and why.
  returned: success
  type: list
  elements: dict
"""

from ansible_collections.xapi.sxm.plugins.module_utils import markers, migrate
from ansible_collections.xapi.sxm.plugins.module_utils.report import tree_lines
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule, vm_spec
from ansible_collections.xapi.sxm.plugins.module_utils.tree import discover


def destination_tree_text(dst, job):
    """The destination VM's tree as text (the ``--diff`` of this step)."""
    ref, rec = markers.destination_vm(dst, job)
    if ref is None:
        return "no VM %s on the destination\n" % job
    return "\n".join(tree_lines(discover(dst, ref).to_dict())) + "\n"


def work(m):
    src, dst = m.pools()
    options = m.options()
    the_plan = migrate.make_plan(src, dst, options)
    before = destination_tree_text(dst, the_plan["job"]) if m.module._diff else None
    with m.job(dst, the_plan["job"]):
        result = migrate.metadata_step(src, dst, the_plan, options, m.check_mode)
    if before is not None:
        after = ("\n".join(tree_lines(the_plan["tree"].to_dict())) + "\n" if m.check_mode
                 else destination_tree_text(dst, the_plan["job"]))
        result["diff_texts"] = (before, after)
    return result


def main():
    SxmModule(vm_spec(), pools=2, job=True).run(work)


if __name__ == "__main__":
    main()

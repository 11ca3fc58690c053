#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: migration_plan
short_description: Preflight and plan of a VM's migration, with what the destination already holds
version_added: 0.2.0
description:
  - Checks that the VM can move (halted, suspended or running, every network mappable, SRs found)
    and returns the plan - per disk the mirror order of its snapshot tree (inactive branches
    first), the destination SR and the bytes to read - and how far an earlier run got on the
    destination (nodes mirrored per disk, the state of the destination VM).
  - Reads only; never changes either pool. The first step of the role M(xapi.sxm.migrate_vm)
    (the role's C(--check) prints it).
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.pools
  - xapi.sxm.migration
options:
  check_nbd:
    description:
      - Open (and close) one NBD export of the source, so that a network, port, TLS or
        certificate problem is found before anything is made on the destination.
      - The role M(xapi.sxm.evacuate) turns it off - the mirror opens the same export once it
        holds its slots, so that the pools' caps count every connection.
    type: bool
    default: true
notes:
  - Read-only; supports check mode.
seealso:
  - module: xapi.sxm.vdi_mirror
  - module: xapi.sxm.snapshot_tree_info
"""

EXAMPLES = r"""
# pool_a and pool_b: dicts with url, username, password and ca_path (for example from a vault)
- name: Plan the migration of vm01 from pool A to pool B
  xapi.sxm.migration_plan:
    source: "{{ pool_a }}"
    destination: "{{ pool_b }}"
    vm: vm01
  register: plan

- name: Show the walk of each disk
  ansible.builtin.debug:
    msg: "disk {{ item.userdevice }}: {{ item.walk | join(' -> ') }}"
  loop: "{{ plan.plan.disks }}"
"""

RETURN = r"""
vm_uuid:
  description: Uuid of the VM (the same on both pools).
  returned: always
  type: str
plan:
  description:
    - Per disk (C(disks)) the mirror order, source and destination SR (and its SMAPI version),
      sizes, whether CBT is used; C(space) the free-space check per destination SR.
    - C(layouts) names every unusual layout of the tree and how it is carried (disk only in
      snapshots, VDI snapshot without a VM snapshot, C(snapshot_of) dangles, CBT metadata only).
    - C(mode) is C(cold) or C(warm); C(memory_images) lists the memory images (suspend VDIs) of a
      suspended VM and of its checkpoints, each with its size and destination SR.
  returned: always
  type: dict
source_tree:
  description: The source snapshot tree (nodes with uuid, name, time, parent, children, disks).
  returned: always
  type: dict
destination:
  description: Per disk the nodes already mirrored and what the working disk holds; the VM's state.
  returned: always
  type: dict
network_mapping:
  description: Source network name to the destination network it maps to.
  returned: always
  type: dict
summary:
  description: The plan in a line per disk, and the destination VM's state.
  returned: always
  type: list
  elements: str
lines:
  description: The source tree drawn as text.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.xapi.sxm.plugins.module_utils import metadata, migrate
from ansible_collections.xapi.sxm.plugins.module_utils.report import tree_lines
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule, vm_spec


def work(m):
    src, dst = m.pools()
    the_plan = migrate.make_plan(src, dst, m.options())
    result = migrate.plan_step(src, dst, the_plan, check_nbd=m.params["check_nbd"])
    # an unmappable network is found here, before any byte moves
    dummy, result["network_mapping"] = metadata.exported_metadata(src, dst, the_plan["job"], m.params["network_map"])
    result["lines"] = tree_lines(result["source_tree"])
    result["summary"] = summary(result)
    return result


def summary(result):
    """One line per disk, and how far an earlier run got."""
    lines = []
    progress = dict((d["userdevice"], d) for d in result["destination"]["disks"])
    for disk in result["plan"]["disks"]:
        done = progress[disk["userdevice"]]
        lines.append("disk %s: %d snapshot(s)%s, at most %.1f MiB to read, to SR %s; %d node(s) already mirrored%s"
                     % (disk["userdevice"], len(disk["walk"]), " and the VM's own disk" if disk["has_leaf"] else "",
                        disk["bytes_to_read"] / 1048576.0, disk["destination_sr"], done["nodes_mirrored"],
                        ", CBT" if disk["cbt"] else ""))
    lines.append("destination VM: %s" % (result["destination"]["vm_state"] or "not there yet"))
    return lines


def main():
    spec = vm_spec()
    spec.update(check_nbd=dict(type="bool", default=True))
    SxmModule(spec, pools=2).run(work)


if __name__ == "__main__":
    main()

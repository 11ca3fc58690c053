#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: snapshot_tree_info
short_description: Read the snapshot tree of a VM, reverted branches included
version_added: 0.1.0
description:
  - Discovers the snapshot tree of a VM with a few batched calls, from the snapshot VMs'
    C(parent) links and the VM's own C(parent) chain (the active path).
  - For every node it lists the disks by VBD C(userdevice); CD drives and empty drives are
    left out; a snapshot taken before a disk was added lacks that disk.
  - For every disk it gives the order in which xapi.sxm mirrors its tree (inactive branches
    first, the active branch last).
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.connection
options:
  vm:
    description: The VM, by uuid or by a name that is unique on the pool.
    type: str
    required: true
notes:
  - Read-only; supports check mode.
"""

EXAMPLES = r"""
- name: Read the tree of vm01
  xapi.sxm.snapshot_tree_info:
    url: "{{ pool_a_url }}"
    username: root
    password: "{{ pool_a_password }}"
    ca_path: "{{ pool_a_ca }}"
    vm: vm01
  register: tree

- name: Draw it
  ansible.builtin.debug:
    var: tree.lines
"""

RETURN = r"""
tree:
  description: The tree.
  returned: always
  type: dict
  contains:
    vm:
      description: The VM itself as a node (C(is_vm) true).
      type: dict
    nodes:
      description:
        - Every node, parents before children. Each has C(uuid), C(name_label),
          C(name_description), C(snapshot_time), C(is_vm), C(active) (on the active path),
          C(is_checkpoint), C(memory_image) (the suspend VDI of a checkpoint or a suspended
          VM, as a disk, or null), C(parent) (uuid or null), C(children) (uuids) and C(disks)
          (C(userdevice), C(vdi_uuid), C(name_label), C(virtual_size),
          C(physical_utilisation), C(cbt_enabled)).
      type: list
      elements: dict
    active_path:
      description: Uuids of the snapshots from the root to the VM's parent.
      type: list
      elements: str
    loose_snapshots:
      description:
        - VDI snapshots of the VM's disks that no snapshot VM holds (C(VDI.snapshot) called alone,
          or of a disk reverted or removed since), each as a node's disk is.
      type: list
      elements: dict
walk:
  description:
    - Per disk userdevice, the snapshot uuids in mirror order; then, as the migration carries them,
      the uuids of the disk's loose VDI snapshots.
  returned: always
  type: dict
lines:
  description: The tree drawn as text, C(*) marking the active path.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.xapi.sxm.plugins.module_utils.plan import find_vm
from ansible_collections.xapi.sxm.plugins.module_utils.report import tree_lines
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule
from ansible_collections.xapi.sxm.plugins.module_utils.tree import discover


def work(m):
    conn = m.pool()
    tree = discover(conn, find_vm(conn, m.params["vm"])[0])
    walk = dict((u, [n.uuid for n in tree.mirror_walk(u)]) for u in tree.userdevices())
    as_dict = tree.to_dict()
    return {"changed": False, "tree": as_dict, "walk": walk, "lines": tree_lines(as_dict)}


def main():
    SxmModule(dict(vm=dict(type="str", required=True)), pools=1).run(work)


if __name__ == "__main__":
    main()

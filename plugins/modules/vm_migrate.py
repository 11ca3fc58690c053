#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vm_migrate
short_description: Migrate a halted VM with its whole snapshot tree to another pool
version_added: 0.1.0
description:
  - Copies a VM and every one of its snapshots, reverted branches included, from one
    XenServer / XCP-ng pool to another, so that the destination VM can be reverted to any of
    its snapshots exactly as on the source.
  - Disk data is read from the source over NBD (TLS pinned to the certificate the pool
    returns) and written to the destination with chunked raw imports, one working disk per
    source disk walking the snapshot tree; only blocks that differ between consecutive nodes
    travel.
  - The VM and snapshot records are recreated with XAPI's metadata export and import, keeping
    their uuids, names, times and parent links.
  - Idempotent. A run that failed half way continues where it stopped; a run after a
    complete migration changes nothing.
  - Only cold migrations are built so far. The VM must be halted.
  - One task for the whole flow. The role M(xapi.sxm.migrate_vm) runs the same steps as modules
    of their own (M(xapi.sxm.migration_plan), M(xapi.sxm.vdi_mirror), M(xapi.sxm.vm_metadata),
    M(xapi.sxm.migration_verify), M(xapi.sxm.vm_cutover)), each visible and re-runnable.
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.pools
  - xapi.sxm.migration
  - xapi.sxm.job
  - xapi.sxm.data_path
  - xapi.sxm.warm
options:
  source_disposition:
    description:
      - What happens to the source VM after the destination is verified.
      - V(keep) leaves it as it is, V(block) blocks its C(start) operation with a reason,
        V(destroy) removes it, its snapshots and their disks.
    type: str
    choices: [keep, block, destroy]
    default: keep
  verify:
    description: Compare both trees and the disks' content after the copy.
    type: bool
    default: true
  verify_depth:
    description:
      - How much of the disks' content O(verify) reads; see M(xapi.sxm.migration_verify).
    type: str
    choices: [sample, full]
    default: sample
  report_dir:
    description: If set, a JSON and a Markdown report are written there.
    type: path
notes:
  - Needs the C(XenAPI) Python library and libnbd's Python bindings (Debian package
    C(python3-libnbd)) on the host that runs it; data moves through that host, so delegate
    to a host near both pools.
  - The source pool needs a network with the C(nbd) (or C(insecure_nbd)) purpose that reaches
    the VM's SRs.
  - Supports check mode; it reports the plan and changes nothing.
seealso:
  - module: xapi.sxm.snapshot_tree_info
"""

EXAMPLES = r"""
- name: Migrate vm01 with its snapshots from pool A to pool B, then block vm01 on pool A
  xapi.sxm.vm_migrate:
    source:
      url: "{{ pool_a_url }}"
      username: root
      password: "{{ pool_a_password }}"
      ca_path: "{{ pool_a_ca }}"
    destination:
      url: "{{ pool_b_url }}"
      username: root
      password: "{{ pool_b_password }}"
      ca_path: "{{ pool_b_ca }}"
    vm: vm01
    source_disposition: block
    report_dir: /var/tmp/sxm-reports
  register: migration

- name: Show what moved
  ansible.builtin.debug:
    msg: "{{ migration.bytes_written | default(0) }} bytes written for {{ migration.source_tree.nodes | length }} nodes"
"""

RETURN = r"""
vm_uuid:
  description: Uuid of the VM (the same on both pools).
  returned: always
  type: str
destination_vm_uuid:
  description: Uuid of the destination VM.
  returned: when the VM is on the destination
  type: str
plan:
  description: Per disk the mirror order (inactive branches first), destination SR, sizes.
  returned: always
  type: dict
source_tree:
  description: The source snapshot tree (nodes with uuid, name, time, parent, children, disks).
  returned: always
  type: dict
destination_tree:
  description: The destination snapshot tree, same shape as RV(source_tree).
  returned: when the VM is on the destination
  type: dict
disks:
  description: Per disk the source to destination VDI pairs and the bytes read and written.
  returned: when data moved
  type: list
  elements: dict
bytes_written:
  description: Bytes of disk data written to the destination by this run.
  returned: when data moved
  type: int
walk_minimum_bytes:
  description: The least data the tree walk must write (blocks where consecutive nodes differ).
  returned: when data moved
  type: int
walk_minimum_2m_bytes:
  description:
    - The same minimum counted in 2 MiB blocks, the finest a VHD allocation map can name.
  returned: when data moved
  type: int
written_read_back_bytes:
  description: Bytes written and then read back from the destination to check them.
  returned: when data moved
  type: int
edge_minimum_bytes:
  description: The sum of the per-edge differences of the tree, for comparison.
  returned: when data moved
  type: int
snapshot_time_not_kept:
  description: Destination snapshot disks whose C(snapshot_time) differs from the source's, and why.
  returned: always
  type: list
  elements: dict
cutover_pending:
  description: True when the cut-over is held (O(cutover=manual), or a closed window), as in M(xapi.sxm.vdi_mirror).
  returned: when the cut-over is held
  type: bool
next_step:
  description: How to finish a held cut-over, in words.
  returned: when the cut-over is held
  type: str
downtime_s:
  description: Seconds a running VM was down, shutdown request to destination start (see M(xapi.sxm.vdi_mirror)).
  returned: when a running VM was cut over
  type: float
warm:
  description: A running VM's passes, shutdown and cut-over, as M(xapi.sxm.vdi_mirror) returns them.
  returned: when a running VM was migrated warm
  type: dict
timings:
  description: Seconds spent moving data, importing metadata, verifying, and in total.
  returned: when data moved
  type: dict
trees:
  description: Both snapshot trees drawn side by side, source left, destination right.
  returned: when the VM is on the destination
  type: list
  elements: str
reports:
  description: Paths of the JSON and Markdown reports.
  returned: when O(report_dir) is set
  type: list
  elements: str
"""

from ansible_collections.xapi.sxm.plugins.module_utils import migrate
from ansible_collections.xapi.sxm.plugins.module_utils.plan import find_vm
from ansible_collections.xapi.sxm.plugins.module_utils.report import merged_report, write_reports
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule, data_path_spec, vm_spec, warm_spec


def work(m):
    src, dst = m.pools()
    options = m.options()
    job = find_vm(src, options.vm)[1]["uuid"]
    with m.job(dst, job, watch=True) as cancel:
        result = merged_report([migrate.migrate(src, dst, options, m.check_mode, cancel, partial=m.partial)])
    if m.params["report_dir"] and not m.check_mode:
        result["reports"] = write_reports(result, m.params["report_dir"])
    return result


def main():
    spec = vm_spec()
    spec.update(data_path_spec())
    spec.update(warm_spec(), source_disposition=dict(type="str", choices=["keep", "block", "destroy"], default="keep"),
                verify=dict(type="bool", default=True), report_dir=dict(type="path"),
                verify_depth=dict(type="str", choices=["sample", "full"], default="sample"))
    SxmModule(spec, pools=2, job=True).run(work)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vdi_mirror
short_description: Mirror the snapshot trees of a VM's disks to another pool over NBD
version_added: 0.2.0
description:
  - For each disk of the VM (or those in O(userdevices)), one working disk on the destination
    walks the snapshot tree of the disk, inactive branches first; at each node only the blocks that
    differ from what the working disk holds are written, then the working disk is snapshotted
    as the node's destination disk. Last, the working disk is brought to the VM's own disk.
  - Data is read from the source over NBD (TLS pinned to the certificate the pool returns)
    and written with chunked raw imports. Only blocks whose content differs travel; changed
    block tracking, where both disks have it, limits what is read.
  - Idempotent and resumable. Every destination disk carries C(sxm:*) markers; the working
    disk records exactly what it holds. A re-run skips what is done, and a node or leaf that
    no longer matches its source (a revert, a deleted snapshot, a write to the halted disk)
    is redone from what the working disk really holds.
  - A running VM (O(mode=warm), or O(mode=auto) on a running VM) has only its snapshots
    mirrored this way; its own disks converge in passes from transient snapshots, and then
    this same call cuts it over - shutdown, last delta, metadata, start on the destination -
    so that no task boundary lies inside the downtime. See O(max_passes).
  - The long step of a migration. Run it with C(async) and wait with
    M(xapi.sxm.migration_wait), which keeps O(keepalive_file) fresh and prints progress.
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.pools
  - xapi.sxm.migration
  - xapi.sxm.job
  - xapi.sxm.data_path
  - xapi.sxm.warm
options:
  userdevices:
    description: Mirror only these disks (VBD C(userdevice)); all disks if not set.
    type: list
    elements: str
notes:
  - Needs the C(XenAPI) Python library and libnbd's Python bindings (Debian package
    C(python3-libnbd)) on the host that runs it; data moves through that host.
  - The source pool needs a network with the C(nbd) (or C(insecure_nbd)) purpose; reading back
    what the working disk holds after a changed source needs one on the destination too.
  - Supports check mode (says what would be mirrored).
seealso:
  - module: xapi.sxm.migration_wait
  - module: xapi.sxm.vm_metadata
"""

EXAMPLES = r"""
- name: Mirror the disks of vm01 to pool B, in the background
  xapi.sxm.vdi_mirror:
    source: "{{ pool_a }}"
    destination: "{{ pool_b }}"
    vm: vm01
    progress_file: /tmp/sxm-vm01.progress
    keepalive_file: /tmp/sxm-vm01.alive
  async: 86400
  poll: 0
  register: mirror_job

- name: Wait for it, printing progress
  xapi.sxm.migration_wait:
    jid: "{{ mirror_job.ansible_job_id }}"
    progress_file: /tmp/sxm-vm01.progress
    keepalive_file: /tmp/sxm-vm01.alive
    label: vm01
  register: mirrored
"""

RETURN = r"""
vm_uuid:
  description: Uuid of the VM.
  returned: always
  type: str
disks:
  description:
    - Per disk the source to destination VDI pairs, bytes read and written, nodes mirrored and
      already done, stale node disks removed, bytes of the working disk read back.
    - "C(delta_sources) per disk: for each source (C(cbt), C(vhd), C(content)) the number of nodes
      whose reads it chose."
  returned: always
  type: list
  elements: dict
bytes_written:
  description: Bytes of disk data written to the destination by this run.
  returned: when data moved
  type: int
bytes_read:
  description: Bytes read from the source by this run.
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
cutover_pending:
  description:
    - A running VM's copy is converged and its cut-over held (O(cutover=manual), or a window
      that closed); a run with O(cutover=now) finishes it.
  returned: when the cut-over is held
  type: bool
next_step:
  description: What to do next when the cut-over is held, in words.
  returned: when the cut-over is held
  type: str
downtime_s:
  description: A running VM's downtime, from its shutdown request to the destination VM running.
  returned: when a running VM was cut over
  type: float
warm:
  description:
    - A running VM's move. C(passes) (each C(pass), C(bytes_written), C(bytes_read),
      C(seconds)), C(downtime_s), C(shutdown) (V(clean) or V(hard)) with C(shutdown_s) (the
      guest's own part of the downtime), C(final_delta_bytes) written while it was stopped,
      C(cutover) with its C(decision) (V(cut over) or V(hold), then C(waiting)) and whether
      the passes C(converged) below O(cutover_bytes).
  returned: when a running VM was migrated warm
  type: dict
slots:
  description:
    - With O(slots), how long the step waited for its slots (C(waited_s)), when it got them
      (C(taken_at), epoch seconds) and which capped places it held (C(places)).
  returned: when O(slots) set a cap
  type: dict
timings:
  description:
    - Seconds the step took (C(data_s)), reading back what was written included, and the
      seconds of that read-back summed over the disks (C(written_read_back_s)) with the CPU
      seconds it spent (C(written_read_back_cpu_s)).
  returned: when data moved
  type: dict
"""

from ansible_collections.xapi.sxm.plugins.module_utils import migrate
from ansible_collections.xapi.sxm.plugins.module_utils.plan import progress_text
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule, data_path_spec, vm_spec, warm_spec


def work(m):
    src, dst = m.pools()
    options = m.options()
    the_plan = migrate.make_plan(src, dst, options)
    m.partial.update(vm_uuid=the_plan["job"])
    before = progress_text(dst, the_plan) if m.module._diff else None
    with m.job(dst, the_plan["job"], watch=True) as cancel, m.slots(src, dst, the_plan, drainable=True) as held:
        result = migrate.mirror_step(src, dst, the_plan, options, m.check_mode, cancel,
                                     on_disk=m.partial.update)
    if held is not None:
        result["slots"] = held.summary()
    if before is not None:
        result["diff_texts"] = (before, progress_text(dst, the_plan) if not m.check_mode else
                                "every disk mirrored\n")
    return result


def main():
    spec = vm_spec()
    spec.update(data_path_spec())
    spec.update(warm_spec(), userdevices=dict(type="list", elements="str"))
    SxmModule(spec, pools=2, job=True).run(work)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: migration_verify
short_description: Verify that a VM's destination copy equals the source, tree and bytes
version_added: 0.2.0
description:
  - Compares the destination VM's snapshot tree with the source's (names, descriptions,
    times, parent links, disks) and every disk of every node byte for byte, read over NBD on
    both pools.
  - Records what it verified on the destination VM (a fingerprint of the source state) and
    moves it to the state C(verified). M(xapi.sxm.vm_cutover) refuses a source that changed
    since.
  - Idempotent - a destination already verified against the current source records is not read
    again unless O(force) is set.
  - With O(depth=full) it reads every disk in full; on large disks run it with C(async) and
    M(xapi.sxm.migration_wait).
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.pools
  - xapi.sxm.migration
  - xapi.sxm.job
options:
  content:
    description:
      - Compare the disks' bytes too. With V(false) only the trees are compared, and
        M(xapi.sxm.vm_cutover) will then refuse O(xapi.sxm.vm_cutover#module:source_disposition=destroy).
    type: bool
    default: true
  depth:
    description:
      - V(sample) compares a random 1 % of the blocks of every node (at least 16 per disk) on
        both pools; every block the mirror wrote was already read back from the destination
        and compared with the source's digests. A block corrupted after it was written is
        found with the probability of the sample.
      - V(full) reads every node of every disk whole on both pools (as much as the migration
        read, twice over).
    type: str
    choices: [sample, full]
    default: sample
  force:
    description: Verify again even when the current source state was verified already.
    type: bool
    default: false
notes:
  - Supports check mode (says whether it would verify).
seealso:
  - module: xapi.sxm.vm_cutover
"""

EXAMPLES = r"""
- name: Verify vm01 on pool B
  xapi.sxm.migration_verify:
    source: "{{ pool_a }}"
    destination: "{{ pool_b }}"
    vm: vm01
  register: verified
"""

RETURN = r"""
verified_disks:
  description: Disks compared by this run (whole or sampled, see O(depth)).
  returned: when it verified
  type: int
slots:
  description:
    - With O(slots), how long the step waited for its slots (C(waited_s)), when it got them
      (C(taken_at), epoch seconds) and which capped places it held (C(places)).
  returned: when O(slots) set a cap
  type: dict
destination_tree:
  description: The destination snapshot tree.
  returned: success
  type: dict
"""

from ansible_collections.xapi.sxm.plugins.module_utils import migrate
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule, vm_spec


def work(m):
    src, dst = m.pools()
    the_plan = migrate.make_plan(src, dst, m.options())
    with m.job(dst, the_plan["job"], watch=True) as cancel:
        # reading content moves data: it waits for the evacuation's slots like the mirror
        with m.slots(src, dst, the_plan, wanted=m.params["content"]) as held:
            result = migrate.verify_step(src, dst, the_plan, m.check_mode, read_content=m.params["content"],
                                         depth=m.params["depth"], force=m.params["force"],
                                         progress_file=m.params["progress_file"], cancel=cancel)
    if held is not None:
        result["slots"] = held.summary()
    return result


def main():
    spec = vm_spec()
    spec.update(content=dict(type="bool", default=True), force=dict(type="bool", default=False),
                depth=dict(type="str", choices=["sample", "full"], default="sample"))
    SxmModule(spec, pools=2, job=True).run(work)


if __name__ == "__main__":
    main()

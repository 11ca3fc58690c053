#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vm_cutover
short_description: Complete a verified migration and dispose of the source VM
version_added: 0.2.0
description:
  - Makes the verified destination VM startable (removes the C(start) block its import
    carried) and marks the migration complete, then disposes of the source as
    O(source_disposition) says.
  - Refuses unless M(xapi.sxm.migration_verify) verified the destination against the source
    as it is now (its snapshots and disks). V(destroy) also re-reads the source VM's own disks
    to prove they were not written since.
  - Idempotent - a complete migration whose disposition is applied reports no change.
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.pools
  - xapi.sxm.migration
  - xapi.sxm.job
options:
  source_disposition:
    description:
      - V(keep) leaves the source as it is, V(block) blocks its C(start) operation with a
        reason, V(destroy) removes it, its snapshots and their disks.
    type: str
    choices: [keep, block, destroy]
    default: keep
notes:
  - Supports check mode and diff mode.
seealso:
  - module: xapi.sxm.migration_verify
"""

EXAMPLES = r"""
- name: Cut vm01 over to pool B and block it on pool A
  xapi.sxm.vm_cutover:
    source: "{{ pool_a }}"
    destination: "{{ pool_b }}"
    vm: vm01
    source_disposition: block
"""

RETURN = r"""
destination_vm_uuid:
  description: Uuid of the destination VM.
  returned: success
  type: str
source_disposition:
  description: What was done with the source.
  returned: success
  type: str
"""

from ansible_collections.xapi.sxm.plugins.module_utils import migrate
from ansible_collections.xapi.sxm.plugins.module_utils.plan import progress_text
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule, vm_spec


def work(m):
    src, dst = m.pools()
    the_plan = migrate.make_plan(src, dst, m.options())
    before = progress_text(dst, the_plan) if m.module._diff else None
    with m.job(dst, the_plan["job"]) as cancel:
        result = migrate.cutover_step(src, dst, the_plan, m.params["source_disposition"], m.check_mode, cancel)
    if before is not None:
        after = progress_text(dst, the_plan) if not m.check_mode else "destination VM: complete\n"
        result["diff_texts"] = (before, after)
    return result


def main():
    spec = vm_spec()
    spec.update(source_disposition=dict(type="str", choices=["keep", "block", "destroy"], default="keep"))
    SxmModule(spec, pools=2, job=True).run(work)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: evacuation_plan
short_description: Select, order and plan the VMs of an evacuation, for the whole fleet at once
version_added: 1.0.0
description:
  - Lists the VMs of the source pool that the selection names (a host, tags, a list of VMs, or
    all of them, minus exclusions), puts them in order, and plans each one as
    M(xapi.sxm.migration_plan) does - its tree, the bytes to move, its destination SRs.
  - A VM already migrated (the destination holds it complete) is C(done) and skipped; a VM that
    cannot move (its own preflight fails) is C(refused) with the reason, and the others go on.
  - The destination SRs are checked for the whole fleet, not VM by VM - the fleet is refused,
    naming the SRs short of space, when the VMs bound for an SR need more together than it has
    free - and the duration is estimated at the given concurrency and bandwidth.
  - Reads only; never changes either pool. The first step of the role M(xapi.sxm.evacuate),
    whose C(--check) prints it.
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.pools
options:
  host:
    description: Select the VMs whose disks the source host of this name or uuid serves.
    type: str
  all:
    description: Select every VM of the source pool (never the control domain, templates or snapshots).
    type: bool
    default: false
  tags:
    description: Select the VMs carrying any of these tags.
    type: list
    elements: str
    default: []
  vms:
    description: Select these VMs (uuids or unique names).
    type: list
    elements: str
    default: []
  exclude:
    description: Leave out these VMs (uuids or unique names).
    type: list
    elements: str
    default: []
  exclude_tags:
    description: Leave out the VMs carrying any of these tags.
    type: list
    elements: str
    default: []
  order:
    description:
      - C(size) the largest first (the long jobs start early), C(smallest), C(name), or
        C(priority) - the VMs tagged O(priority_tag_prefix)C(<n>) first, lowest n first, then
        the others, each group by size.
    type: str
    choices: [size, smallest, name, priority]
    default: size
  priority_tag_prefix:
    description: The prefix of the tags that give a VM its priority (C(sxm-priority=1) goes before C(sxm-priority=2)).
    type: str
    default: sxm-priority=
  concurrency:
    description: Jobs at once, for the estimate.
    type: int
    default: 2
  bandwidth_limit:
    description: Bytes per second of one job (0 for no limit), for the estimate.
    type: int
    default: 0
  total_bandwidth_limit:
    description: Bytes per second of the whole evacuation (0 for no limit), for the estimate.
    type: int
    default: 0
  assumed_rate:
    description:
      - Bytes per second one job moves without a limit, for the estimate. The default is a
        conservative figure for one NBD stream; give what a first migration measured (its
        report's bytes read over its data seconds).
    type: int
    default: 104857600
  sr_map:
    description: Source SR uuid to destination SR uuid, as for M(xapi.sxm.migration_plan).
    type: dict
    default: {}
  default_sr:
    description: Destination SR (uuid) for disks whose SR is not in O(sr_map).
    type: str
  network_map:
    description: Source network uuid or name to destination network uuid or name.
    type: dict
    default: {}
  mode:
    description: How running VMs move (C(auto) - warm when running, C(cold), C(warm)).
    type: str
    choices: [auto, cold, warm]
    default: auto
  unmovable_devices:
    description: C(refuse) or C(warn) about devices that cannot move (PCI, vGPU, USB).
    type: str
    choices: [refuse, warn]
    default: refuse
notes:
  - Read-only; supports check mode.
seealso:
  - module: xapi.sxm.migration_plan
  - module: xapi.sxm.fleet_report
"""

EXAMPLES = r"""
- name: Plan the evacuation of host1, largest VMs first
  xapi.sxm.evacuation_plan:
    source: "{{ pool_a }}"
    destination: "{{ pool_b }}"
    host: xcp-host1
    exclude_tags: [do-not-move]
    default_sr: 0b5f4a8e-0a7d-4b61-9a57-7c5b0d3e1f22
    concurrency: 4
  register: evacuation

- name: Show it
  ansible.builtin.debug:
    msg: "{{ evacuation.lines }}"
"""

RETURN = r"""
vms:
  description:
    - The selected VMs in order, each with C(uuid), C(name), C(power_state), C(host), C(rank),
      C(bytes) (to move), C(status) (C(todo), C(done) or C(refused) with C(error_code),
      C(error), C(advice)), and for C(todo) its C(mode) and C(space) per destination SR.
  returned: always
  type: list
  elements: dict
srs:
  description: Per destination SR the bytes the fleet needs there and its free bytes.
  returned: always
  type: list
  elements: dict
estimate_s:
  description: Estimated seconds for the VMs to move at O(concurrency) and the bandwidth given.
  returned: always
  type: float
lines:
  description: The plan as text lines.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.xapi.sxm.plugins.module_utils import fleet
from ansible_collections.xapi.sxm.plugins.module_utils.plan import Options
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule

SELECTION = ("host", "tags", "vms", "exclude", "exclude_tags")


def work(m):
    p = m.params
    src, dst = m.pools()
    selection = dict((name if name != "vms" else "names", p[name]) for name in SELECTION)
    selection["everything"] = p["all"]

    def options_for(vm):
        return Options(vm["sxm_uuid"], sr_map=p["sr_map"], default_sr=p["default_sr"], network_map=p["network_map"],
                       mode=p["mode"], unmovable_devices=p["unmovable_devices"])
    planned = fleet.fleet_plan(src, dst, selection, options_for, concurrency=max(1, p["concurrency"]),
                               job_limit=p["bandwidth_limit"], total_limit=p["total_bandwidth_limit"],
                               assumed_rate=p["assumed_rate"], how=p["order"],
                               priority_prefix=p["priority_tag_prefix"])
    return dict(planned, changed=False)


def main():
    spec = dict(
        host=dict(type="str"), all=dict(type="bool", default=False),
        tags=dict(type="list", elements="str", default=[]), vms=dict(type="list", elements="str", default=[]),
        exclude=dict(type="list", elements="str", default=[]),
        exclude_tags=dict(type="list", elements="str", default=[]),
        order=dict(type="str", choices=list(fleet.ORDERS), default="size"),
        priority_tag_prefix=dict(type="str", default="sxm-priority="),
        concurrency=dict(type="int", default=2), bandwidth_limit=dict(type="int", default=0),
        total_bandwidth_limit=dict(type="int", default=0), assumed_rate=dict(type="int", default=100 << 20),
        sr_map=dict(type="dict", default={}), default_sr=dict(type="str"),
        network_map=dict(type="dict", default={}),
        mode=dict(type="str", choices=["auto", "cold", "warm"], default="auto"),
        unmovable_devices=dict(type="str", choices=["refuse", "warn"], default="refuse"),
    )
    SxmModule(spec, pools=2).run(work)


if __name__ == "__main__":
    main()

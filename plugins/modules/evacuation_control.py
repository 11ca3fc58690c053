#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: evacuation_control
short_description: Pause, drain or resume an evacuation, and see who holds its slots
version_added: 1.0.0
description:
  - An evacuation's state is a key C(sxm:evacuation:<name>) in the source pool's C(other_config),
    which every job of it reads while it waits for its slots, from any controller.
  - C(paused) - no job starts moving data; jobs already moving finish their step, then wait.
    C(draining) - the VMs that have not started are left (reported C(drained)), the others
    finish. C(running) - resumes (removes the key); run the evacuation again to move the
    drained VMs, the migrated ones are skipped.
  - Returns the slots held on the source pool and its hosts (by whom, since when) and the jobs
    waiting in the evacuation's queue.
author:
  - xapi.sxm contributors (@xapi-sxm)
extends_documentation_fragment:
  - xapi.sxm.connection
options:
  name:
    description: The evacuation's name (the role's C(sxm_evacuation_name)).
    type: str
    required: true
  state:
    description: The state to set; not given, the module only reports.
    type: str
    choices: [running, paused, draining]
notes:
  - Supports check mode and diff mode.
seealso:
  - module: xapi.sxm.evacuation_plan
"""

EXAMPLES = r"""
- name: Drain the evacuation of host1 (finish what runs, start nothing new)
  xapi.sxm.evacuation_control:
    url: https://pool-a.example.com
    username: root
    password: "{{ vault_pool_a_password }}"
    name: host1-refresh
    state: draining
"""

RETURN = r"""
state:
  description: The evacuation's state after the call.
  returned: always
  type: str
previous_state:
  description: Its state before the call.
  returned: always
  type: str
slots:
  description: Every slot key held on the source pool and its hosts, with its holder's description and since when.
  returned: always
  type: list
  elements: dict
waiting:
  description: The jobs of this evacuation waiting for a slot, in order.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.xapi.sxm.plugins.module_utils import lock as locking, slots as slotting
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule


def held_slots(conn):
    out = []
    objects = [("pool", ref) for ref in conn.call("pool.get_all")]
    objects += [("host", ref) for ref in conn.call("host.get_all")]
    for obj_class, ref in objects:
        config = conn.call("%s.get_other_config" % obj_class, ref)
        label = conn.call("%s.get_name_label" % obj_class, ref)
        for key in slotting.slot_keys(config):
            if key.startswith(locking.LOCK_PREFIX):
                claim = locking.decode_claim(config[key]) or {}
                out.append({"on": "%s %s" % (obj_class, label), "slot": key[len(locking.LOCK_PREFIX):],
                            "holder": claim.get("description"), "since": claim.get("since")})
    return out


def waiting(conn, name):
    config = conn.call("pool.get_other_config", conn.call("pool.get_all")[0])
    queued = sorted(p for p in (slotting.parse_queue_key(k) for k in config) if p and p[0] == name)
    return [job for dummy, dummy, job in queued]


def work(m):
    conn = m.pool()
    name, wanted = m.params["name"], m.params["state"]
    before = slotting.control_state(conn, name)
    changed = wanted is not None and wanted != before
    if changed and not m.check_mode:
        slotting.set_control_state(conn, name, wanted)
    after = wanted if changed else before
    result = {"changed": changed, "state": after, "previous_state": before, "slots": held_slots(conn),
              "waiting": waiting(conn, name)}
    if changed:
        result["diff_texts"] = ("evacuation %s: %s\n" % (name, before), "evacuation %s: %s\n" % (name, after))
    return result


def main():
    spec = dict(name=dict(type="str", required=True),
                state=dict(type="str", choices=list(slotting.CONTROL_STATES)))
    SxmModule(spec, pools=1).run(work)


if __name__ == "__main__":
    main()

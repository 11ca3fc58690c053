# -*- coding: utf-8 -*-
# Copyright (c) xapi.sxm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How a step that changes the destination is guarded (argument spec:
module_utils/sxm_module.py ``job_spec``): one job at a time per VM, and a long job that
nobody waits for stops itself."""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  lock_timeout:
    description:
      - Seconds without a heartbeat after which another run may take this job's lock over.
      - At least 3.
      - The lock is a key C(sxm:lock:<vm uuid>) in the destination pool's C(other_config),
        taken atomically; its holder beats every O(lock_timeout)/6 seconds (at most every
        20 s). A second run while the holder beats fails at once, naming the holder.
    type: int
    default: 120
  keepalive_file:
    description:
      - A file the controller touches on every poll (the M(xapi.sxm.migration_wait) action
        does). When it is older than O(orphan_timeout) the job stops at the next safe point
        (within seconds), applies nothing more and frees its lock - the controller was killed
        or interrupted. Not set, the job runs until it ends.
    type: path
  orphan_timeout:
    description: Seconds without a touch of O(keepalive_file) after which the job stops itself.
    type: int
    default: 60
  progress_file:
    description:
      - If set, a JSON file rewritten about twice a second while data moves (bytes done, rate,
        ETA, node k of n), that M(xapi.sxm.migration_wait) prints as progress lines.
      - Progress is also shown as a XAPI task on both pools, named after the VM.
    type: path
  slots:
    description:
      - Concurrency caps held by the pools themselves, so that they hold across forks,
        playbooks and controllers (the M(xapi.sxm.vdi_mirror) and content-reading
        M(xapi.sxm.migration_verify) steps take them; the other steps move no data).
      - Before data moves, the job takes one slot of every capped place it touches, all or
        none, and holds them while its data step runs; it waits while any is full, and says
        why in O(progress_file). A slot is a key C(sxm:lock:slot:<kind>:<n>) in the
        C(other_config) of the source pool, the source host or the destination SR, beaten
        every O(slots.timeout)/6 seconds and always removed at the end; a dead holder's slot
        is free again O(slots.timeout) seconds after its last beat.
      - The role C(xapi.sxm.evacuate) sets it for every VM; see docs/evacuate.md.
    type: dict
    suboptions:
      concurrency:
        description: Jobs at once in the whole evacuation (slots on the source pool); 0 for no cap.
        type: int
        default: 0
      per_host:
        description:
          - Jobs at once reading from one source host (slots on the host whose NBD server
            serves the VM's disks - the one host that sees their SRs, else the host it runs
            on, its affinity, the master). 0 for no cap.
          - XAPI's NBD server takes 16 connections per host; each job opens
            C(nbd_connections) per disk it reads at once.
        type: int
        default: 0
      per_sr:
        description: Jobs at once writing to one destination SR (slots on each SR); 0 for no cap.
        type: int
        default: 0
      timeout:
        description: Seconds after a holder's last beat at which its slot is free again.
        type: int
        default: 120
      evacuation:
        description:
          - The evacuation this job belongs to. Waiting jobs of one evacuation keep their
            order (O(slots.rank)), and the evacuation can be paused or drained (a key
            C(sxm:evacuation:<name>) in the source pool's C(other_config), set by
            M(xapi.sxm.evacuation_control)).
        type: str
      rank:
        description: This job's place in the evacuation's order; lower ranks take a concurrency slot first.
        type: int
        default: 0
notes:
  - SIGTERM, SIGINT and SIGHUP stop the job the same way.
"""

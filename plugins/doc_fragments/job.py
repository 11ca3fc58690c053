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
notes:
  - SIGTERM, SIGINT and SIGHUP stop the job the same way.
"""

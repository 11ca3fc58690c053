# -*- coding: utf-8 -*-
# Copyright (c) xapi.sxm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How a running VM is moved (argument spec: module_utils/sxm_module.py ``warm_spec``)."""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  max_passes:
    description:
      - A running VM (O(mode=warm), or O(mode=auto) on a running VM) has its snapshots mirrored
        while it runs, then its disks converge in passes, each from a transient snapshot of
        the running disks, until a pass writes at most O(cutover_bytes), the delta stops
        shrinking, or O(max_passes) passes ran. Then the VM stops for the last delta.
    type: int
    default: 5
  cutover_bytes:
    description:
      - A pass that wrote at most this many bytes ends the passes; the VM is stopped and the
        last delta, what the guest wrote since, is copied while it is down.
    type: int
    default: 67108864
  cutover:
    description:
      - When a converged running VM is cut over. V(auto) as soon as the passes end, in the same
        call; the downtime (shutdown, last delta, metadata, start on the destination) has no
        task boundary inside it.
      - V(manual) converges the destination copy and returns with the VM still running on the
        source, each disk's last transient snapshot kept there as the next run's base (the only
        object of the job left on the source); the result has C(cutover_pending). Run again
        with V(manual) to bring the copy up to date, or with V(now) to cut over, which is
        V(auto) after a manual wait.
      - V(window) keeps the copy converged, a pass every O(sync_interval), until
        O(cutover_after), then cuts over; a run that converges only after O(cutover_before)
        holds as V(manual) does. The task lasts until the window opens; give its C(async) and
        its wait's timeout room for that.
    type: str
    choices: [auto, now, manual, window]
    default: auto
  cutover_after:
    description: With O(cutover=window), the earliest cut-over, a UTC time as C(YYYY-MM-DDTHH:MM:SSZ).
    type: str
  cutover_before:
    description: With O(cutover=window), the latest start of the cut-over, a UTC time as C(YYYY-MM-DDTHH:MM:SSZ).
    type: str
  sync_interval:
    description: Seconds between the passes that keep a copy converged while it waits for its window.
    type: int
    default: 60
  shutdown_timeout:
    description: Seconds the guest is given to shut down cleanly at cut-over.
    type: int
    default: 300
  hard_shutdown:
    description:
      - Whether the cut-over may hard-shut the VM when its clean shutdown is refused (a guest
        without tools) or does not end within O(shutdown_timeout).
      - When false such a VM keeps running on the source, nothing is cut over, and the step
        fails saying why.
    type: bool
    default: false
"""

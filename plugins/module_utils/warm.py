# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm migration: the pieces a running VM's move is made of (migrate.warm_step runs them).

- *Transient snapshots*: ``VDI.snapshot`` of each of the running VM's disks, never
  ``VM.snapshot``, which would make the snapshot the VM's ``parent`` and change the user's
  tree. A snapshot is marked (``sxm:transient`` = the job) by setting the key on the disk just
  before and removing it just after: XAPI copies ``other_config`` into the snapshot, so no
  snapshot of ours exists unmarked even if the run is killed between two calls. Tree
  discovery never carries them (tree._loose_snapshots); every run sweeps the job's, but the
  one the working VDI's marker names.
- *Passes*: each disk's working VDI W is brought to a new transient snapshot, the delta from
  CBT between the two snapshots where enabled, else a VHD map, else content; the pass before
  goes. Passes repeat while the delta shrinks, up to ``max_passes``, until one writes at most
  ``cutover_bytes``.
- *When*: ``cutover`` auto (or now) as soon as converged; manual holds, the copy converged,
  the last transient snapshots kept as the next run's bases; window waits, a pass every
  ``sync_interval``, until ``cutover_after``, cuts over before ``cutover_before``, and holds
  once the window has closed.
- *Shutdown*: clean, within ``shutdown_timeout``; hard only when the user allowed it and the
  clean one was refused (a guest without tools) or timed out.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import time

from ansible_collections.xapi.sxm.plugins.module_utils import datapath
from ansible_collections.xapi.sxm.plugins.module_utils.errors import InputError, StateError, WaitTimeout, XapiFailure
from ansible_collections.xapi.sxm.plugins.module_utils.markers import TRANSIENT, set_key
from ansible_collections.xapi.sxm.plugins.module_utils.tree import Disk

TRANSIENT_LABEL = "xapi.sxm transient snapshot of %s"
CUTOVERS = ("auto", "now", "manual", "window")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"      # cut-over window bounds, UTC


def parse_utc(text, name):
    """Seconds since the epoch of a UTC time written YYYY-MM-DDTHH:MM:SSZ."""
    try:
        return calendar.timegm(time.strptime(text, TIME_FORMAT))
    except (TypeError, ValueError):
        raise InputError("%s %r: give a UTC time as YYYY-MM-DDTHH:MM:SSZ, for example 2026-12-24T02:00:00Z"
                         % (name, text), advice="nothing was changed")


class Settings:
    """The warm options, checked before anything is read from a pool."""

    def __init__(self, max_passes=5, cutover_bytes=64 << 20, cutover="auto", shutdown_timeout=300,
                 hard_shutdown=False, cutover_after=None, cutover_before=None, sync_interval=60):
        if cutover not in CUTOVERS:
            raise InputError("cutover %r: choose one of %s" % (cutover, ", ".join(CUTOVERS)),
                             advice="nothing was changed")
        if max_passes < 1:
            raise InputError("max_passes is %d: give at least 1" % max_passes)
        if cutover_bytes < 0:
            raise InputError("cutover_bytes is negative: give bytes, 0 for a pass that wrote nothing")
        if shutdown_timeout < 1:
            raise InputError("shutdown_timeout is %d: give seconds, at least 1" % shutdown_timeout)
        if sync_interval < 1:
            raise InputError("sync_interval is %d: give seconds, at least 1" % sync_interval)
        self.window = None
        if cutover == "window":
            if not cutover_after or not cutover_before:
                raise InputError("cutover window needs cutover_after and cutover_before (UTC times)",
                                 advice="give both, or choose cutover auto, now or manual; nothing was changed")
            self.window = (parse_utc(cutover_after, "cutover_after"), parse_utc(cutover_before, "cutover_before"))
            if self.window[0] >= self.window[1]:
                raise InputError("cutover_after %s is not before cutover_before %s" % (cutover_after, cutover_before),
                                 advice="nothing was changed")
        self.max_passes, self.cutover_bytes, self.cutover = max_passes, cutover_bytes, cutover
        self.shutdown_timeout, self.hard_shutdown = shutdown_timeout, hard_shutdown
        self.sync_interval = sync_interval

    def decision(self, now):
        """What to do once converged, at ``now`` (epoch seconds): "cut over", "wait" (a pass
        every sync_interval until the window opens) or "hold" (the VM runs on, the copy kept
        converged: manual, or a window that has closed)."""
        if self.cutover == "manual":
            return "hold"
        if self.window is None:
            return "cut over"
        if now < self.window[0]:
            return "wait"
        return "cut over" if now < self.window[1] else "hold"

    def seconds_to_window(self, now):
        return max(0.0, self.window[0] - now) if self.window else 0.0


def take_transient(src, disk, job):
    """A transient snapshot of the running VM's ``disk`` (a tree.Disk), born marked."""
    set_key(src, "VDI", disk.vdi_ref, TRANSIENT, job)
    try:
        ref = src.call("VDI.snapshot", disk.vdi_ref, {})
    finally:
        src.call("VDI.remove_from_other_config", disk.vdi_ref, TRANSIENT)
    src.call("VDI.set_name_label", ref, TRANSIENT_LABEL % disk.name_label)
    return Disk(disk.userdevice, ref, src.call("VDI.get_record", ref))


def remove_transients(src, disks, job, keep=()):
    """This job's transient snapshots beside ``disks`` (the VM's own), but those whose uuid
    is in ``keep``; the key a killed run left on a disk itself goes too. Returns how many
    snapshots were removed."""
    removed, failure = 0, None
    for sr in sorted({d.sr_ref for d in disks}):
        for ref, rec in src.call("VDI.get_all_records_where", 'field "SR"="%s"' % sr).items():
            if rec["other_config"].get(TRANSIENT) != job:
                continue
            try:
                if not rec["is_a_snapshot"]:
                    # the VM's own disk, marked for the one VDI.snapshot call by a killed run
                    src.call("VDI.remove_from_other_config", ref, TRANSIENT)
                elif rec["uuid"] not in keep:
                    if rec["VBDs"]:
                        # read over NBD a moment ago: xapi-nbd's dom0 attach is still going
                        datapath.wait_dom0_detached(src, ref)
                    src.call("VDI.destroy", ref)
                    removed += 1
            except XapiFailure as e:
                # the others are still removed; the first failure is raised after them
                if e.code != "HANDLE_INVALID" and failure is None:
                    failure = e
    if failure is not None:
        raise failure
    return removed


def converged(passes, settings):
    """Whether another pass is useless: the last wrote at most cutover_bytes, or no less
    than the one before (the guest writes as fast as a pass copies), or max_passes ran."""
    last = passes[-1]["bytes_written"]
    if last <= settings.cutover_bytes or len(passes) >= settings.max_passes:
        return True
    return len(passes) >= 2 and last >= passes[-2]["bytes_written"]


def shut_down(src, vm_ref, vm_name, settings):
    """Stop the source VM: clean, then hard only if allowed. Returns "clean" or "hard". When
    the VM cannot be stopped as allowed it is left running and StateError says why."""
    why = None
    try:
        task = src.call("Async.VM.clean_shutdown", vm_ref)
        src.wait_task(task, poll=0.2, timeout=settings.shutdown_timeout, first_poll=0.05)
        return "clean"
    except WaitTimeout:
        why = "it did not stop within %d s" % settings.shutdown_timeout
    except XapiFailure as e:
        why = "XAPI refused it (%s)" % e.code
    if src.call("VM.get_power_state", vm_ref) == "Halted":
        return "clean"
    if not settings.hard_shutdown:
        raise StateError("the guest of VM %s did not shut down cleanly: %s. The source VM runs on, "
                         "nothing was cut over" % (vm_name, why),
                         advice="install or start the guest's tools, or allow a hard shutdown "
                                "(hard_shutdown: true, role: sxm_hard_shutdown), then run again")
    src.call("VM.hard_shutdown", vm_ref)
    return "hard"


def restart_source(src, vm_ref):
    """After a failure inside the downtime: the source VM runs again. Returns whether it was
    started (it may never have stopped)."""
    if src.call("VM.get_power_state", vm_ref) != "Halted":
        return False
    src.call("VM.start", vm_ref, False, False)
    return True

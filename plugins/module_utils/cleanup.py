# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rolling a job back: the source's ``blocked_operations``, tags and power state put back as
they were before the job (recorded on the destination VM at its import, ``sxm:source_before``),
then what the job made on the destination removed: its VM and snapshot VMs, and every VDI that
carries its ``sxm:job`` marker, on any SR (a destination SR changed between runs leaves
nothing behind). The source comes first: if it cannot be restored, the record stays for a
re-run. A complete migration is not removed unless asked for explicitly, and never a copy
whose source no longer exists.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.xapi.sxm.plugins.module_utils import markers, tree as treemod, warm
from ansible_collections.xapi.sxm.plugins.module_utils.errors import StateError


def job_objects(dst, job):
    """(VM ref or None, its record, {VDI ref: record}) of the job on the destination."""
    vm_ref, vm_rec = markers.destination_vm(dst, job)
    vdis = markers.job_vdis(dst, dst.call("SR.get_all"), job)
    return vm_ref, vm_rec, vdis


def rollback(src, dst, job, src_vm, include_complete=False, restore=True, check_mode=False):
    """The job rolled back: the source restored (``restore``), then the destination's objects
    removed. ``src_vm``: (ref, record) of the source VM, or None when it no longer exists.
    Returns {removed: {vms, vdis}, restored: [line], left: [line]}."""
    dummy, vm_rec = markers.destination_vm(dst, job)
    check_removable(job, vm_rec, include_complete, src_vm)
    restored, left, transients = [], [], 0
    if restore and src_vm is not None:
        restored, left = restore_source(src, src_vm[0], src_vm[1], recorded_source(vm_rec), check_mode)
    if src_vm is not None and not check_mode:
        # a warm run killed outright leaves its transient snapshots on the source
        transients = warm.remove_transients(src, list(treemod.discover(src, src_vm[0]).vm.disks.values()), job)
    return {"removed": cleanup(dst, job, check_mode), "restored": restored, "left": left,
            "transient_snapshots_removed": transients}


def check_removable(job, vm_rec, include_complete, src_vm):
    state = markers.state_of(vm_rec)
    if state == "complete" and not include_complete:
        raise StateError("the migration of VM %s is complete: its destination copy is not removed "
                         "unless include_complete is true" % job,
                         advice="set include_complete: true to remove a completed migration's copy")
    if state in ("verified", "complete") and src_vm is None:
        raise StateError("the source VM %s no longer exists: its verified copy on the destination is the "
                         "only one, and is not removed" % job,
                         advice="nothing was changed; remove the destination VM by hand if that is really meant")


def cleanup(dst, job, check_mode=False):
    """Remove the job's objects. Returns {vms: [uuid], vdis: [uuid]} of what was (or, in check
    mode, would be) removed."""
    vm_ref, vm_rec, vdis = job_objects(dst, job)
    removed = {"vms": [], "vdis": sorted(rec["uuid"] for rec in vdis.values())}
    if vm_rec is not None:
        snapshots = dst.call("VM.get_snapshots", vm_ref)
        removed["vms"] = [dst.call("VM.get_uuid", s) for s in snapshots] + [vm_rec["uuid"]]
        if not check_mode:
            for snap in snapshots:
                dst.call("VM.destroy", snap)
            dst.call("VM.destroy", vm_ref)
    if not check_mode:
        # snapshots before the working disk they are snapshots of
        for ref in sorted(vdis, key=lambda r: not vdis[r]["is_a_snapshot"]):
            dst.call("VDI.destroy", ref)
    return removed


def recorded_source(vm_rec):
    """What the source looked like before the job (``sxm:source_before``), or None."""
    text = (vm_rec or {}).get("other_config", {}).get(markers.SOURCE_BEFORE)
    return json.loads(text) if text else None


def restore_source(src, src_ref, src_rec, before, check_mode=False):
    """Put the source VM's blocked_operations, tags and power state back as ``before`` says.
    A VM is started again if it was running; none is ever stopped or suspended (xapi.sxm never
    starts a source, so a running one was started by someone else). Without a record (the
    destination VM is gone) only the disposition's own block is lifted. Returns what was (or
    would be) restored, and what differs but is left, as lines."""
    if before is None:
        before = {"blocked_operations": {op: why for op, why in src_rec["blocked_operations"].items()
                                         if not why.startswith(markers.DISPOSITION_REASON)},
                  "tags": src_rec["tags"], "power_state": src_rec["power_state"]}
    done, left = [], []
    blocked = src_rec["blocked_operations"]
    for op in sorted(set(blocked) | set(before["blocked_operations"])):
        wanted = before["blocked_operations"].get(op)
        if blocked.get(op) == wanted:
            continue
        if not check_mode:
            if op in blocked:
                src.call("VM.remove_from_blocked_operations", src_ref, op)
            if wanted is not None:
                src.call("VM.add_to_blocked_operations", src_ref, op, wanted)
        done.append("blocked operation %s: %s" % (op, "unblocked" if wanted is None else "blocked again"))
    if sorted(src_rec["tags"]) != sorted(before["tags"]):
        if not check_mode:
            src.call("VM.set_tags", src_ref, before["tags"])
        done.append("tags: %s" % (", ".join(before["tags"]) or "none"))
    now, then = src_rec["power_state"], before["power_state"]
    if now != then:
        if now == "Halted" and then == "Running":
            if not check_mode:
                src.call("VM.start", src_ref, False, False)
            done.append("started again")
        else:
            left.append("the source VM is %s (it was %s before the migration): left as it is" % (now, then))
    return done, left

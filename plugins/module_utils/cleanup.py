# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Removing what a job made on the destination: its VM and snapshot VMs, and every VDI that
carries its ``sxm:job`` marker, on any SR (a destination SR changed between runs leaves
nothing behind). A complete migration is not removed unless asked for explicitly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.xapi.sxm.plugins.module_utils import markers
from ansible_collections.xapi.sxm.plugins.module_utils.errors import StateError


def job_objects(dst, job):
    """(VM ref or None, its record, {VDI ref: record}) of the job on the destination."""
    vm_ref, vm_rec = markers.destination_vm(dst, job)
    vdis = markers.job_vdis(dst, dst.call("SR.get_all"), job)
    return vm_ref, vm_rec, vdis


def cleanup(dst, job, include_complete=False, check_mode=False):
    """Remove the job's objects. Returns {vms: [uuid], vdis: [uuid]} of what was (or, in
    check mode, would be) removed."""
    vm_ref, vm_rec, vdis = job_objects(dst, job)
    if vm_rec is not None and markers.state_of(vm_rec) == "complete" and not include_complete:
        raise StateError("the migration of VM %s is complete: its destination copy is not removed "
                         "unless include_complete is true" % job,
                         advice="set include_complete: true to remove a completed migration's copy")
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

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``sxm:*`` markers in ``other_config`` by which every step finds what a job made on the
destination: the working and node VDIs of each disk, and the VM with its state.

States of the destination VM, in order: ``imported`` (metadata in, start blocked),
``verified`` (trees and bytes equal to the source state recorded in ``sxm:verified``),
``complete`` (start unblocked; the migration is done).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.xapi.sxm.plugins.module_utils.errors import StateError, XapiFailure

JOB = "sxm:job"                # the source VM's uuid, on every object the job made
ROLE = "sxm:role"              # VDIs: working | node
SOURCE = "sxm:source"          # VDIs: uuid of the source VDI this one mirrors
DEVICE = "sxm:userdevice"      # VDIs: the disk (VBD userdevice) they belong to
HOLDS = "sxm:holds"            # working VDI: what it holds, see mirror.py
STATE = "sxm:state"            # VM: imported | verified | complete
VERIFIED = "sxm:verified"      # VM: fingerprint of the source state that was verified
SOURCE_BEFORE = "sxm:source_before"  # VM: the source's blocked_operations, tags, power state (JSON)
TRANSIENT = "sxm:transient"    # source VDIs: a warm job's transient snapshot (the job's uuid)

STATES = ("imported", "verified", "complete")
STARTS = ("start", "resume")   # what makes a VM run: a suspended one is resumed, not started
BLOCK_REASON = "xapi.sxm: migration of this VM is not complete"
DISPOSITION_REASON = "migrated by xapi.sxm to "   # + the destination's URL: the source's start block


def set_key(conn, cls, ref, key, value):
    """Set one key of an object's other_config without rewriting the others."""
    try:
        conn.call("%s.remove_from_other_config" % cls, ref, key)
    except XapiFailure:
        pass
    conn.call("%s.add_to_other_config" % cls, ref, key, value)


def block_starts(conn, vm_ref, reason):
    """Block every operation in STARTS that is not blocked yet. Returns whether any was."""
    blocked = conn.call("VM.get_blocked_operations", vm_ref)
    missing = [op for op in STARTS if op not in blocked]
    for op in missing:
        conn.call("VM.add_to_blocked_operations", vm_ref, op, reason)
    return bool(missing)


def unblock_starts(conn, vm_ref):
    blocked = conn.call("VM.get_blocked_operations", vm_ref)
    for op in STARTS:
        if op in blocked:
            conn.call("VM.remove_from_blocked_operations", vm_ref, op)


def destination_vm(dst, job):
    """(ref, record) of the job's VM on the destination, or (None, None). A VM with the
    source's uuid that this collection did not make is refused: it is someone else's."""
    try:
        ref = dst.call("VM.get_by_uuid", job)
    except XapiFailure:
        return None, None
    rec = dst.call("VM.get_record", ref)
    if rec["other_config"].get(JOB) != job:
        raise StateError("the destination pool already has a VM with uuid %s that xapi.sxm did "
                         "not make: remove it or migrate with another tool" % job,
                         advice="nothing was changed; remove or rename that VM, then run again")
    return ref, rec


def state_of(vm_rec):
    return (vm_rec or {}).get("other_config", {}).get(STATE)


def job_vdis(dst, sr_refs, job):
    """{ref: record} of the VDIs the job made on the given destination SRs."""
    found = {}
    for sr in sorted(set(sr_refs)):
        vdis = dst.call("VDI.get_all_records_where", 'field "SR"="%s"' % sr)
        found.update({ref: rec for ref, rec in vdis.items() if rec["other_config"].get(JOB) == job})
    return found

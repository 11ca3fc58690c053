# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cut-over (DESIGN.md step 8): the verified destination VM becomes startable and complete,
then the source is disposed of as asked. Nothing on the source is touched unless the
destination was verified against the source as it is *now*; ``destroy`` re-reads the
source's own disks to prove it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.xapi.sxm.plugins.module_utils import markers, verify as verification
from ansible_collections.xapi.sxm.plugins.module_utils.errors import StateError, XapiFailure

RERUN = "run the migration again (the role, or vdi_mirror, vm_metadata and migration_verify)"


def verified_destination(dst, the_plan):
    """The destination VM, checked to be verified (or complete) against the current source
    records. Returns (ref, record)."""
    ref, rec = markers.destination_vm(dst, the_plan["job"])
    if rec is None:
        raise StateError("the VM is not on the destination yet: " + RERUN)
    state = markers.state_of(rec)
    if state not in ("verified", "complete"):
        raise StateError("the destination VM is %s, not verified: run migration_verify first" % state)
    records, dummy = verification.parse_fingerprint(rec["other_config"].get(markers.VERIFIED))
    if records != verification.records_fingerprint(the_plan["tree"]):
        raise StateError("the source VM changed since the destination was verified (its snapshots "
                         "or disks differ): " + RERUN)
    return ref, rec


def complete(dst, dst_ref, dst_rec, check_mode):
    """Unblock the destination's start and mark the job complete. Returns whether it changed."""
    if markers.state_of(dst_rec) == "complete":
        return False
    if not check_mode:
        markers.unblock_starts(dst, dst_ref)
        markers.set_key(dst, "VM", dst_ref, markers.STATE, "complete")
    return True


def reblock(dst, job):
    """After a failure inside a warm migration's downtime: the destination VM, if there is
    one, is blocked and not complete again, so that nothing starts it before a re-run."""
    ref, rec = markers.destination_vm(dst, job)
    if rec is None:
        return
    markers.block_starts(dst, ref, markers.BLOCK_REASON)
    if markers.state_of(rec) == "complete":
        markers.set_key(dst, "VM", ref, markers.STATE, "verified")
    if dst.call("VM.get_power_state", ref) != "Halted":
        dst.call("VM.hard_shutdown", ref)


def apply_disposition(src, dst, the_plan, dst_rec, how, check_mode):
    """keep: nothing; block: the source may no longer start; destroy: the source VM, its
    snapshots and their disks are removed. Returns whether anything changed."""
    vm_ref = the_plan["vm_ref"]
    if how == "keep":
        return False
    if markers.state_of(the_plan["vm"]) not in (None, "complete"):
        raise StateError("the source VM carries the markers of an incomplete xapi.sxm job (it is "
                         "itself a migration's destination): it is not disposed of",
                         advice="finish or clean up that job first")
    if how == "block":
        if check_mode:
            blocked = src.call("VM.get_blocked_operations", vm_ref)
            return not all(op in blocked for op in markers.STARTS)
        return markers.block_starts(src, vm_ref, markers.DISPOSITION_REASON + dst.url)
    if how == "destroy":
        if not check_mode:
            check_content_unchanged(src, the_plan, dst_rec)
            destroy_vm_and_disks(src, vm_ref, the_plan["tree"])
        return True
    raise StateError("unknown source disposition %r (keep, block or destroy)" % how)


def check_content_unchanged(src, the_plan, dst_rec):
    dummy, content = verification.parse_fingerprint(dst_rec["other_config"].get(markers.VERIFIED))
    if content == "unverified":
        raise StateError("the destination's disks were not compared with the source's (verification "
                         "without content): the source is not destroyed",
                         advice="run migration_verify with content: true (role: sxm_verify: true), then "
                                "the cut-over again")
    if content == verification.PARTIAL:
        raise StateError("the destination's disks were brought up to date from CBT's changed blocks (a held "
                         "warm cut-over run again), so no fingerprint of the source's whole disks was taken "
                         "when it stopped: the source is not destroyed",
                         advice="check the destination VM, then remove the source VM by hand; a warm "
                                "migration run with source_disposition destroy takes that fingerprint itself")
    now = verification.content_fingerprint(
        the_plan.get("leaf_fingerprints") or verification.leaf_fingerprints(src, the_plan["tree"], the_plan["tls"]))
    if content != now:
        raise StateError("the source VM's disks were written since the destination was verified: "
                         "it is not destroyed; " + RERUN)


def destroy_vm_and_disks(src, vm_ref, tree):
    """The VM, its snapshots, their disks and its loose VDI snapshots: those were carried, and
    the metadata-only ones (not carried) are a CBT base of a VM that no longer exists."""
    vdis = {d.vdi_ref for disks in tree.loose.values() for d in disks}   # metadata-only ones too
    vdis.update(image.vdi_ref for dummy, image in tree.memory_images())
    snapshots = src.call("VM.get_snapshots", vm_ref)
    for owner in snapshots + [vm_ref]:
        for vbd in src.call("VM.get_VBDs", owner):
            rec = src.call("VBD.get_record", vbd)
            if rec["type"] == "Disk" and not rec["empty"]:
                vdis.add(rec["VDI"])
    for snap in snapshots:
        src.call("VM.destroy", snap)
    src.call("VM.destroy", vm_ref)
    for vdi in sorted(vdis):
        try:
            src.call("VDI.destroy", vdi)
        except XapiFailure as e:
            if e.code != "HANDLE_INVALID":
                raise

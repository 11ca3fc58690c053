# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of one VM (DESIGN.md "The flow of one VM"): preflight, discover, plan, mirror every
disk's tree, sync the leaf, metadata, verify, cut over, report. Cold mode: the VM is halted.

Every step finds what an earlier run left (markers in ``other_config``) and continues from
there; after a complete migration a re-run changes nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.xapi.sxm.plugins.module_utils import datapath, metadata, mirror, tree as treemod
from ansible_collections.xapi.sxm.plugins.module_utils.progress import Progress
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import XapiFailure

MARK_JOB = mirror.MARK_JOB
MARK_STATE = "sxm:state"
BLOCK_REASON = "xapi.sxm: migration of this VM is not complete"


class MigrationError(Exception):
    pass


class Options:
    def __init__(self, vm, sr_map=None, default_sr=None, network_map=None, mode="auto",
                 source_disposition="keep", use_cbt=True, verify=True, bandwidth_limit=None,
                 progress_file=None, nbd_connections=datapath.NBD_CONNECTIONS):
        self.vm = vm
        self.sr_map = dict(sr_map or {})
        self.default_sr = default_sr
        self.network_map = dict(network_map or {})
        self.mode = mode
        self.source_disposition = source_disposition
        self.use_cbt = use_cbt
        self.verify = verify
        self.bandwidth_limit = bandwidth_limit
        self.progress_file = progress_file
        if not 1 <= nbd_connections <= datapath.NBD_CONNECTIONS_MAX:
            raise MigrationError("nbd_connections must be between 1 and %d (XAPI serves %d NBD "
                                 "connections per host)" % (datapath.NBD_CONNECTIONS_MAX,
                                                            datapath.NBD_CONNECTIONS_MAX))
        self.nbd_connections = nbd_connections


# ---- preflight --------------------------------------------------------------------------------

def find_vm(conn, wanted):
    """A VM (not a snapshot or template) by uuid or unique name."""
    try:
        ref = conn.call("VM.get_by_uuid", wanted)
    except XapiFailure:
        refs = [r for r in conn.call("VM.get_by_name_label", wanted)
                if not conn.call("VM.get_is_a_snapshot", r)
                and not conn.call("VM.get_is_a_template", r)]
        if not refs:
            raise MigrationError("no VM named or with uuid %r on the source pool" % wanted)
        if len(refs) > 1:
            raise MigrationError("%d VMs are named %r on the source pool: give the uuid"
                                 % (len(refs), wanted))
        ref = refs[0]
    rec = conn.call("VM.get_record", ref)
    if rec["is_a_snapshot"] or rec["is_a_template"]:
        raise MigrationError("%r is a snapshot or template, not a VM: give the VM itself" % wanted)
    return ref, rec


def nbd_uses_tls(conn):
    purposes = set()
    for rec in conn.call("network.get_all_records").values():
        purposes.update(rec.get("purpose", []))
    return "insecure_nbd" not in purposes


def destination_sr_for(dst, src_sr_uuid, options):
    wanted = options.sr_map.get(src_sr_uuid) or options.default_sr
    if wanted:
        try:
            return dst.call("SR.get_by_uuid", wanted)
        except XapiFailure:
            refs = dst.call("SR.get_by_name_label", wanted)
            if len(refs) == 1:
                return refs[0]
            raise MigrationError("the destination pool has no SR %r (from sxm_sr_map or "
                                 "sxm_default_sr)" % wanted)
    pool = dst.call("pool.get_all")[0]
    sr = dst.call("pool.get_default_SR", pool)
    if sr in ("", treemod.NULL):
        raise MigrationError("the destination pool has no default SR: give sxm_default_sr or "
                             "sxm_sr_map")
    return sr


def plan(src, dst, options):
    """Everything decided before data moves, as data (``--check`` shows it)."""
    vm_ref, vm_rec = find_vm(src, options.vm)
    tree = treemod.discover(src, vm_ref)
    if options.mode not in ("auto", "cold"):
        raise MigrationError("mode %r is not available yet: only cold migrations of halted VMs "
                             "are built" % options.mode)
    if vm_rec["power_state"] != "Halted":
        raise MigrationError("VM %s is %s: cold migration needs it halted. Shut it down, then "
                             "run again (warm migration of running VMs is not built yet)"
                             % (vm_rec["name_label"], vm_rec["power_state"]))
    checkpoints = [n.name_label for n in tree.snapshots if n.is_checkpoint]
    if checkpoints:
        raise MigrationError("snapshots with memory (checkpoints) are not supported yet: %s"
                             % ", ".join(sorted(checkpoints)))
    disks = []
    for userdevice in tree.userdevices():
        walk = tree.walk(userdevice)
        leaf = tree.vm.disks.get(userdevice)
        model = leaf or walk[-1].disks[userdevice]
        src_sr_uuid = src.call("SR.get_uuid", model.sr_ref)
        dst_sr = destination_sr_for(dst, src_sr_uuid, options)
        disks.append({
            "userdevice": userdevice, "source_sr": src_sr_uuid,
            "destination_sr": dst.call("SR.get_uuid", dst_sr), "destination_sr_ref": dst_sr,
            "walk": [n.name_label for n in walk], "walk_uuids": [n.uuid for n in walk],
            "has_leaf": leaf is not None,
            "virtual_size": model.virtual_size,
            "estimated_bytes": sum(n.disks[userdevice].physical_utilisation for n in walk)
            + (leaf.physical_utilisation if leaf else 0),
            # an upper bound: every node read in full (CBT and block status read less)
            "bytes_to_read": sum(n.disks[userdevice].virtual_size for n in walk)
            + (leaf.virtual_size if leaf else 0),
            "cbt": all(n.disks[userdevice].cbt_enabled for n in walk) and (leaf is None or leaf.cbt_enabled),
        })
    return {"vm_ref": vm_ref, "vm": vm_rec, "tree": tree, "disks": disks,
            "tls": nbd_uses_tls(src)}


# ---- the migration ---------------------------------------------------------------------------

def existing_destination_vm(dst, vm_uuid):
    try:
        ref = dst.call("VM.get_by_uuid", vm_uuid)
    except XapiFailure:
        return None, None
    return ref, dst.call("VM.get_record", ref)


def migrate(src, dst, options, check_mode=False):
    """Run (or, in check mode, describe) the migration. Returns the result dict."""
    started = time.time()
    the_plan = plan(src, dst, options)
    tree, vm_rec = the_plan["tree"], the_plan["vm"]
    job = vm_rec["uuid"]
    result = {"changed": False, "vm_uuid": vm_rec["uuid"], "vm_name": vm_rec["name_label"],
              "source_tree": tree.to_dict(), "plan": plan_summary(the_plan), "warnings": [],
              "disks": [], "snapshot_time_not_kept": []}
    dst_ref, dst_rec = existing_destination_vm(dst, vm_rec["uuid"])
    if dst_rec is not None and dst_rec["other_config"].get(MARK_JOB) != job:
        raise MigrationError("the destination pool already has a VM with uuid %s that xapi.sxm did "
                             "not make: remove it or migrate with another tool" % vm_rec["uuid"])
    if dst_rec is not None and dst_rec["other_config"].get(MARK_STATE) == "complete":
        result["destination_vm_uuid"] = dst_rec["uuid"]
        result["destination_tree"] = treemod.discover(dst, dst_ref).to_dict()
        result["message"] = "already migrated; nothing to do"
        apply_disposition(src, the_plan["vm_ref"], options, check_mode, result, dst)
        return result
    if check_mode:
        metadata.import_metadata(dst, exported_metadata(src, dst, vm_rec["uuid"], options, result), {},
                                 dry_run=True)
        result["changed"] = True
        result["message"] = "would migrate %d snapshot(s) and %d disk(s)" % (
            len(tree.snapshots), len(the_plan["disks"]))
        return result
    progress = Progress([src, dst], "xapi.sxm: migrating %s" % vm_rec["name_label"],
                        sum(d["bytes_to_read"] for d in the_plan["disks"]), options.progress_file).start()
    ok = False
    try:
        copy_and_cut_over(src, dst, options, the_plan, result, progress)
        ok = True
    finally:
        progress.finish(ok)
    result["timings"]["total_s"] = round(time.time() - started, 3)
    return result


def copy_and_cut_over(src, dst, options, the_plan, result, progress):
    """Steps 4 to 9 of the flow: mirror every disk, import the metadata, fix the snapshot
    times, verify, cut over."""
    tree, vm_rec = the_plan["tree"], the_plan["vm"]
    job = vm_rec["uuid"]
    timings = result["timings"] = {}
    t0 = time.time()
    pairs = {}
    limiter = datapath.RateLimiter(options.bandwidth_limit) if options.bandwidth_limit else None
    for disk in the_plan["disks"]:
        m = mirror.DiskMirror(src, dst, tree, disk["userdevice"], disk["destination_sr_ref"], job,
                              tls=the_plan["tls"], use_cbt=options.use_cbt, progress=progress,
                              limiter=limiter, connections=options.nbd_connections)
        r = m.run()
        pairs.update(r.pairs)
        result["disks"].append(r.to_dict())
    timings["data_s"] = round(time.time() - t0, 3)
    t0 = time.time()
    progress.set_phase("metadata")
    dst_ref = import_vm(src, dst, the_plan, pairs, options, job, result)
    timings["metadata_s"] = round(time.time() - t0, 3)
    t0 = time.time()
    progress.set_phase("snapshot times and verification")
    fix_times(dst, dst_ref, tree, pairs, result)
    if options.verify:
        verify(src, dst, tree, dst_ref, pairs, the_plan["tls"], result)
    timings["verify_s"] = round(time.time() - t0, 3)
    progress.set_phase("cut over")
    dst.call("VM.remove_from_blocked_operations", dst_ref, "start")
    set_marker(dst, dst_ref, MARK_STATE, "complete")
    apply_disposition(src, the_plan["vm_ref"], options, False, result, dst)
    result["changed"] = True
    for key in ("bytes_written", "bytes_read", "walk_minimum_bytes", "edge_minimum_bytes"):
        result[key] = sum(d[key] for d in result["disks"])
    result["destination_vm_uuid"] = vm_rec["uuid"]
    result["message"] = "migrated"


def set_marker(conn, vm_ref, key, value):
    oc = conn.call("VM.get_other_config", vm_ref)
    oc[key] = value
    conn.call("VM.set_other_config", vm_ref, oc)


def plan_summary(the_plan):
    return {"disks": [{k: v for k, v in d.items() if k != "destination_sr_ref"} for d in the_plan["disks"]],
            "nbd_tls": the_plan["tls"]}


def exported_metadata(src, dst, vm_uuid, options, result):
    """The source's metadata export with every VIF pointed at its destination network."""
    value, members = metadata.read_ova(metadata.export_metadata(src, vm_uuid))
    result["network_mapping"] = metadata.map_networks(value, options.network_map,
                                                      dst.call("network.get_all_records"))
    return metadata.write_ova(value, members)


def import_vm(src, dst, the_plan, pairs, options, job, result):
    """Import the VM and its snapshots; a VM left by a crashed run is replaced."""
    vm_rec = the_plan["vm"]
    old_ref, old_rec = existing_destination_vm(dst, vm_rec["uuid"])
    if old_rec is not None:
        for snap in old_rec["snapshots"]:
            dst.call("VM.destroy", snap)
        dst.call("VM.destroy", old_ref)
    refs = metadata.import_metadata(dst, exported_metadata(src, dst, vm_rec["uuid"], options, result), pairs)
    dst_ref = dst.call("VM.get_by_uuid", vm_rec["uuid"])
    if dst_ref not in refs and refs:
        result["warnings"].append("the metadata import returned %d VM(s), none with the source "
                                  "uuid" % len(refs))
    if "start" not in dst.call("VM.get_blocked_operations", dst_ref):
        dst.call("VM.add_to_blocked_operations", dst_ref, "start", BLOCK_REASON)
    set_marker(dst, dst_ref, MARK_JOB, job)
    set_marker(dst, dst_ref, MARK_STATE, "imported")
    return dst_ref


def fix_times(dst, dst_ref, tree, pairs, result):
    wanted = []
    srs = set()
    for node in tree.snapshots:
        for disk in node.disks.values():
            dst_uuid = pairs.get(disk.uuid)
            if dst_uuid is None:
                continue
            ref = dst.call("VDI.get_by_uuid", dst_uuid)
            wanted.append((ref, disk.snapshot_time))
            srs.add(dst.call("VDI.get_SR", ref))
    not_kept = metadata.fix_snapshot_times(dst, wanted, srs)
    result["snapshot_time_not_kept"] = [
        {"vdi_uuid": u, "source_time": w, "destination_time": g, "reason": r} for u, w, g, r in not_kept]
    if not_kept:
        result["warnings"].append("%d snapshot disk(s) keep the destination's snapshot_time; see "
                                  "snapshot_time_not_kept" % len(not_kept))


VERIFY_READERS = 4


def verify(src, dst, tree, dst_ref, pairs, tls, result):
    """Trees isomorphic and every disk's bytes equal, read back over NBD on both sides."""
    dst_tree = treemod.discover(dst, dst_ref)
    problems = compare_trees(tree, dst_tree)
    dst_tls = nbd_uses_tls(dst)
    pairs_to_read = []
    for node in list(tree.snapshots) + [tree.vm]:
        for disk in node.disks.values():
            if disk.uuid in pairs:
                pairs_to_read.append((node, disk))
            else:
                problems.append("disk %s of %s has no destination copy" % (disk.userdevice, node.name_label))

    def same_content(pair):
        disk = pair[1]
        dst_vdi = dst.call("VDI.get_by_uuid", pairs[disk.uuid])
        return digest_of(src, disk.vdi_ref, disk.virtual_size, tls) == \
            digest_of(dst, dst_vdi, disk.virtual_size, dst_tls)
    # several disks at once: a tree of small disks is mostly connection set-up, and libnbd and
    # hashlib let threads overlap; at most VERIFY_READERS NBD connections on each pool
    with ThreadPoolExecutor(max_workers=VERIFY_READERS) as readers:
        same = list(readers.map(same_content, pairs_to_read))
    for index, (node, disk) in enumerate(pairs_to_read):
        if not same[index]:
            problems.append("disk %s of %s differs on the destination" % (disk.userdevice, node.name_label))
    checked = len(pairs_to_read)
    result["destination_tree"] = dst_tree.to_dict()
    result["verified_disks"] = checked
    if problems:
        raise MigrationError("verification failed (the source is untouched): " + "; ".join(problems))


def digest_of(conn, vdi_ref, size, tls):
    records = conn.call("VDI.get_nbd_info", vdi_ref)
    with datapath.NbdSource(datapath.pick_nbd_record(records), tls=tls) as source:
        digests = datapath.copy_node(source, size, datapath.NullWriter())[0]
    return digests


def compare_trees(a, b):
    """Differences between two trees: names, descriptions, times, parent links, disks."""
    problems = []
    nb = {n.uuid: n for n in b.nodes.values()}
    for node in a.nodes.values():
        other = nb.get(node.uuid)
        if other is None:
            problems.append("%s is missing on the destination" % node.name_label)
            continue
        for field in ("name_label", "name_description", "snapshot_time"):
            if getattr(node, field) != getattr(other, field):
                problems.append("%s: %s differs (%r, %r)" % (node.name_label, field,
                                                             getattr(node, field), getattr(other, field)))
        if (node.parent.uuid if node.parent else None) != (other.parent.uuid if other.parent else None):
            problems.append("%s: parent differs" % node.name_label)
        if sorted(node.disks) != sorted(other.disks):
            problems.append("%s: disks differ (%s, %s)" % (node.name_label, sorted(node.disks), sorted(other.disks)))
    if len(nb) != len(a.nodes):
        problems.append("the destination has %d nodes, the source %d" % (len(nb), len(a.nodes)))
    return problems


def apply_disposition(src, vm_ref, options, check_mode, result, dst):
    """keep: nothing; block: the source may no longer start; destroy: the source VM, its
    snapshots and their disks are removed (only after verification)."""
    how = options.source_disposition
    result["source_disposition"] = how
    if how == "keep":
        return
    try:
        src.call("VM.get_uuid", vm_ref)
    except XapiFailure:
        return  # destroyed by an earlier run
    if how == "block":
        blocked = src.call("VM.get_blocked_operations", vm_ref)
        if "start" not in blocked:
            result["changed"] = True
            if not check_mode:
                src.call("VM.add_to_blocked_operations", vm_ref, "start",
                         "migrated by xapi.sxm to %s" % dst.url)
        return
    if how == "destroy":
        result["changed"] = True
        if check_mode:
            return
        vdis = set()
        for snap in src.call("VM.get_snapshots", vm_ref) + [vm_ref]:
            for vbd in src.call("VM.get_VBDs", snap):
                rec = src.call("VBD.get_record", vbd)
                if rec["type"] == "Disk" and not rec["empty"]:
                    vdis.add(rec["VDI"])
        for snap in src.call("VM.get_snapshots", vm_ref):
            src.call("VM.destroy", snap)
        src.call("VM.destroy", vm_ref)
        for vdi in vdis:
            src.call("VDI.destroy", vdi)
        return
    raise MigrationError("unknown source disposition %r (keep, block or destroy)" % how)

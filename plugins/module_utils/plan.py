# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight and plan (DESIGN.md steps 1 and 3): find the VM, check it can move, and decide per
disk the walk order, the destination SR and the sizes. Every step of the flow plans afresh
from both pools (a few batched calls), so each can run alone; the plan is data that
``--check`` prints and that one module can hand to the next.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.xapi.sxm.plugins.module_utils import datapath, markers, memory, rights, tree as treemod, warm
from ansible_collections.xapi.sxm.plugins.module_utils.errors import (
    DataPathError, InputError, PreflightError, XapiFailure)

MODES = ("auto", "cold", "warm")
DISPOSITIONS = ("keep", "block", "destroy")
UNMOVABLE = ("refuse", "warn")
WHOLE_READ_MIB_S = 200   # a disk read whole over one TLS NBD connection (estimate, docs/performance.md)


# Bounds an argument spec cannot express: (least, most) of each numeric option that has one.
BOUNDS = {"bandwidth_limit": (0, None), "nbd_connections": (1, datapath.NBD_CONNECTIONS_MAX),
          "lock_timeout": (3, None), "orphan_timeout": (5, None), "interval": (0.1, None),
          "timeout": (1, None)}
# Text options that must not be empty when given.
NOT_EMPTY = ("vm", "url", "username", "default_sr", "report_dir")


def param_problems(params, where=""):
    """What is wrong with a module's parameters, before anything is read from a pool: numbers
    out of bounds, empty names; the pool options (dicts) are checked inside."""
    problems = []
    for name, value in sorted(params.items()):
        label = where + name
        if isinstance(value, dict) and name in ("source", "destination"):
            problems += param_problems(value, label + ".")
        elif name in BOUNDS and value is not None and not isinstance(value, bool):
            least, most = BOUNDS[name]
            if value < least or (most is not None and value > most):
                wanted = "between %s and %s" % (least, most) if most is not None else "at least %s" % least
                problems.append("%s is %s: give %s" % (label, value, wanted))
        elif name in NOT_EMPTY and value is not None and not str(value).strip():
            problems.append("%s is empty" % label)
    return problems


class Options:
    """What the user asked for, checked before anything is read from a pool."""

    def __init__(self, vm, sr_map=None, default_sr=None, network_map=None, mode="auto",
                 source_disposition="keep", use_cbt=True, verify=True, bandwidth_limit=None,
                 progress_file=None, nbd_connections=datapath.NBD_CONNECTIONS, userdevices=None,
                 unmovable_devices="refuse", use_vhd_maps=True, verify_depth="sample", warm_settings=None):
        if not vm:
            raise InputError("vm is empty: give the VM's uuid or its unique name")
        if mode not in MODES:
            raise InputError("mode %r: choose one of %s" % (mode, ", ".join(MODES)))
        if source_disposition not in DISPOSITIONS:
            raise InputError("source_disposition %r: choose one of %s"
                             % (source_disposition, ", ".join(DISPOSITIONS)))
        if bandwidth_limit is not None and bandwidth_limit < 0:
            raise InputError("bandwidth_limit %d is negative: give bytes per second, or 0 for "
                             "no limit" % bandwidth_limit)
        if not 1 <= nbd_connections <= datapath.NBD_CONNECTIONS_MAX:
            raise InputError("nbd_connections must be between 1 and %d (XAPI serves %d NBD "
                             "connections per host)" % (datapath.NBD_CONNECTIONS_MAX,
                                                        datapath.NBD_CONNECTIONS_MAX))
        self.vm = vm
        self.sr_map = dict(sr_map or {})
        self.default_sr = default_sr
        self.network_map = dict(network_map or {})
        self.mode = mode
        self.source_disposition = source_disposition
        self.use_cbt = use_cbt
        self.use_vhd_maps = use_vhd_maps
        self.verify = verify
        if verify_depth not in ("sample", "full"):
            raise InputError("verify_depth %r: choose sample or full" % (verify_depth,))
        self.verify_depth = verify_depth
        self.bandwidth_limit = bandwidth_limit or None
        self.progress_file = progress_file
        self.nbd_connections = nbd_connections
        self.userdevices = [str(u) for u in userdevices] if userdevices else None
        if unmovable_devices not in UNMOVABLE:
            raise InputError("unmovable_devices %r: choose one of %s" % (unmovable_devices, ", ".join(UNMOVABLE)))
        self.unmovable_devices = unmovable_devices
        self.warm = warm_settings or warm.Settings()


class AlreadyMigrated(Exception):
    """The VM is gone from the source and its migration is complete on the destination (the
    source was destroyed at cut-over): every step has nothing to do."""

    def __init__(self, vm_uuid, vm_name):
        super(AlreadyMigrated, self).__init__(vm_uuid)
        self.vm_uuid, self.vm_name = vm_uuid, vm_name

    def result(self):
        message = ("already migrated: VM %s is complete on the destination and gone from the "
                   "source; nothing to do" % self.vm_name)
        return {"changed": False, "vm_uuid": self.vm_uuid, "vm_name": self.vm_name,
                "message": message, "summary": [message], "lines": [message]}


def completed_on(dst, wanted):
    """The destination VM of a complete job for ``wanted`` (uuid or unique name), or None."""
    try:
        refs = [dst.call("VM.get_by_uuid", wanted)]
    except XapiFailure:
        refs = list(dst.call("VM.get_all_records_where",
                             'field "name__label"="%s"' % wanted.replace('"', '\\"')))
    if len(refs) != 1:
        return None
    rec = dst.call("VM.get_record", refs[0])
    if rec["is_a_snapshot"] or rec["is_a_template"] or markers.state_of(rec) != "complete" \
            or rec["other_config"].get(markers.JOB) != rec["uuid"]:
        return None
    return rec


def find_vm(conn, wanted):
    """A VM (not a snapshot or template) by uuid or unique name."""
    try:
        ref = conn.call("VM.get_by_uuid", wanted)
    except XapiFailure:
        found = conn.call("VM.get_all_records_where", 'field "name__label"="%s"' % wanted.replace('"', '\\"'))
        refs = [r for r, rec in found.items()
                if not rec["is_a_snapshot"] and not rec["is_a_template"] and not rec["is_control_domain"]]
        if not refs:
            raise InputError("no VM named or with uuid %r on the source pool" % wanted,
                             advice="check the name or uuid; nothing was changed")
        if len(refs) > 1:
            raise InputError("%d VMs are named %r on the source pool: give the uuid" % (len(refs), wanted))
        ref = refs[0]
    rec = conn.call("VM.get_record", ref)
    if rec["is_a_snapshot"] or rec["is_a_template"] or rec.get("is_control_domain"):
        raise InputError("%r is a snapshot, template or control domain, not a VM: give the VM itself" % wanted)
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
            raise InputError("the destination pool has no SR %r (from sr_map or default_sr)" % wanted)
    pool = dst.call("pool.get_all")[0]
    sr = dst.call("pool.get_default_SR", pool)
    if sr in ("", treemod.NULL):
        raise InputError("the destination pool has no default SR: give default_sr or sr_map")
    return sr


def memory_sr_for(src, dst, src_sr_ref, options):
    """Where a memory image goes: the SR sr_map or default_sr names for it, else the
    destination pool's suspend image SR (as XAPI's own migration chooses), else its default SR."""
    src_sr_uuid = src.call("SR.get_uuid", src_sr_ref)
    if src_sr_uuid in options.sr_map or options.default_sr:
        return destination_sr_for(dst, src_sr_uuid, options)
    sr = dst.call("pool.get_suspend_image_SR", dst.call("pool.get_all")[0])
    if sr not in ("", treemod.NULL):
        try:
            dst.call("SR.get_uuid", sr)
            return sr
        except XapiFailure:
            pass
    return destination_sr_for(dst, src_sr_uuid, options)


def effective_mode(vm_rec, options):
    """cold or warm, from the mode asked for and the VM's power state: auto is warm for a
    running VM and cold for a halted one; warm on a halted VM is cold (nothing runs)."""
    state, name = vm_rec["power_state"], vm_rec["name_label"]
    if state in ("Halted", "Suspended"):
        # a suspended VM's disks and memory image do not change: it moves as a halted one does,
        # its image with it, and arrives suspended
        return "cold"
    if state == "Running" and options.mode in ("auto", "warm"):
        return "warm"
    if state == "Running":
        raise PreflightError("VM %s is running: mode cold needs it halted" % name,
                             advice="use mode warm or auto (the VM moves while it runs and stops only for "
                                    "the last changes), or shut it down; nothing was changed")
    raise PreflightError("VM %s is %s: running, suspended and halted VMs are moved, a paused one is not"
                         % (name, state.lower()),
                         advice="unpause it (it then moves warm), suspend it or shut it down, then run "
                                "again; nothing was changed")


def check_movable(vm_rec, tree, options):
    effective_mode(vm_rec, options)
    state = markers.state_of(vm_rec)
    if state not in (None, "complete"):
        raise PreflightError("VM %s is the unfinished copy of another xapi.sxm migration (state %s) on "
                             "the source pool: it cannot move on before that migration completes"
                             % (vm_rec["name_label"], state),
                             advice="finish that migration (run it again) or remove its copy with "
                                    "migration_cleanup, then run again; nothing was changed")
    lost = sorted(n.name_label for n in tree.nodes.values() if n.suspend_vdi_ref and n.memory is None)
    if lost:
        raise PreflightError("the memory image (suspend VDI) of %s cannot be read: its VDI is gone"
                             % ", ".join(lost),
                             advice="a checkpoint without its image cannot be reverted to anywhere: delete it "
                                    "(or resume or shut down the VM), then run again; nothing was changed")
    emptied = sorted("%s (disk %s)" % (n.name_label, d.userdevice) for n, d in tree.metadata_only() if n)
    if emptied:
        raise PreflightError("snapshots whose disks hold only CBT metadata cannot be copied (a backup tool "
                             "destroyed their data with VDI.data_destroy): %s" % ", ".join(emptied),
                             advice="delete those snapshots on the source (the backup tool's next backup "
                                    "is then a full one), then run again; nothing was changed")


def unmovable_devices(vm_rec):
    """Devices bound to the source host's hardware, which no migration to another pool carries:
    PCI passthrough (configured in other_config:pci, or attached), vGPUs, USB passthrough."""
    found = []
    if vm_rec["other_config"].get("pci"):
        found.append("PCI passthrough %s (other_config:pci)" % vm_rec["other_config"]["pci"])
    found += ["attached PCI device %s" % ref for ref in vm_rec.get("attached_PCIs", [])]
    found += ["vGPU %s" % ref for ref in vm_rec.get("VGPUs", [])]
    found += ["USB passthrough %s" % ref for ref in vm_rec.get("VUSBs", [])]
    return found


def check_devices(vm_rec, options):
    """Refused, or a warning, as the user chose (unmovable_devices)."""
    devices = unmovable_devices(vm_rec)
    if not devices:
        return []
    text = "VM %s has devices no migration to another pool can carry: %s" % (
        vm_rec["name_label"], "; ".join(devices))
    if options.unmovable_devices == "refuse":
        raise PreflightError(text, advice="remove them from the VM, or set unmovable_devices to "
                             "warn to migrate it without them, then run again; nothing was changed")
    return [text + ": the destination VM is made without them; assign them again there"]


# XenServer 7.3 (Inverness), XAPI 2.8: VDI.get_nbd_info, network purposes and changed block
# tracking all came with it (xen-api ocaml/idl/datamodel.ml lifecycles; datamodel_types.ml)
MIN_API_VERSION = (2, 8)
MIN_API_RELEASE = "XenServer 7.3 / XCP-ng 7.4"


def check_two_pools(src, dst):
    """Source and destination must be two pools: the same one twice would have the
    migration find its own copy, and a disposition remove it. Both must speak XAPI 2.8 or
    later (their masters' API version)."""
    pools = []
    for conn, which in ((src, "source"), (dst, "destination")):
        pool = conn.call("pool.get_all")[0]
        pools.append(conn.call("pool.get_uuid", pool))
        check_version(conn, which, conn.call("pool.get_master", pool))
    if pools[0] == pools[1]:
        raise InputError("the source and the destination are the same pool (%s): give another destination"
                         % dst.url, advice="nothing was changed; point destination at another pool")


def check_version(conn, which, master):
    """The pool master's XAPI is at least MIN_API_VERSION."""
    version = (int(conn.call("host.get_API_version_major", master)),
               int(conn.call("host.get_API_version_minor", master)))
    if version < MIN_API_VERSION:
        raise PreflightError("the %s pool (%s) runs XAPI %d.%d; this collection needs %d.%d or later (%s: NBD "
                             "exports of disks, network purposes, changed block tracking)"
                             % ((which, conn.url) + version + MIN_API_VERSION + (MIN_API_RELEASE,)),
                             advice="update the pool to %s or later; nothing was changed" % MIN_API_RELEASE)


def check_rights(src, dst, options, mode="cold"):
    """Both accounts may do what the flow does (rights.py). Returns warnings: what a
    destination account that is not local root cannot keep."""
    source_needs, destination_needs = rights.needed(options.source_disposition, mode == "warm",
                                                    options.warm.hard_shutdown)
    for conn, which, needs in ((src, "source", source_needs), (dst, "destination", destination_needs)):
        lacking = rights.missing(conn, needs)
        if lacking:
            raise PreflightError("the account %r on the %s pool (%s) may not %s, which the migration needs"
                                 % (conn.username, which, conn.url, ", ".join(lacking)),
                                 advice="use an account with the pool-admin role (or pool-operator on the "
                                        "destination, vm-admin on the source), or local root, then run "
                                        "again; nothing was changed")
    if not dst.is_local_superuser:
        return ["the destination account %r is not local root: the snapshot disks there keep the time of "
                "their making, not the source's snapshot_time (XAPI lets only local root set it)" % dst.username]
    return []


def make_plan(src, dst, options):
    """Everything decided before data moves. Returns a dict: ``vm_ref``, ``vm`` (record),
    ``tree`` (tree.Tree), ``disks`` (per disk: walk, SRs, sizes), ``tls``."""
    check_two_pools(src, dst)
    warnings = check_rights(src, dst, options)
    try:
        vm_ref, vm_rec = find_vm(src, options.vm)
    except InputError:
        done = completed_on(dst, options.vm)
        if done is None:
            raise
        raise AlreadyMigrated(done["uuid"], done["name_label"])
    tree = treemod.discover(src, vm_ref)
    check_movable(vm_rec, tree, options)
    warnings += check_devices(vm_rec, options)
    devices = tree.userdevices()
    if options.userdevices:
        unknown = sorted(set(options.userdevices) - set(devices))
        if unknown:
            raise InputError("the VM has no disk at userdevice %s (it has %s)"
                             % (", ".join(unknown), ", ".join(devices) or "none"))
        devices = [d for d in devices if d in options.userdevices]
    disks = [plan_disk(src, dst, tree, userdevice, options) for userdevice in devices]
    warnings += smapiv3_warnings(disks, tree)
    images = memory.plan_images(dst, tree, lambda sr: memory_sr_for(src, dst, sr, options))
    space = check_space(dst, disks + images, vm_rec["uuid"])
    mode = effective_mode(vm_rec, options)
    if mode == "warm":
        check_rights(src, dst, options, mode)
        warnings += warm_warnings(src, tree, disks)
    return {"vm_ref": vm_ref, "vm": vm_rec, "tree": tree, "disks": disks, "tls": nbd_uses_tls(src),
            "job": vm_rec["uuid"], "space": space, "warnings": warnings, "mode": mode, "memory_images": images}


def warm_warnings(src, tree, disks):
    """A running disk without CBT on an SR that cannot give VHD maps (SMAPIv3) is read whole
    in every pass and once more while the VM is stopped: the downtime grows with its size."""
    whole = []
    for disk in disks:
        leaf = tree.vm.disks.get(disk["userdevice"])
        if leaf is not None and not leaf.cbt_enabled and smapi_version(src, leaf.sr_ref) == 3:
            whole.append(leaf)
    if not whole:
        return []
    size = sum(d.virtual_size for d in whole)
    return ["disk(s) %s have no CBT on an SMAPIv3 SR: each pass, and the last one while the VM is stopped, "
            "reads them whole (%s); at %d MiB/s the downtime is about %d s. Enable CBT on them "
            "(VDI.enable_cbt) for a downtime of seconds"
            % (", ".join(d.userdevice for d in whole), gib(size), WHOLE_READ_MIB_S,
               size // (WHOLE_READ_MIB_S << 20))]


def smapi_version(conn, sr_ref):
    """3 for an SR whose plugin speaks SMAPIv3 (xapi-storage plugins ask for API 5.0 in their
    SM record's required_api_version), else 1."""
    sr_type = conn.call("SR.get_type", sr_ref)
    for rec in conn.call("SM.get_all_records_where", 'field "type"="%s"' % sr_type).values():
        if int(rec.get("required_api_version", "1").split(".")[0] or 1) >= 5:
            return 3
    return 1


def smapiv3_warnings(disks, tree):
    """On an SMAPIv3 destination SR a snapshot's ``snapshot_of`` is the backend's: a link to a
    volume that no longer exists is dropped at the SR's next scan (the source's dangles)."""
    out = []
    for row in tree.layouts():
        disk = [d for d in disks if d["userdevice"] == row["userdevice"]]
        if row["layout"] == "snapshot_of dangles" and disk and disk[0]["destination_smapi"] == 3:
            out.append("disk %s goes to an SMAPIv3 SR: its %d snapshot(s) whose snapshot_of dangles arrive with "
                       "snapshot_of empty after the SR's next scan (bytes and tree are kept)"
                       % (row["userdevice"], len(row["vdi_uuids"])))
    return out


def check_space(dst, disks, job):
    """Free space on each destination SR for what the job still has to store there, before
    any byte moves. The estimate per disk is what its tree occupies on the source: the sum of
    the physical_utilisation of every snapshot VDI and of the VM's own (a snapshot on the
    destination holds what it holds on the source, counted in the same allocation units).
    What the job already stored there (a re-run) is subtracted. A tree with reverted branches
    can need more: each switch to another branch rewrites the blocks the abandoned one
    changed. Returns per SR the figures it compared."""
    by_sr = {}
    for disk in disks:
        by_sr.setdefault(disk["destination_sr_ref"], []).append(disk)
    stored = {}
    for rec in markers.job_vdis(dst, list(by_sr), job).values():
        stored[rec["SR"]] = stored.get(rec["SR"], 0) + int(rec["physical_utilisation"])
    found = []
    for sr, sr_disks in sorted(by_sr.items()):
        rec = dst.call("SR.get_record", sr)
        estimate = sum(d["estimated_bytes"] for d in sr_disks)
        needed = max(0, estimate - stored.get(sr, 0))
        free = int(rec["physical_size"]) - int(rec["physical_utilisation"])
        found.append({"sr": rec["uuid"], "estimate_bytes": estimate, "needed_bytes": needed,
                      "free_bytes": free})
        if needed > free:
            raise PreflightError(
                "the destination SR %r has %s free; this VM's disks %s need about %s more there "
                "(the space their trees occupy on the source)"
                % (rec["name_label"], gib(free), ", ".join(d.get("label", d["userdevice"]) for d in sr_disks),
                   gib(needed)),
                advice="free space on that SR, or send the disks to another SR with sr_map or "
                       "default_sr, then run again; nothing was changed")
    return found


def gib(n):
    return "%.2f GiB" % (n / float(1 << 30))


def plan_disk(src, dst, tree, userdevice, options):
    walk = tree.mirror_walk(userdevice)
    leaf = tree.vm.disks.get(userdevice)
    model = leaf or walk[-1].disks[userdevice]
    src_sr_uuid = src.call("SR.get_uuid", model.sr_ref)
    dst_sr = destination_sr_for(dst, src_sr_uuid, options)
    return {
        "userdevice": userdevice, "source_sr": src_sr_uuid,
        "destination_sr": dst.call("SR.get_uuid", dst_sr), "destination_sr_ref": dst_sr,
        "destination_smapi": smapi_version(dst, dst_sr),
        "walk": [n.name_label for n in walk], "walk_uuids": [n.uuid for n in walk],
        "has_leaf": leaf is not None,
        "virtual_size": model.virtual_size,
        "estimated_bytes": sum(n.disks[userdevice].physical_utilisation for n in walk)
        + (leaf.physical_utilisation if leaf else 0),
        # an upper bound: every node read in full (CBT and block status read less)
        "bytes_to_read": sum(n.disks[userdevice].virtual_size for n in walk)
        + (leaf.virtual_size if leaf else 0),
        "cbt": all(n.disks[userdevice].cbt_enabled for n in walk) and (leaf is None or leaf.cbt_enabled),
    }


def check_nbd(src, the_plan):
    """One NBD export of the source opened and closed before anything is made on the
    destination: a network with the purpose nbd reaches the disks, and its port, TLS and
    certificate work from here."""
    if not the_plan["disks"]:
        return
    device = the_plan["disks"][0]["userdevice"]
    tree = the_plan["tree"]
    node = tree.vm if device in tree.vm.disks else tree.walk(device)[0]
    try:
        record = datapath.pick_nbd_record(src.call("VDI.get_nbd_info", node.disks[device].vdi_ref))
        with datapath.NbdSource(record, tls=the_plan["tls"]) as source:
            source.size()
    except DataPathError as e:
        raise PreflightError(e.message)


def plan_summary(the_plan):
    """The plan as plain data (no refs): what --check prints and results carry."""
    return {"disks": [{k: v for k, v in d.items() if k != "destination_sr_ref"} for d in the_plan["disks"]],
            "nbd_tls": the_plan["tls"], "space": the_plan["space"], "layouts": the_plan["tree"].layouts(),
            "mode": the_plan["mode"],
            "memory_images": [{k: v for k, v in m.items() if k != "destination_sr_ref"}
                              for m in the_plan.get("memory_images", [])]}


def destination_progress(dst, the_plan):
    """What the destination already holds of this job: per disk the nodes mirrored and what
    the working disk holds, and the VM's state."""
    job = the_plan["job"]
    vdis = markers.job_vdis(dst, [d["destination_sr_ref"] for d in the_plan["disks"]], job)
    disks = []
    for disk in the_plan["disks"]:
        mine = [rec for rec in vdis.values() if rec["other_config"].get(markers.DEVICE) == disk["userdevice"]]
        nodes = {rec["other_config"].get(markers.SOURCE) for rec in mine
                 if rec["other_config"].get(markers.ROLE) == "node"}
        working = [rec for rec in mine if rec["other_config"].get(markers.ROLE) == "working"
                   and not rec["is_a_snapshot"]]
        disks.append({"userdevice": disk["userdevice"],
                      "nodes_mirrored": len(nodes & set(walk_vdi_uuids(the_plan["tree"], disk))),
                      "nodes": len(disk["walk_uuids"]),
                      "working_vdi_holds": working[0]["other_config"].get(markers.HOLDS) if working else None})
    dummy, vm_rec = markers.destination_vm(dst, job)
    return {"disks": disks, "vm_state": markers.state_of(vm_rec)}


def walk_vdi_uuids(tree, disk):
    device = disk["userdevice"]
    return [n.disks[device].uuid for n in tree.mirror_walk(device)]


def progress_text(dst, the_plan):
    """What the destination holds of this job, as lines (the ``--diff`` of the steps)."""
    status = destination_progress(dst, the_plan)
    lines = ["destination VM: %s" % (status["vm_state"] or "none")]
    for disk in status["disks"]:
        lines.append("disk %s: %d of %d snapshot nodes mirrored; working disk holds %s"
                     % (disk["userdevice"], disk["nodes_mirrored"], disk["nodes"],
                        (disk["working_vdi_holds"] or "nothing").split(":")[0]))
    return "\n".join(lines) + "\n"

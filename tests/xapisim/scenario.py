"""Building test VMs through the public API, as a user of a real pool would: VMs with disks,
data written through ``/import_raw_vdi``, snapshot trees with reverted branches, and a text
drawing of a VM's snapshot tree. Used by the demo, the tests and the benchmarks."""

import struct

from . import client

MiB = 1 << 20
NULL = "OpaqueRef:NULL"


def default_sr(x):
    return x.xenapi.pool.get_default_SR(x.xenapi.pool.get_all()[0])


def nbd_network(x):
    for ref, rec in x.xenapi.network.get_all_records().items():
        if rec["purpose"]:
            return ref
    return x.xenapi.network.get_all()[0]


def create_vm(x, name, disk_sizes, sr=None, network=None, cd=False):
    """A halted VM with one disk per size (userdevice 0, 1, ...), one VIF, optionally an empty
    CD drive. Returns the VM ref."""
    sr = sr or default_sr(x)
    vm = x.xenapi.VM.create({
        "name_label": name, "name_description": "made by xapisim.scenario",
        "user_version": "1", "is_a_template": False, "affinity": NULL,
        "memory_static_max": str(256 * MiB), "memory_dynamic_max": str(256 * MiB),
        "memory_dynamic_min": str(256 * MiB), "memory_static_min": str(256 * MiB),
        "VCPUs_params": {}, "VCPUs_max": "1", "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "PV_bootloader": "", "PV_kernel": "", "PV_ramdisk": "",
        "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "", "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cd"}, "HVM_shadow_multiplier": 1.0, "platform": {},
        "PCI_bus": "", "other_config": {}, "recommendations": "", "xenstore_data": {},
        "ha_always_run": False, "ha_restart_priority": "", "tags": [], "blocked_operations": {},
        "protection_policy": NULL, "is_snapshot_from_vmpp": False, "appliance": NULL,
        "start_delay": "0", "shutdown_delay": "0", "order": "0", "suspend_SR": NULL,
        "version": "0", "generation_id": "", "hardware_platform_version": "0",
        "has_vendor_device": False, "reference_label": "", "domain_type": "hvm", "NVRAM": {},
    })
    for index, size in enumerate(disk_sizes):
        add_disk(x, vm, index, size, sr, "%s disk %d" % (name, index))
    if cd:
        x.xenapi.VBD.create({
            "VM": vm, "VDI": NULL, "userdevice": str(len(disk_sizes)), "bootable": False,
            "mode": "RO", "type": "CD", "unpluggable": True, "empty": True,
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
        })
    x.xenapi.VIF.create({
        "device": "0", "network": network or nbd_network(x), "VM": vm,
        "MAC": "", "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
        "qos_algorithm_params": {}, "locking_mode": "network_default", "ipv4_allowed": [],
        "ipv6_allowed": [],
    })
    return vm


def add_disk(x, vm, userdevice, size, sr=None, label="disk"):
    vdi = x.xenapi.VDI.create({
        "name_label": label, "name_description": "", "SR": sr or default_sr(x),
        "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": [],
    })
    x.xenapi.VBD.create({
        "VM": vm, "VDI": vdi, "userdevice": str(userdevice), "bootable": userdevice == 0,
        "mode": "RW", "type": "Disk", "unpluggable": False, "empty": False,
        "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
    })
    return vdi


def disks(x, vm):
    """{userdevice: VDI ref} of a VM's (or snapshot's) disks."""
    out = {}
    for vbd in x.xenapi.VM.get_VBDs(vm):
        rec = x.xenapi.VBD.get_record(vbd)
        if rec["type"] == "Disk" and not rec["empty"]:
            out[rec["userdevice"]] = rec["VDI"]
    return out


def chunked_body(writes):
    """The body of a chunked raw import: {u64 LE offset, u32 LE length} + data per write,
    ended by a zero header."""
    parts = []
    for offset, data in writes:
        parts.append(struct.pack("<QI", offset, len(data)))
        parts.append(data)
    parts.append(struct.pack("<QI", 0, 0))
    return b"".join(parts)


def write_disk(pool, x, vdi, writes):
    """Write [(offset, bytes)] into a VDI of a halted VM through PUT /import_raw_vdi."""
    body = chunked_body(writes)
    status, headers, data = client.http_request(
        pool, "PUT", "/import_raw_vdi",
        query={"vdi": x.xenapi.VDI.get_uuid(vdi), "format": "raw", "chunked": "true"},
        session=x, body=body, headers={"Content-Length": str(len(body))})
    if status != 200:
        raise RuntimeError("import_raw_vdi answered %s: %r" % (status, data[:200]))


def pattern(tag, length):
    """Recognisable, non-zero bytes for a write tagged ``tag``."""
    unit = ("%s|" % tag).encode()
    return (unit * (length // len(unit) + 1))[:length]


def host_local_sr(x, index):
    """The SMAPIv1 local SR of the pool's host ``index`` (``xapisim up --hosts N``)."""
    host = next(h for h in x.xenapi.host.get_all() if x.xenapi.host.get_name_label(h).endswith("-host%d" % index))
    return next(sr for sr in (x.xenapi.PBD.get_SR(p) for p in x.xenapi.host.get_PBDs(host))
                if x.xenapi.SR.get_type(sr) == "ext")


def build_branched_tree(pool, x, name="demo-vm", disk_sizes=(16 * MiB, 8 * MiB), sr=None):
    """A VM whose snapshot tree has a reverted branch:

        base ── v1 ── v2-abandoned
                  └── v2 (active) ── <VM>

    Each step writes distinct data on every disk. Returns the VM ref."""
    vm = create_vm(x, name, list(disk_sizes), sr=sr)

    def write_step(tag, block):
        for userdevice, vdi in disks(x, vm).items():
            write_disk(pool, x, vdi, [(block * 64 * 1024, pattern("%s-%s" % (tag, userdevice), 64 * 1024))])

    write_step("base", 0)
    x.xenapi.VM.snapshot(vm, "base")
    write_step("v1", 1)
    v1 = x.xenapi.VM.snapshot(vm, "v1")
    write_step("v2-abandoned", 2)
    x.xenapi.VM.snapshot(vm, "v2-abandoned")
    x.xenapi.VM.revert(v1)
    write_step("v2", 3)
    x.xenapi.VM.snapshot(vm, "v2")
    write_step("leaf", 4)
    return vm


def build_tree(pool, x, name, disk_sizes, steps, sr=None, cd=False):
    """A VM built by a list of steps, each a tuple:
    ("write", tag) writes distinct data on every disk (a new 64 KiB block each time, and
    rewrites block 0, so consecutive nodes differ in both new and old blocks);
    ("zero", tag) zeroes block 0 of every disk (a block that became zero);
    ("snap", label) takes a snapshot; ("revert", label) reverts to that snapshot;
    ("add_disk", size) adds a disk; ("cbt", userdevice) enables CBT on that disk.
    Returns (VM ref, {label: snapshot ref})."""
    vm = create_vm(x, name, list(disk_sizes), sr=sr, cd=cd)
    snaps, counter = {}, [0]
    for step in steps:
        kind, arg = step
        if kind in ("write", "zero"):
            counter[0] += 1
            for userdevice, vdi in disks(x, vm).items():
                size = int(x.xenapi.VDI.get_virtual_size(vdi))
                nblocks = size // (64 * 1024)
                block = 1 + (counter[0] * 7) % max(1, nblocks - 1)
                if kind == "write":
                    writes = [(0, pattern("%s-%s-head" % (arg, userdevice), 4096)),
                              (block * 64 * 1024, pattern("%s-%s" % (arg, userdevice), 64 * 1024))]
                else:
                    writes = [(0, bytes(64 * 1024))]
                write_disk(pool, x, vdi, writes)
        elif kind == "snap":
            snaps[arg] = x.xenapi.VM.snapshot(vm, arg)
        elif kind == "revert":
            x.xenapi.VM.revert(snaps[arg])
        elif kind == "add_disk":
            used = [int(x.xenapi.VBD.get_userdevice(v)) for v in x.xenapi.VM.get_VBDs(vm)]
            add_disk(x, vm, max(used) + 1, arg, sr, "%s disk %d" % (name, max(used) + 1))
        elif kind == "cbt":
            x.xenapi.VDI.enable_cbt(disks(x, vm)[str(arg)])
        else:
            raise ValueError(kind)
    return vm, snaps


def main(argv=None):
    """``python -m xapisim.scenario build-tree --pools-json F [--pool N] [--name NAME] [--host N]
    [--tag TAG]``: build the branched demo tree (on host N's local SR) and print the VM's uuid
    (used by playbooks/demo.yml and demo_evacuate.yml)."""
    import argparse
    import json
    parser = argparse.ArgumentParser(prog="xapisim.scenario")
    parser.add_argument("command", choices=["build-tree"])
    parser.add_argument("--pools-json", required=True)
    parser.add_argument("--pool", type=int, default=0)
    parser.add_argument("--name", default="demo-vm")
    parser.add_argument("--host", type=int)
    parser.add_argument("--tag", action="append", default=[])
    args = parser.parse_args(argv)
    with open(args.pools_json) as f:
        pool = json.load(f)["pools"][args.pool]
    x = client.login(pool)
    try:
        sr = host_local_sr(x, args.host) if args.host is not None else None
        vm = build_branched_tree(pool, x, args.name, sr=sr)
        for tag in args.tag:
            x.xenapi.VM.add_tags(vm, tag)
        print(x.xenapi.VM.get_uuid(vm))
    finally:
        x.xenapi.session.logout()
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())

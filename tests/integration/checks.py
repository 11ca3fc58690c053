"""What a user checks after a migration: the destination tree equals the source's, every disk's
bytes are equal (read back over NBD on both pools), the VDI-level snapshot links hold after an
SR.scan, and nothing is left behind on either pool."""

from xapisim import client

NULL = "OpaqueRef:NULL"


def parent_uuid(x, ref):
    """The uuid of a parent, or None for NULL and for a ref that names no VM: XAPI's metadata
    import leaves the root snapshot's parent as an unresolved export id ("Ref:N")."""
    try:
        return x.xenapi.VM.get_uuid(ref) if ref != NULL else None
    except Exception:  # noqa: BLE001 - HANDLE_INVALID
        return None


def snapshot_tree(x, vm):
    """{uuid: (name, description, snapshot_time, parent uuid)} of a VM and its snapshots."""
    out = {}
    for ref in [vm] + x.xenapi.VM.get_snapshots(vm):
        rec = x.xenapi.VM.get_record(ref)
        parent = parent_uuid(x, rec["parent"])
        out[rec["uuid"]] = (rec["name_label"], rec["name_description"],
                            rec["snapshot_time"].value if rec["is_a_snapshot"] else None, parent)
    return out


def disks_by_node(x, vm):
    """{node uuid: {userdevice: VDI ref}} for the VM and its snapshots (disks only)."""
    out = {}
    for ref in [vm] + x.xenapi.VM.get_snapshots(vm):
        found = {}
        for vbd in x.xenapi.VM.get_VBDs(ref):
            rec = x.xenapi.VBD.get_record(vbd)
            if rec["type"] == "Disk" and not rec["empty"]:
                found[rec["userdevice"]] = rec["VDI"]
        out[x.xenapi.VM.get_uuid(ref)] = found
    return out


def memory_images(x, vm):
    """{node uuid: suspend VDI ref} for the VM and its snapshots that have a memory image."""
    out = {}
    for ref in [vm] + x.xenapi.VM.get_snapshots(vm):
        image = x.xenapi.VM.get_suspend_VDI(ref)
        if image != "OpaqueRef:NULL":
            out[x.xenapi.VM.get_uuid(ref)] = image
    return out


def assert_memory_images(src, dst, vm_uuid):
    """The destination's VM and snapshots have the memory images, power states and image bytes
    of the source's. Returns {node uuid: destination image ref}."""
    s_vm, d_vm = src.xenapi.VM.get_by_uuid(vm_uuid), dst.xenapi.VM.get_by_uuid(vm_uuid)
    s_images, d_images = memory_images(src, s_vm), memory_images(dst, d_vm)
    assert sorted(d_images) == sorted(s_images)
    for node, image in s_images.items():
        assert client.nbd_digest(dst, d_images[node]) == client.nbd_digest(src, image), "memory of %s differs" % node
    for ref in [s_vm] + src.xenapi.VM.get_snapshots(s_vm):
        uuid = src.xenapi.VM.get_uuid(ref)
        assert dst.xenapi.VM.get_power_state(dst.xenapi.VM.get_by_uuid(uuid)) == src.xenapi.VM.get_power_state(ref)
    return d_images


def inventory(x):
    """What exists on a pool, to compare before and after: VM uuids and VDI uuids."""
    vms = {r["uuid"] for r in x.xenapi.VM.get_all_records().values()}
    vdis = {r["uuid"] for r in x.xenapi.VDI.get_all_records().values()}
    return vms, vdis


def assert_migrated(src, dst, vm_uuid, scan=True):
    """Returns the list of destination snapshot VDIs whose snapshot_time differs from the
    source's (the caller compares it with what the migration reported)."""
    s_vm = src.xenapi.VM.get_by_uuid(vm_uuid)
    d_vm = dst.xenapi.VM.get_by_uuid(vm_uuid)
    assert snapshot_tree(dst, d_vm) == snapshot_tree(src, s_vm)
    s_disks, d_disks = disks_by_node(src, s_vm), disks_by_node(dst, d_vm)
    assert {k: sorted(v) for k, v in d_disks.items()} == {k: sorted(v) for k, v in s_disks.items()}
    if scan:
        for sr in {dst.xenapi.VDI.get_SR(v) for node in d_disks.values() for v in node.values()}:
            dst.xenapi.SR.scan(sr)
    leaf = d_disks[vm_uuid]
    time_differs = []
    for node_uuid, devices in s_disks.items():
        for userdevice, s_vdi in devices.items():
            d_vdi = d_disks[node_uuid][userdevice]
            assert client.nbd_digest(dst, d_vdi) == client.nbd_digest(src, s_vdi), \
                "disk %s of %s differs" % (userdevice, node_uuid)
            if node_uuid == vm_uuid:
                assert dst.xenapi.VDI.get_is_a_snapshot(d_vdi) is False
                continue
            assert dst.xenapi.VDI.get_is_a_snapshot(d_vdi) is True
            if userdevice in leaf:
                assert dst.xenapi.VDI.get_snapshot_of(d_vdi) == leaf[userdevice], \
                    "snapshot disk %s of %s is not a snapshot of the destination leaf" % (userdevice, node_uuid)
            if dst.xenapi.VDI.get_snapshot_time(d_vdi).value != src.xenapi.VDI.get_snapshot_time(s_vdi).value:
                time_differs.append(dst.xenapi.VDI.get_uuid(d_vdi))
    return time_differs


def assert_nothing_left_behind(dst, vm_uuid, before):
    """The destination holds what it had before plus the VM, its snapshots and their disks."""
    vms, vdis = inventory(dst)
    d_vm = dst.xenapi.VM.get_by_uuid(vm_uuid)
    ours_vms = {vm_uuid} | {dst.xenapi.VM.get_uuid(s) for s in dst.xenapi.VM.get_snapshots(d_vm)}
    ours_vdis = {dst.xenapi.VDI.get_uuid(v) for node in disks_by_node(dst, d_vm).values() for v in node.values()}
    ours_vdis |= {dst.xenapi.VDI.get_uuid(v) for v in memory_images(dst, d_vm).values()}
    assert vms - before[0] == ours_vms
    assert vdis - before[1] == ours_vdis
    pending = [t for t in dst.xenapi.task.get_all_records().values() if t["status"] == "pending"]
    assert pending == []


def independent_walk_minimum(src, result):
    """The walk's minimum computed here, from the source disks read over NBD: per disk, the
    non-zero blocks of the first node plus, along the walk (then the leaf), every block where
    consecutive nodes differ. Independent of what the migration measured itself."""
    nodes = {n["uuid"]: n for n in result["source_tree"]["nodes"]}
    vm_uuid = result["source_tree"]["vm"]["uuid"]
    total = 0
    for disk in result["plan"]["disks"]:
        sequence = list(disk["walk_uuids"]) + ([vm_uuid] if disk["has_leaf"] else [])
        previous = None
        for node_uuid in sequence:
            vdi_uuid = [d["vdi_uuid"] for d in nodes[node_uuid]["disks"]
                        if d["userdevice"] == disk["userdevice"]][0]
            digests = client.nbd_block_digests(src, src.xenapi.VDI.get_by_uuid(vdi_uuid))
            if previous is None:
                total += sum(1 for d in digests if d is not None)
            else:
                n = max(len(previous), len(digests))
                pad = [None] * n
                a, b = (previous + pad)[:n], (digests + pad)[:n]
                total += sum(1 for i in range(n) if a[i] != b[i])
            previous = digests
    return total * 64 * 1024

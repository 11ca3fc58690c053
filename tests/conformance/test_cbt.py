"""Changed block tracking (XAPI-FACTS §4, fact 12): enable/disable rules, list_changed_blocks
bitmaps computed from real guest writes, data_destroy."""

import base64


from xapisim.testing import error_of, guest_write
from xapisim import scenario

MiB = 1 << 20
BLOCK = 64 * 1024
NULL = "OpaqueRef:NULL"


def write_blocks(pool, x, vm, blocks):
    for block in blocks:
        guest_write(pool, x, vm, 0, block * BLOCK + 1000, b"w" * 100)


def changed(x, vdi_from, vdi_to):
    """Decode the bitmap: bit i (most significant bit of byte 0 first) = 64 KiB block i."""
    bitmap = base64.b64decode(x.xenapi.VDI.list_changed_blocks(vdi_from, vdi_to))
    return {i for i in range(len(bitmap) * 8) if bitmap[i // 8] & (0x80 >> (i % 8))}, len(bitmap)


def disk0(x, vm):
    return scenario.disks(x, vm)["0"]


def test_list_changed_blocks_between_snapshots(pools, xapi):
    """Fact 12 / §4: base64 bitmap, 64 KiB blocks, MSB first, length ceil(size/64 KiB) bits
    rounded up to bytes; the chain of logs from vdi_from down to vdi_to is ORed; VDI_IN_USE
    [vdi_to, "list_changed_blocks"] while vdi_to is attached to a running VM."""
    pool = pools[0]
    vm = scenario.create_vm(xapi, "cbt", [6 * MiB])
    leaf = disk0(xapi, vm)
    xapi.xenapi.VDI.enable_cbt(leaf)
    xapi.xenapi.VM.start(vm, False, False)
    write_blocks(pool, xapi, vm, [0, 3, 17])
    s1 = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "s1"))
    write_blocks(pool, xapi, vm, [5, 17, 95])
    guest_write(pool, xapi, vm, 0, 10 * BLOCK - 100, b"x" * 200)   # straddles blocks 9 and 10
    s2 = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "s2"))
    assert xapi.xenapi.VDI.get_cbt_enabled(s2) is True
    assert changed(xapi, s1, s2) == ({5, 9, 10, 17, 95}, 12)
    write_blocks(pool, xapi, vm, [40])
    assert error_of(xapi.xenapi.VDI.list_changed_blocks, s1, leaf) == \
        ["VDI_IN_USE", leaf, "list_changed_blocks"]
    xapi.xenapi.VM.hard_shutdown(vm)
    assert changed(xapi, s2, leaf)[0] == {40}
    assert changed(xapi, s1, leaf)[0] == {5, 9, 10, 17, 40, 95}
    s3 = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "s3"))
    assert changed(xapi, s1, s3)[0] == {5, 9, 10, 17, 40, 95}


def test_odd_size_bitmap_length(pools, xapi):
    """§4: length = ceil(virtual_size / 64 KiB) bits rounded up to bytes (SMAPIv3 SR, whose
    sizes are not rounded to 2 MiB)."""
    v3 = [sr for sr, rec in xapi.xenapi.SR.get_all_records().items() if rec["type"] == "file-v3"][0]
    vm = scenario.create_vm(xapi, "cbt-odd", [1 * MiB + 512], sr=v3)
    xapi.xenapi.VDI.enable_cbt(disk0(xapi, vm))
    a = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "a"))
    xapi.xenapi.VM.start(vm, False, False)
    guest_write(pools[0], xapi, vm, 0, 16 * BLOCK, b"z" * 512)
    xapi.xenapi.VM.hard_shutdown(vm)
    b = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "b"))
    assert changed(xapi, a, b) == ({16}, 3)


def test_cbt_errors_and_idempotence(xapi):
    """§4: enable/disable idempotent; OPERATION_NOT_ALLOWED ["VDI is a snapshot: <ref>"];
    VDI_INCOMPATIBLE_TYPE [vdi, type]; VDI_NO_CBT_METADATA [vdi]; unrelated and identical VDIs
    -> SR_BACKEND_FAILURE_460 (sm CBTChangedBlocksError)."""
    vm = scenario.create_vm(xapi, "cbt-errors", [2 * MiB])
    leaf = disk0(xapi, vm)
    xapi.xenapi.VDI.enable_cbt(leaf)
    xapi.xenapi.VDI.enable_cbt(leaf)
    assert xapi.xenapi.VDI.get_cbt_enabled(leaf) is True
    snap = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "s"))
    assert error_of(xapi.xenapi.VDI.enable_cbt, snap) == \
        ["OPERATION_NOT_ALLOWED", "VDI is a snapshot: %s" % snap]
    assert error_of(xapi.xenapi.VDI.disable_cbt, snap) == \
        ["OPERATION_NOT_ALLOWED", "VDI is a snapshot: %s" % snap]
    odd = xapi.xenapi.VDI.create({
        "name_label": "ephemeral", "SR": scenario.default_sr(xapi), "virtual_size": str(MiB),
        "type": "ephemeral", "sharable": False, "read_only": False, "other_config": {}})
    assert error_of(xapi.xenapi.VDI.enable_cbt, odd) == \
        ["VDI_INCOMPATIBLE_TYPE", odd, "ephemeral"]
    other_vm = scenario.create_vm(xapi, "cbt-other", [2 * MiB])
    plain = disk0(xapi, other_vm)
    assert error_of(xapi.xenapi.VDI.list_changed_blocks, snap, plain) == \
        ["VDI_NO_CBT_METADATA", plain]
    xapi.xenapi.VDI.enable_cbt(plain)
    unrelated = error_of(xapi.xenapi.VDI.list_changed_blocks, snap, plain)
    assert unrelated[0] == "SR_BACKEND_FAILURE_460" and "unrelated" in unrelated[2]
    assert error_of(xapi.xenapi.VDI.list_changed_blocks, snap, snap)[0] == \
        "SR_BACKEND_FAILURE_460"
    xapi.xenapi.VDI.disable_cbt(leaf)
    xapi.xenapi.VDI.disable_cbt(leaf)
    assert xapi.xenapi.VDI.get_cbt_enabled(leaf) is False
    assert error_of(xapi.xenapi.VDI.list_changed_blocks, snap, leaf) == \
        ["VDI_NO_CBT_METADATA", leaf]


def test_data_destroy_keeps_the_log(pools, xapi):
    """§4: data_destroy only on CBT snapshots; the VDI becomes type cbt_metadata and still
    serves list_changed_blocks."""
    vm = scenario.create_vm(xapi, "cbt-dd", [2 * MiB])
    leaf = disk0(xapi, vm)
    assert error_of(xapi.xenapi.VDI.data_destroy, leaf) == \
        ["OPERATION_NOT_ALLOWED", "VDI is not a snapshot: %s" % leaf]
    plain_snap = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "before cbt"))
    assert error_of(xapi.xenapi.VDI.data_destroy, plain_snap) == \
        ["VDI_NO_CBT_METADATA", plain_snap]
    xapi.xenapi.VDI.enable_cbt(leaf)
    s1 = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "s1"))
    xapi.xenapi.VM.start(vm, False, False)
    write_blocks(pools[0], xapi, vm, [7])
    xapi.xenapi.VM.hard_shutdown(vm)
    s2 = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "s2"))
    xapi.xenapi.VDI.data_destroy(s1)
    assert xapi.xenapi.VDI.get_type(s1) == "cbt_metadata"
    assert changed(xapi, s1, s2)[0] == {7}


def test_revert_branch_keeps_tracking(pools, xapi):
    """§4 with §2.3: after a revert the new leaf (a clone of the snapshot) logs its changes
    relative to that snapshot, so list_changed_blocks(snapshot, next snapshot) works."""
    vm = scenario.create_vm(xapi, "cbt-revert", [2 * MiB])
    xapi.xenapi.VDI.enable_cbt(disk0(xapi, vm))
    base_vm = xapi.xenapi.VM.snapshot(vm, "base")
    base = disk0(xapi, base_vm)
    xapi.xenapi.VM.start(vm, False, False)
    write_blocks(pools[0], xapi, vm, [1])
    abandoned = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "abandoned"))
    xapi.xenapi.VM.revert(base_vm)
    assert xapi.xenapi.VDI.get_cbt_enabled(disk0(xapi, vm)) is True
    xapi.xenapi.VM.start(vm, False, False)
    write_blocks(pools[0], xapi, vm, [2])
    xapi.xenapi.VM.hard_shutdown(vm)
    branch = disk0(xapi, xapi.xenapi.VM.snapshot(vm, "branch"))
    assert changed(xapi, base, branch)[0] == {2}
    assert changed(xapi, base, abandoned)[0] == {1}

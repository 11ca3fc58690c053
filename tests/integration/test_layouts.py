"""Issue 12: layouts others refuse, carried whole. A disk that exists only in snapshots (the
VM lost it since, its VDI destroyed: the snapshots' snapshot_of dangles) arrives with its
snapshots and nothing loose; a re-run changes nothing."""

import uuid

import pytest

from xapisim import client, scenario

from checks import assert_migrated, assert_nothing_left_behind, inventory

MiB = 1 << 20


def test_a_disk_only_in_snapshots(pools, connect, migrate):
    src, dst = connect(0), connect(1)
    vm, snaps = scenario.build_tree(pools[0], src, "layout-%s" % uuid.uuid4().hex[:6], [4 * MiB],
                                    [("write", "a"), ("add_disk", 2 * MiB), ("write", "b"), ("snap", "s1"),
                                     ("write", "c"), ("snap", "s2"), ("write", "d")])
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    for vbd in src.xenapi.VM.get_VBDs(vm):
        if src.xenapi.VBD.get_userdevice(vbd) == "1":
            vdi = src.xenapi.VBD.get_VDI(vbd)
            src.xenapi.VBD.destroy(vbd)
            src.xenapi.VDI.destroy(vdi)
    dangling = src.xenapi.VDI.get_snapshot_of(scenario.disks(src, snaps["s1"])["1"])
    assert dangling not in src.xenapi.VDI.get_all()
    before = inventory(dst)
    stats, result = migrate(vm_uuid)
    assert stats["failed"] == 0
    assert_migrated(src, dst, vm_uuid)
    assert_nothing_left_behind(dst, vm_uuid, before)
    d_vm = dst.xenapi.VM.get_by_uuid(vm_uuid)
    assert "1" not in scenario.disks(dst, d_vm)
    for snap in dst.xenapi.VM.get_snapshots(d_vm):
        copy = scenario.disks(dst, snap)["1"]
        assert dst.xenapi.VDI.get_snapshot_of(copy) not in dst.xenapi.VDI.get_all(), \
            "as on the source, the snapshots of the lost disk are snapshots of nothing"
    stats, dummy = migrate(vm_uuid)
    assert stats["changed"] == 0 and inventory(dst)[1] - before[1] == \
        {dst.xenapi.VDI.get_uuid(v) for node in [d_vm] + dst.xenapi.VM.get_snapshots(d_vm)
         for v in scenario.disks(dst, node).values()}


def loose_copies(dst, result):
    """{source VDI uuid: destination VDI ref} of what the mirror carried, from the report."""
    return {s: dst.xenapi.VDI.get_by_uuid(d) for disk in result["disks"] for s, d in disk["pairs"].items()}


@pytest.mark.parametrize("destination", ["Local storage", "Local storage (SMAPIv3)"])
def test_loose_vdi_snapshots_dangling_links_and_metadata_only(pools, connect, migrate, tmp_path, destination):
    """VDI snapshots no VM snapshot holds — of the VM's disk, and of a disk removed since
    (their snapshot_of dangles) — arrive as VDI snapshots of the destination's disk, bytes
    equal; a metadata-only one (CBT, data destroyed) is not carried; the report names each;
    nothing is loose on the destination; destroy removes them all on the source. On an SMAPIv3
    destination the dangling links are the backend's, and a warning says so."""
    src, dst = connect(0), connect(1)
    vm, snaps = scenario.build_tree(pools[0], src, "loose-%s" % uuid.uuid4().hex[:6], [4 * MiB],
                                    [("cbt", 0), ("write", "a"), ("add_disk", 2 * MiB), ("write", "b"),
                                     ("snap", "s1"), ("write", "c")])
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    disk = scenario.disks(src, vm)
    loose_of_disk = src.xenapi.VDI.snapshot(disk["0"], {})
    metadata_only = src.xenapi.VDI.snapshot(disk["0"], {})
    src.xenapi.VDI.data_destroy(metadata_only)
    scenario.write_disk(pools[0], src, disk["1"], [(0, scenario.pattern("after-s1", 64 * 1024))])
    loose_of_removed = src.xenapi.VDI.snapshot(disk["1"], {})
    for vbd in src.xenapi.VM.get_VBDs(vm):
        if src.xenapi.VBD.get_userdevice(vbd) == "1":
            src.xenapi.VBD.destroy(vbd)
    src.xenapi.VDI.destroy(disk["1"])
    scenario.write_disk(pools[0], src, disk["0"], [(64 * 1024, scenario.pattern("leaf", 64 * 1024))])
    before = inventory(dst)

    dst_sr = dst.xenapi.SR.get_uuid(dst.xenapi.SR.get_by_name_label(destination)[0])
    stats, result = migrate(vm_uuid, sxm_default_sr=dst_sr)
    assert stats["failed"] == 0
    assert_migrated(src, dst, vm_uuid)
    smapiv3 = [w for w in result["warnings"] if "SMAPIv3 SR" in w]
    assert len(smapiv3) == (1 if "SMAPIv3" in destination else 0), result["warnings"]
    copies = loose_copies(dst, result)
    d_leaf = scenario.disks(dst, dst.xenapi.VM.get_by_uuid(vm_uuid))["0"]
    for source, linked in ((loose_of_disk, True), (loose_of_removed, False)):
        copy = copies[src.xenapi.VDI.get_uuid(source)]
        assert client.nbd_digest(dst, copy) == client.nbd_digest(src, source)
        assert dst.xenapi.VDI.get_is_a_snapshot(copy) is True
        assert dst.xenapi.VDI.get_VBDs(copy) == []
        if linked:
            assert dst.xenapi.VDI.get_snapshot_of(copy) == d_leaf
        else:
            assert dst.xenapi.VDI.get_snapshot_of(copy) not in dst.xenapi.VDI.get_all()
    assert src.xenapi.VDI.get_uuid(metadata_only) not in copies
    carried = {dst.xenapi.VDI.get_uuid(copies[src.xenapi.VDI.get_uuid(v)]) for v in (loose_of_disk, loose_of_removed)}
    held = {dst.xenapi.VDI.get_uuid(v) for node in [dst.xenapi.VM.get_by_uuid(vm_uuid)] +
            dst.xenapi.VM.get_snapshots(dst.xenapi.VM.get_by_uuid(vm_uuid))
            for v in scenario.disks(dst, node).values()}
    assert inventory(dst)[1] - before[1] == held | carried, "nothing loose but the loose snapshots themselves"
    kinds = sorted(row["layout"] for row in result["plan"]["layouts"])
    assert kinds == ["CBT metadata only", "VDI snapshot without a VM snapshot", "VDI snapshot without a VM snapshot",
                     "disk only in snapshots", "snapshot_of dangles"], kinds
    text = (tmp_path / "reports" / ("sxm-%s.md" % vm_uuid)).read_text()
    assert "## Layouts carried" in text and "CBT metadata only" in text and "not carried" in text

    stats, result = migrate(vm_uuid, sxm_source_disposition="destroy", sxm_default_sr=dst_sr)
    assert stats["failed"] == 0
    left = src.xenapi.VDI.get_all()
    assert not {loose_of_disk, loose_of_removed, metadata_only} & set(left), "destroy removes the loose snapshots too"
    assert inventory(dst)[1] - before[1] == held | carried


def test_snapshot_with_only_cbt_metadata_is_refused(pools, connect, migrate):
    src, dst = connect(0), connect(1)
    vm, snaps = scenario.build_tree(pools[0], src, "cbtmeta-%s" % uuid.uuid4().hex[:6], [4 * MiB],
                                    [("cbt", 0), ("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2")])
    src.xenapi.VDI.data_destroy(scenario.disks(src, snaps["s1"])["0"])
    before = inventory(src), inventory(dst)
    stats, output = migrate(src.xenapi.VM.get_uuid(vm), expect_failure=True)
    assert "SXM_PREFLIGHT" in output and "only CBT metadata" in output and "s1 (disk 0)" in output, output[-3000:]
    assert "delete those snapshots" in output
    assert (inventory(src), inventory(dst)) == before

"""Issue 12: layouts others refuse, carried whole. A disk that exists only in snapshots (the
VM lost it since, its VDI destroyed: the snapshots' snapshot_of dangles) arrives with its
snapshots and nothing loose; a re-run changes nothing."""

import uuid

from xapisim import scenario

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

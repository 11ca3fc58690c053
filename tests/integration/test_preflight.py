"""Issue 12: preflight refusals come before any byte moves, say what to do, and change neither
pool."""

import uuid

from xapisim import scenario

from checks import assert_migrated, inventory

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"),
        ("write", "c"), ("snap", "s3"), ("write", "d")]


def tree_physical(x, vm):
    """The documented estimate: what the tree's VDIs occupy on the source."""
    owners = [vm] + x.xenapi.VM.get_snapshots(vm)
    return sum(int(x.xenapi.VDI.get_physical_utilisation(vdi))
               for owner in owners for vdi in scenario.disks(x, owner).values())


def default_sr_of(x):
    return x.xenapi.pool.get_default_SR(x.xenapi.pool.get_all()[0])


def sr_used(x, sr):
    x.xenapi.SR.scan(sr)  # fresh usage figures
    return int(x.xenapi.SR.get_physical_utilisation(sr))


def test_destination_sr_space_is_checked_before_the_copy(pools, connect, migrate):
    """Below the documented estimate: refused before anything moves. At the real need (what
    the same tree took on the destination when migrated with space to spare): accepted."""
    src, dst = connect(0), connect(1)
    sr = default_sr_of(dst)
    first, _ = scenario.build_tree(pools[0], src, "space-a-%s" % uuid.uuid4().hex[:6], [8 * MiB, 4 * MiB], TREE)
    used = sr_used(dst, sr)
    migrate(src.xenapi.VM.get_uuid(first))
    real_need = sr_used(dst, sr) - used

    vm, _ = scenario.build_tree(pools[0], src, "space-b-%s" % uuid.uuid4().hex[:6], [8 * MiB, 4 * MiB], TREE)
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    estimate = tree_physical(src, vm)
    assert 0 < estimate <= real_need
    size = dst.xenapi.SR.get_physical_size(sr)
    used = sr_used(dst, sr)
    before = inventory(src), inventory(dst)
    try:
        dst.xenapi.SR.set_physical_size(sr, str(used + estimate - 1))
        stats, output = migrate(vm_uuid, expect_failure=True)
        assert "SXM_PREFLIGHT" in output and "need about" in output and "sr_map" in output, output[-3000:]
        assert (inventory(src), inventory(dst)) == before
        dst.xenapi.SR.set_physical_size(sr, str(used + real_need))
        stats, result = migrate(vm_uuid)
        assert stats["failed"] == 0
        assert_migrated(src, dst, vm_uuid)
    finally:
        dst.xenapi.SR.set_physical_size(sr, size)


def test_pci_passthrough_is_refused_or_left_behind_as_chosen(pools, connect, migrate):
    src, dst = connect(0), connect(1)
    vm, _ = scenario.build_tree(pools[0], src, "pci-%s" % uuid.uuid4().hex[:6], [4 * MiB],
                                [("write", "a"), ("snap", "s1"), ("write", "b")])
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    src.xenapi.VM.add_to_other_config(vm, "pci", "0/0000:03:00.0")
    before = inventory(src), inventory(dst)
    stats, output = migrate(vm_uuid, expect_failure=True)
    assert "SXM_PREFLIGHT" in output and "PCI passthrough 0/0000:03:00.0" in output, output[-3000:]
    assert "unmovable_devices" in output
    assert (inventory(src), inventory(dst)) == before
    stats, result = migrate(vm_uuid, sxm_unmovable_devices="warn")
    assert stats["failed"] == 0
    assert any("PCI passthrough 0/0000:03:00.0" in w and "assign them again" in w
               for w in result["warnings"]), result["warnings"]
    assert_migrated(src, dst, vm_uuid)
    assert "pci" not in dst.xenapi.VM.get_other_config(dst.xenapi.VM.get_by_uuid(vm_uuid))
    assert src.xenapi.VM.get_other_config(vm)["pci"] == "0/0000:03:00.0"


def test_no_nbd_network_is_found_before_anything_is_made(pools, connect, migrate):
    src, dst = connect(0), connect(1)
    vm, _ = scenario.build_tree(pools[0], src, "nbd-%s" % uuid.uuid4().hex[:6], [4 * MiB],
                                [("write", "a"), ("snap", "s1"), ("write", "b")])
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    network = scenario.nbd_network(src)
    purposes = src.xenapi.network.get_purpose(network)
    before = inventory(src), inventory(dst)
    try:
        for purpose in purposes:
            src.xenapi.network.remove_purpose(network, purpose)
        stats, output = migrate(vm_uuid, expect_failure=True)
        assert "SXM_PREFLIGHT" in output and "no NBD export" in output and "purpose 'nbd'" in output, output[-3000:]
        assert (inventory(src), inventory(dst)) == before
    finally:
        for purpose in purposes:
            src.xenapi.network.add_purpose(network, purpose)
    stats, result = migrate(vm_uuid)
    assert_migrated(src, dst, vm_uuid)


def test_an_account_without_the_rights_is_refused_before_anything_moves(pools, connect, migrate):
    """vm-admin may not add to the pool's other_config (the job's lock): refused, naming the
    permission and the roles that suffice; neither pool changed."""
    src, dst = connect(0), connect(1)
    vm, _ = scenario.build_tree(pools[0], src, "rights-%s" % uuid.uuid4().hex[:6], [2 * MiB], TREE[:2])
    before = inventory(src), inventory(dst)
    stats, output = migrate(src.xenapi.VM.get_uuid(vm), user="vm-admin", expect_failure=True)
    assert "SXM_PREFLIGHT" in output and "'vm-admin' on the destination pool" in output, output[-3000:]
    assert "pool.add_to_other_config" in output and "pool-operator" in output
    assert (inventory(src), inventory(dst)) == before

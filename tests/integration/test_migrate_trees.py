"""Issue 3: a halted VM with its whole snapshot tree migrated by playbooks/migrate_vm.yml, each
tree run twice (the second run reports no change), checked as a user would check it."""

import uuid

import pytest

from xapisim import scenario

from checks import assert_migrated, assert_nothing_left_behind, independent_walk_minimum, inventory

MiB = 1 << 20
CHAIN_OF_5 = [("write", "w0")] + [s for i in range(1, 6) for s in (("snap", "s%d" % i), ("write", "w%d" % i))]
NESTED = [
    ("write", "a"), ("snap", "root"), ("write", "b"), ("snap", "b1"),
    ("revert", "root"), ("write", "c"), ("snap", "c1"), ("write", "d"), ("snap", "c2"),
    ("revert", "c1"), ("write", "e"), ("snap", "e1"),
    ("revert", "root"), ("write", "f"), ("zero", "f0"), ("snap", "f1"), ("write", "g"),
]


def name(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:6])


def migrate_twice(migrate, connect, vm, **role_vars):
    """Run the playbook twice; returns the first run's sxm_result after checking the second
    changed nothing and both pools look as they should."""
    src, dst = connect(0), connect(1)
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    before_src, before_dst = inventory(src), inventory(dst)
    stats, result = migrate(vm_uuid, **role_vars)
    assert stats["failed"] == 0 and stats["changed"] >= 1
    time_differs = assert_migrated(src, dst, vm_uuid)
    assert result["walk_minimum_bytes"] == independent_walk_minimum(src, result)
    reported = {row["vdi_uuid"] for row in result["snapshot_time_not_kept"]}
    assert set(time_differs) == reported
    assert_nothing_left_behind(dst, vm_uuid, before_dst)
    assert inventory(src) == before_src, "the source changed"
    stats2, result2 = migrate(vm_uuid, **role_vars)
    assert stats2["changed"] == 0, "the second run changed something"
    assert result2["destination_vm_uuid"] == vm_uuid
    assert_nothing_left_behind(dst, vm_uuid, before_dst)
    return result


def test_one_snapshot(pools, connect, migrate, amplification):
    x = connect(0)
    vm, _ = scenario.build_tree(pools[0], x, name("one"), [8 * MiB],
                                [("write", "a"), ("snap", "s1"), ("write", "b")])
    result = migrate_twice(migrate, connect, vm)
    amplification(result, "one snapshot")


def test_linear_chain_of_five(pools, connect, migrate, amplification):
    x = connect(0)
    vm, _ = scenario.build_tree(pools[0], x, name("chain"), [8 * MiB], CHAIN_OF_5)
    result = migrate_twice(migrate, connect, vm)
    amplification(result, "linear chain of 5")
    assert len(result["source_tree"]["nodes"]) == 6


def test_nested_branches_after_several_reverts(pools, connect, migrate, amplification):
    x = connect(0)
    vm, _ = scenario.build_tree(pools[0], x, name("nested"), [8 * MiB], NESTED)
    result = migrate_twice(migrate, connect, vm)
    amplification(result, "nested branches, 3 reverts")
    assert result["edge_minimum_bytes"] <= result["walk_minimum_bytes"]


def test_three_disks_one_added_later_and_a_cd_drive(pools, connect, migrate, amplification):
    x = connect(0)
    steps = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"),
             ("add_disk", 2 * MiB), ("write", "c"), ("snap", "s3"), ("write", "d")]
    vm, _ = scenario.build_tree(pools[0], x, name("disks"), [8 * MiB, 4 * MiB], steps, cd=True)
    result = migrate_twice(migrate, connect, vm)
    amplification(result, "3 disks, one added later, CD")
    assert sorted(d["userdevice"] for d in result["disks"]) == ["0", "1", "3"]


def test_cbt_on_one_disk_and_not_the_other(pools, connect, migrate, amplification):
    x = connect(0)
    steps = [("cbt", 0), ("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"),
             ("revert", "s1"), ("write", "c"), ("snap", "s3"), ("write", "d")]
    vm, _ = scenario.build_tree(pools[0], x, name("cbt"), [8 * MiB, 8 * MiB], steps)
    result = migrate_twice(migrate, connect, vm)
    amplification(result, "CBT on disk 0 only")
    by_device = {d["userdevice"]: d for d in result["disks"]}
    assert by_device["0"]["bytes_read"] < by_device["1"]["bytes_read"], \
        "CBT did not reduce what was read"


@pytest.mark.parametrize("flavour", ["smapiv1", "smapiv3"])
def test_both_sr_flavours(pools, connect, migrate, flavour, amplification):
    x, y = connect(0), connect(1)
    label = "Local storage" if flavour == "smapiv1" else "Local storage (SMAPIv3)"
    src_sr = x.xenapi.SR.get_by_name_label(label)[0]
    dst_sr = y.xenapi.SR.get_by_name_label(label)[0]
    vm, _ = scenario.build_tree(pools[0], x, name(flavour), [8 * MiB], NESTED[:10], sr=src_sr)
    result = migrate_twice(migrate, connect, vm, sxm_default_sr=y.xenapi.SR.get_uuid(dst_sr))
    amplification(result, "SR flavour %s" % flavour)


def test_pool_admin_sessions(pools, connect, migrate, amplification):
    """A non-root pool-admin may do everything but restore VDI snapshot times, which the
    result reports per VDI (checked in migrate_twice against the pool itself)."""
    x = connect(0)
    vm, _ = scenario.build_tree(pools[0], x, name("admin"), [8 * MiB], NESTED[:6])
    result = migrate_twice(migrate, connect, vm, user="pool-admin")
    amplification(result, "pool-admin sessions")
    assert result["snapshot_time_not_kept"], "a pool-admin cannot set snapshot_time: it must be reported"

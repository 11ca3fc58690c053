"""verify.py and cutover.py: the records fingerprint follows exactly the names, links and disk
identities of a tree; trees are compared node by node; and after a real migration between
simulated pools the cut-over refuses a source whose snapshots were renamed, and ``destroy``
refuses (and keeps) a source whose halted disk was written since the verification."""

import uuid

import pytest
from integration.checks import assert_migrated
from xapisim import client, scenario

from ansible_collections.xapi.sxm.plugins.module_utils import cleanup, cutover, migrate, tree as treemod
from ansible_collections.xapi.sxm.plugins.module_utils import verify as verification
from ansible_collections.xapi.sxm.plugins.module_utils.errors import StateError
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection

MiB = 1 << 20


def small_tree():
    """base -> VM, each with disk 0, built from records as tree.discover would."""
    def node(ref, uuid_, parent, is_vm):
        return treemod.Node(ref, {"uuid": uuid_, "name_label": uuid_, "name_description": "", "parent": parent,
                                  "snapshot_time": "20260101T00:00:00Z", "power_state": "Halted"}, is_vm)
    base, vm = node("R:base", "base", "OpaqueRef:NULL", False), node("R:vm", "vm", "R:base", True)
    vm.parent, base.children = base, [vm]
    for n in (base, vm):
        n.disks["0"] = treemod.Disk("0", "D:" + n.uuid, {"uuid": "vdi-" + n.uuid, "name_label": "d",
                                                         "virtual_size": "1048576", "SR": "S"})
    return treemod.Tree(vm, {"R:base": base, "R:vm": vm})


def test_records_fingerprint_ignores_what_it_does_not_cover():
    before = verification.records_fingerprint(small_tree())
    assert verification.records_fingerprint(small_tree()) == before
    t = small_tree()
    t.nodes["R:base"].disks["0"].physical_utilisation = 999
    t.nodes["R:base"].disks["0"].cbt_enabled = True
    t.nodes["R:base"].active = True
    t.nodes = dict(reversed(list(t.nodes.items())))
    assert verification.records_fingerprint(t) == before


@pytest.mark.parametrize("change", [
    lambda t: setattr(t.nodes["R:base"], "name_label", "renamed"),
    lambda t: setattr(t.nodes["R:base"], "name_description", "described"),
    lambda t: setattr(t.nodes["R:base"], "snapshot_time", "20270101T00:00:00Z"),
    lambda t: setattr(t.vm, "parent", None),
    lambda t: setattr(t.vm.disks["0"], "uuid", "vdi-other"),
    lambda t: setattr(t.vm.disks["0"], "virtual_size", 2097152),
], ids=["name", "description", "time", "parent", "disk uuid", "disk size"])
def test_records_fingerprint_changes_with_every_record_it_covers(change):
    t = small_tree()
    change(t)
    assert verification.records_fingerprint(t) != verification.records_fingerprint(small_tree())


def test_parse_fingerprint_round_trip():
    t = small_tree()
    text = verification.fingerprint(t, {"0": "abc"})
    assert verification.parse_fingerprint(text) == (verification.records_fingerprint(t),
                                                    verification.content_fingerprint({"0": "abc"}))
    assert verification.parse_fingerprint(None) == (None, None)


def test_compare_trees():
    assert verification.compare_trees(small_tree(), small_tree()) == []
    lacking = small_tree()
    del lacking.nodes["R:base"]
    problems = verification.compare_trees(small_tree(), lacking)
    assert "base is missing on the destination" in problems
    assert "the destination has 1 nodes, the source 2" in problems


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


@pytest.fixture
def migrated(pools):
    """A small tree migrated from pool 0 to pool 1 (source kept): (src, dst, x, vm, snaps)."""
    src, dst, x, y = connection(pools[0]), connection(pools[1]), client.login(pools[0]), client.login(pools[1])
    vm, snaps = scenario.build_tree(pools[0], x, "cut-%s" % uuid.uuid4().hex[:6], [2 * MiB],
                                    [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"),
                                     ("revert", "s1"), ("write", "c")])
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    result = migrate.migrate(src, dst, migrate.Options(vm_uuid))
    assert result["changed"] and result["message"] == "migrated"
    assert_migrated(x, y, vm_uuid)
    yield src, dst, x, vm, snaps
    cleanup.cleanup(dst, vm_uuid)
    assert cleanup.job_objects(dst, vm_uuid) == (None, None, {})
    for owner in (x.xenapi.VM.get_snapshots(vm) + [vm]) if vm in x.xenapi.VM.get_all() else []:
        vdis = scenario.disks(x, owner).values()
        x.xenapi.VM.destroy(owner)
        for vdi in vdis:
            x.xenapi.VDI.destroy(vdi)
    for session in (x, y):
        session.xenapi.session.logout()
    src.logout()
    dst.logout()


def plan_of(src, dst, x, vm):
    return migrate.make_plan(src, dst, migrate.Options(x.xenapi.VM.get_uuid(vm)))


def test_a_renamed_source_snapshot_is_refused_at_cutover(migrated):
    src, dst, x, vm, snaps = migrated
    ref, rec = cutover.verified_destination(dst, plan_of(src, dst, x, vm))
    assert rec["other_config"]["sxm:state"] == "complete" and rec["uuid"] == x.xenapi.VM.get_uuid(vm)
    x.xenapi.VM.set_name_label(snaps["s2"], "s2 renamed")
    with pytest.raises(StateError, match="changed since the destination was verified"):
        cutover.verified_destination(dst, plan_of(src, dst, x, vm))
    x.xenapi.VM.set_name_label(snaps["s2"], "s2")
    cutover.verified_destination(dst, plan_of(src, dst, x, vm))


def test_destroy_refuses_a_source_disk_written_since_verification(pools, migrated):
    src, dst, x, vm, snaps = migrated
    scenario.write_disk(pools[0], x, scenario.disks(x, vm)["0"], [(0, b"written after verify" * 100)])
    the_plan = plan_of(src, dst, x, vm)
    dst_ref, dst_rec = cutover.verified_destination(dst, the_plan)   # the records did not change
    with pytest.raises(StateError, match="written since the destination was verified"):
        cutover.apply_disposition(src, dst, the_plan, dst_rec, "destroy", False)
    assert x.xenapi.VM.get_by_uuid(the_plan["job"]) == vm
    assert sorted(x.xenapi.VM.get_snapshots(vm)) == sorted(snaps.values())
    assert "0" in scenario.disks(x, vm)

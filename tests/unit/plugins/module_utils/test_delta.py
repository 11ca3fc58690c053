"""Delta sources (delta.py): CBT, VHD allocation maps and content comparison choose what is
read, never what is written: each gives the same destination bytes, and reads less."""

import uuid

import pytest
from xapisim import client, scenario

from ansible_collections.xapi.sxm.plugins.module_utils import cleanup, datapath, delta, mirror
from ansible_collections.xapi.sxm.plugins.module_utils import plan as planning
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection

MiB = 1 << 20
TREE = [("cbt", "0"), ("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"),
        ("write", "c"), ("snap", "s3"), ("write", "d"), ("zero", "z"), ("snap", "s4"), ("write", "e")]


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


@pytest.fixture(scope="module")
def tree(pools):
    src, dst = connection(pools[0]), connection(pools[1])
    x, y = client.login(pools[0]), client.login(pools[1])
    vm, snaps = scenario.build_tree(pools[0], x, "delta-%s" % uuid.uuid4().hex[:6], [32 * MiB], TREE)
    the_plan = planning.make_plan(src, dst, planning.Options(x.xenapi.VM.get_uuid(vm)))
    yield src, dst, x, y, vm, the_plan
    for owner in x.xenapi.VM.get_snapshots(vm) + [vm]:
        vdis = scenario.disks(x, owner).values()
        x.xenapi.VM.destroy(owner)
        for vdi in vdis:
            x.xenapi.VDI.destroy(vdi)
    for conn in (src, dst):
        conn.logout()


def mirror_with(tree, use_cbt, use_vhd_maps):
    src, dst, x, y, vm, the_plan = tree
    disk = the_plan["disks"][0]
    result = mirror.DiskMirror(src, dst, the_plan["tree"], "0", disk["destination_sr_ref"], the_plan["job"],
                               tls=the_plan["tls"], dst_tls=planning.nbd_uses_tls(dst), use_cbt=use_cbt,
                               use_vhd_maps=use_vhd_maps).run()
    contents = {}
    for source_uuid, dst_uuid in result.pairs.items():
        contents[source_uuid] = (client.nbd_block_digests(x, x.xenapi.VDI.get_by_uuid(source_uuid)),
                                 client.nbd_block_digests(y, y.xenapi.VDI.get_by_uuid(dst_uuid)))
    cleanup.cleanup(dst, the_plan["job"])
    return result, contents


def test_every_delta_source_gives_the_same_destination_bytes(tree):
    runs = {name: mirror_with(tree, cbt, vhd) for name, cbt, vhd in
            (("cbt", True, True), ("vhd", False, True), ("content", False, False))}
    for name, (result, contents) in runs.items():
        assert len(contents) == 5, name            # 4 snapshots and the leaf
        for source_uuid, (source, destination) in contents.items():
            assert source == destination, (name, source_uuid)
    cbt, vhd, content = (runs[n][0] for n in ("cbt", "vhd", "content"))
    assert cbt.delta_sources == {"vhd": 1, "cbt": 4}
    assert vhd.delta_sources == {"vhd": 5}
    assert content.delta_sources == {"content": 5}
    assert cbt.bytes_written == vhd.bytes_written == content.bytes_written
    # a VHD map reads whole 2 MiB blocks, CBT 64 KiB ones; content reads every node whole
    assert cbt.bytes_read < vhd.bytes_read < content.bytes_read
    assert content.bytes_read == 5 * 32 * MiB


def test_a_vhd_map_is_refused_on_smapiv3_and_the_ladder_goes_on(pools):
    src, x = connection(pools[0]), client.login(pools[0])
    sr = [ref for ref, rec in x.xenapi.SR.get_all_records().items() if rec["type"] == "file-v3"][0]
    vm, snaps = scenario.build_tree(pools[0], x, "delta-v3", [8 * MiB], [("write", "a"), ("snap", "s1")], sr=sr)
    snap_vdi = scenario.disks(x, snaps["s1"])["0"]
    leaf = scenario.disks(x, vm)["0"]
    before = set(x.xenapi.task.get_all())
    with pytest.raises(delta.NoAllocationMap):
        delta.vhd_allocation(src, leaf, snap_vdi, 128)
    whole = delta.vhd_allocation(src, leaf, None, 128)      # without a base: the data blocks
    assert list(whole.runs()) and set(x.xenapi.task.get_all()) == before
    for owner in (snaps["s1"], vm):
        vdis = scenario.disks(x, owner).values()
        x.xenapi.VM.destroy(owner)
        for vdi in vdis:
            x.xenapi.VDI.destroy(vdi)
    src.logout()


def test_a_killed_runs_pending_handler_tasks_are_removed_by_the_next_run(tree):
    """A run killed between task.create and its request leaves the task pending, which XAPI
    keeps for 24 h (db_gc_util.ml): the next run of the job removes this disk's, and only
    those."""
    src, dst, x, y, vm, the_plan = tree
    disk = the_plan["disks"][0]

    def run():
        return mirror.DiskMirror(src, dst, the_plan["tree"], "0", disk["destination_sr_ref"], the_plan["job"],
                                 tls=the_plan["tls"], dst_tls=planning.nbd_uses_tls(dst)).run()
    stale_map = x.xenapi.task.create(delta.ALLOCATION_MAP_TASK, delta.allocation_map_description(the_plan["job"], "0"))
    other_job = x.xenapi.task.create(delta.ALLOCATION_MAP_TASK, delta.allocation_map_description("another", "0"))
    working_uuid = run().working_uuid
    stale_import = y.xenapi.task.create(datapath.IMPORT_TASK, datapath.import_description(working_uuid))
    run()
    try:
        assert stale_map not in x.xenapi.task.get_all() and stale_import not in y.xenapi.task.get_all()
        assert x.xenapi.task.get_status(other_job) == "pending"
        records = list(x.xenapi.task.get_all_records().values()) + list(y.xenapi.task.get_all_records().values())
        pending = [r for r in records if r["status"] == "pending" and r["name_label"].startswith("xapi.sxm")]
        assert pending == [x.xenapi.task.get_record(other_job)]
    finally:
        x.xenapi.task.destroy(other_job)
        cleanup.cleanup(dst, the_plan["job"])

"""Many clients at once without corrupting state; state persisted under --state-dir
(issue 2, 'xapisim')."""

import json
import os
import threading

from xapisim import client, scenario

from xapisim.testing import xapisim

MiB = 1 << 20


def assert_relations_consistent(x):
    """Fact 6: the derived sides of every relation agree with the forward pointers."""
    vms = x.xenapi.VM.get_all_records()
    vdis = x.xenapi.VDI.get_all_records()
    vbds = x.xenapi.VBD.get_all_records()
    for ref, vm in vms.items():
        assert sorted(vm["snapshots"]) == sorted(r for r, v in vms.items() if v["snapshot_of"] == ref)
        assert sorted(vm["children"]) == sorted(r for r, v in vms.items() if v["parent"] == ref)
        assert sorted(vm["VBDs"]) == sorted(r for r, v in vbds.items() if v["VM"] == ref)
    for ref, vdi in vdis.items():
        assert sorted(vdi["snapshots"]) == sorted(r for r, v in vdis.items() if v["snapshot_of"] == ref)
        assert sorted(vdi["VBDs"]) == sorted(r for r, v in vbds.items() if v["VDI"] == ref)


def test_many_clients_at_once(pools, connect):
    """Eight clients build, snapshot, revert and destroy at the same time; every call
    succeeds and the relations stay consistent."""
    errors = []
    sessions = [connect(0) for _ in range(8)]

    def work(i, x):
        try:
            vm = scenario.create_vm(x, "concurrent-%d" % i, [2 * MiB])
            s1 = x.xenapi.VM.snapshot(vm, "s1")
            x.xenapi.VM.snapshot(vm, "s2")
            x.xenapi.VM.revert(s1)
            s3 = x.xenapi.VM.snapshot(vm, "s3")
            if i % 2:
                x.xenapi.VM.destroy(s3)
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=work, args=(i, x)) for i, x in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    x = sessions[0]
    for i in range(8):
        vm = x.xenapi.VM.get_by_name_label("concurrent-%d" % i)
        vm = [r for r in vm if not x.xenapi.VM.get_is_a_snapshot(r)][0]
        names = sorted(x.xenapi.VM.get_name_label(s) for s in x.xenapi.VM.get_snapshots(vm))
        assert names == (["s1", "s2"] if i % 2 else ["s1", "s2", "s3"])
    assert_relations_consistent(x)


def test_state_survives_down_and_up(tmp_path):
    """The database, the disks and the accounts persist under --state-dir."""
    state = str(tmp_path / "persist")
    xapisim("up", "--state-dir", state, "--pools", "1")
    try:
        with open(os.path.join(state, "pools.json")) as f:
            pool = json.load(f)["pools"][0]
        x = client.login(pool)
        vm, snaps = scenario.build_tree(pool, x, "persistent", [4 * MiB],
                                        [("write", "a"), ("snap", "s1"), ("write", "b")])
        vm_uuid = x.xenapi.VM.get_uuid(vm)
        disk = scenario.disks(x, vm)["0"]
        before = client.nbd_digest(x, disk)
        snap_uuid = x.xenapi.VM.get_uuid(snaps["s1"])
        x.xenapi.session.logout()
    finally:
        xapisim("down", "--state-dir", state)
    xapisim("up", "--state-dir", state, "--pools", "1")
    try:
        with open(os.path.join(state, "pools.json")) as f:
            pool = json.load(f)["pools"][0]
        x = client.login(pool)
        vm = x.xenapi.VM.get_by_uuid(vm_uuid)
        assert x.xenapi.VM.get_parent(vm) == x.xenapi.VM.get_by_uuid(snap_uuid)
        assert client.nbd_digest(x, scenario.disks(x, vm)["0"]) == before
        x.xenapi.session.logout()
    finally:
        xapisim("down", "--state-dir", state)

"""Warm migration: a running VM moves with its whole tree while its guest writes; it stops only
for the last delta, and every record the guest wrote before it stopped is on the destination.
A guest that will not shut down cleanly is hard-shut only when allowed; a failure inside the
downtime starts the source again and leaves the destination blocked for a re-run."""

import os
import sys
import time

import pytest
from xapisim import client, scenario
from xapisim.testing import guest_write, set_guest

from checks import assert_migrated, inventory
from guest import Guest
from harness import REPO

sys.path.insert(0, os.path.join(REPO, "build", "collections"))

from ansible_collections.xapi.sxm.plugins.module_utils import migrate as migration  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils import warm  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.errors import SxmError  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.markers import TRANSIENT  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection  # noqa: E402

MiB = 1 << 20
BLOCK = 64 << 10
TREE = [("cbt", 0), ("cbt", 1), ("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"),
        ("revert", "s1"), ("write", "c"), ("snap", "s3"), ("write", "d")]


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


def transients(x):
    return [r["uuid"] for r in x.xenapi.VDI.get_all_records().values() if TRANSIENT in r["other_config"]]


def running_vm(pools, x, name, sizes=(8 * MiB, 4 * MiB), tools=True, steps=TREE, sr=None):
    vm, dummy = scenario.build_tree(pools[0], x, name, list(sizes), steps, sr=sr)
    x.xenapi.VM.start(vm, False, False)
    set_guest(pools[0], x, vm, tools=tools, ack_timeout=1)
    return vm


def test_a_running_vm_moves_with_every_record_its_guest_wrote(pools, connect):
    x, y = connect(0), connect(1)
    sizes = (8 * MiB, 4 * MiB)
    vm = running_vm(pools, x, "warm-writes", sizes)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    before = inventory(y)
    guest = Guest(pools[0], x, vm, sizes)
    guest.start()
    src, dst = connection(pools[0]), connection(pools[1])
    try:
        time.sleep(0.5)
        result = migration.migrate(src, dst, migration.Options(vm_uuid))
    finally:
        guest.stopping.set()
        guest.join(30)
        src.logout()
        dst.logout()
    assert len(guest.acknowledged) > 20
    assert x.xenapi.VM.get_power_state(vm) == "Halted"
    dst_vm = y.xenapi.VM.get_by_uuid(vm_uuid)
    assert y.xenapi.VM.get_power_state(dst_vm) == "Running"
    # every record acknowledged before the stop is at its offset on the destination
    content = {device: b"".join(client.nbd_chunks(y, vdi)) for device, vdi in scenario.disks(y, dst_vm).items()}
    for device, offset, data in guest.acknowledged:
        assert content[device][offset:offset + len(data)] == data, (device, offset)
    # and nothing else changed: every disk of the tree, the leaves included, equals the source's
    assert_migrated(x, y, vm_uuid, scan=False)
    # CBT stays on at the source, and is on at the destination where the source had it
    for pool_session, owner in ((x, vm), (y, dst_vm)):
        assert all(pool_session.xenapi.VDI.get_cbt_enabled(v) for v in scenario.disks(pool_session, owner).values())
    plan = result["warm"]
    assert result["downtime_s"] == plan["downtime_s"] > 0 and plan["shutdown"] == "clean"
    assert 1 <= len(plan["passes"]) <= 5 and plan["cutover"] == "auto"
    assert all(p["bytes_written"] >= 0 and p["seconds"] > 0 for p in plan["passes"])
    assert result["plan"]["mode"] == "warm"
    assert transients(x) == []
    assert len(inventory(y)[0] - before[0]) == 1 + len(y.xenapi.VM.get_snapshots(dst_vm))


def test_a_guest_without_tools_is_hard_shut_only_when_allowed(pools, connect):
    x, y = connect(0), connect(1)
    vm = running_vm(pools, x, "warm-no-tools", tools=False)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    src, dst = connection(pools[0]), connection(pools[1])
    try:
        with pytest.raises(SxmError) as refused:
            migration.migrate(src, dst, migration.Options(vm_uuid, warm_settings=warm.Settings(shutdown_timeout=5)))
        assert "did not shut down cleanly" in str(refused.value) and "runs on" in str(refused.value)
        assert "hard_shutdown" in refused.value.advice
        assert x.xenapi.VM.get_power_state(vm) == "Running"
        assert transients(x) == []
        assert not y.xenapi.VM.get_all_records_where('field "uuid"="%s"' % vm_uuid)
        result = migration.migrate(src, dst, migration.Options(vm_uuid, warm_settings=warm.Settings(
            shutdown_timeout=5, hard_shutdown=True)))
        assert result["warm"]["shutdown"] == "hard"
        assert y.xenapi.VM.get_power_state(y.xenapi.VM.get_by_uuid(vm_uuid)) == "Running"
        assert_migrated(x, y, vm_uuid, scan=False)
        assert transients(x) == []
    finally:
        src.logout()
        dst.logout()


INJECTED = ["INTERNAL_ERROR", "injected"]


@pytest.mark.parametrize("fault", [
    {"kind": "import_fail"},                                                # the last delta's import
    {"kind": "call", "method": "network.get_all_records", "error": INJECTED},  # the metadata (its networks)
    {"kind": "call", "method": "VBD.get_all_records_where", "error": INJECTED},   # the trees compared
    {"kind": "call", "method": "VM.start", "error": INJECTED}],             # the destination's start
    ids=["final-delta", "metadata", "trees", "destination-start"])
def test_a_failure_inside_the_downtime_starts_the_source_again(pools, connect, monkeypatch, fault):
    x, y = connect(0), connect(1)
    vm = running_vm(pools, x, "warm-fault-%s" % fault.get("method", fault["kind"]))
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    shut_down, stopped = warm.shut_down, []

    def shut_down_then_fail(src, vm_ref, name, settings):
        guest_write(pools[0], x, vm, 0, MiB, b"the last write before the stop")   # a final delta
        how = shut_down(src, vm_ref, name, settings)
        stopped.append(time.monotonic())
        client.post_fault(pools[1], y, fault)      # what the downtime does next fails
        return how
    monkeypatch.setattr(warm, "shut_down", shut_down_then_fail)
    src, dst = connection(pools[0]), connection(pools[1])
    try:
        with pytest.raises(SxmError) as failed:
            migration.migrate(src, dst, migration.Options(vm_uuid))
        assert time.monotonic() - stopped[0] < 60
        assert "the source VM was started again" in str(failed.value)
        assert x.xenapi.VM.get_power_state(vm) == "Running"
        assert transients(x) == []
        for dst_vm in y.xenapi.VM.get_all_records_where('field "uuid"="%s"' % vm_uuid):
            assert "start" in y.xenapi.VM.get_blocked_operations(dst_vm)
            assert y.xenapi.VM.get_power_state(dst_vm) == "Halted"
        monkeypatch.setattr(warm, "shut_down", shut_down)
        client.post_fault(pools[1], y, {"kind": "clear"})
        migration.migrate(src, dst, migration.Options(vm_uuid))
        assert y.xenapi.VM.get_power_state(y.xenapi.VM.get_by_uuid(vm_uuid)) == "Running"
        assert_migrated(x, y, vm_uuid, scan=False)
        assert transients(x) == []
    finally:
        client.post_fault(pools[1], y, {"kind": "clear"})
        src.logout()
        dst.logout()


def test_the_role_moves_a_running_vm_and_a_rerun_has_nothing_to_do(pools, connect, migrate, tmp_path):
    """mode auto moves a running VM (it used to refuse it): with sxm_cutover manual the play
    ends converged, the VM running; the same playbook with now cuts over, and the report
    carries the downtime, the passes and the cut-over; a third run changes nothing."""
    x, y = connect(0), connect(1)
    vm = running_vm(pools, x, "warm-role")
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    stats, waiting = migrate(vm_uuid, sxm_cutover="manual")
    assert stats["failed"] == 0 and waiting["cutover_pending"] and "cutover now" in waiting["next_step"]
    assert x.xenapi.VM.get_power_state(vm) == "Running" and len(transients(x)) == 2
    guest = Guest(pools[0], x, vm, (8 * MiB, 4 * MiB))
    guest.start()
    try:
        stats, result = migrate(vm_uuid, sxm_cutover="now")
    finally:
        guest.stopping.set()
        guest.join(30)
    assert stats["failed"] == 0 and stats["changed"] > 0
    assert result["downtime_s"] > 0 and result["warm"]["passes"] and result["warm"]["cutover"] == "now"
    report = (tmp_path / "reports" / ("sxm-%s.md" % vm_uuid)).read_text()
    assert "## Warm migration" in report and "| pass |" in report
    assert y.xenapi.VM.get_power_state(y.xenapi.VM.get_by_uuid(vm_uuid)) == "Running"
    assert_migrated(x, y, vm_uuid, scan=False)
    assert transients(x) == []
    stats, again = migrate(vm_uuid)
    assert stats["failed"] == 0 and stats["changed"] == 0


def test_a_manual_cutover_waits_converged_until_a_run_with_now(pools, connect):
    """cutover manual: the VM runs on with its copy converged and one marked base per disk on
    the source; another manual run brings the copy up to date; a run with now cuts over."""
    x, y = connect(0), connect(1)
    vm = running_vm(pools, x, "warm-manual")
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    src, dst = connection(pools[0]), connection(pools[1])
    manual = migration.Options(vm_uuid, warm_settings=warm.Settings(cutover="manual"))
    try:
        for run in range(2):
            guest_write(pools[0], x, vm, 0, (run + 1) * MiB, b"written before manual run %d" % run)
            result = migration.migrate(src, dst, manual)
            assert result["cutover_pending"] is True and "cutover now" in result["next_step"]
            assert result["warm"]["waiting"] and result["warm"]["passes"]
            if run:
                # the next day: the guest's one new block is read, not the base it changed
                assert result["bytes_read"] <= 1.2 * BLOCK, result["warm"]["passes"]
            assert x.xenapi.VM.get_power_state(vm) == "Running"
            assert not y.xenapi.VM.get_all_records_where('field "uuid"="%s"' % vm_uuid)
            bases = transients(x)
            assert len(bases) == 2                    # one marked base per disk, no more
            # each working disk holds exactly its base's content
            for base in bases:
                base_ref = x.xenapi.VDI.get_by_uuid(base)
                working = [ref for ref, rec in y.xenapi.VDI.get_all_records().items()
                           if rec["other_config"].get("sxm:holds") == "transient:%s" % base]
                assert len(working) == 1 and client.nbd_digest(y, working[0]) == client.nbd_digest(x, base_ref)
        guest_write(pools[0], x, vm, 1, 0, b"written before the cut-over")
        result = migration.migrate(src, dst, migration.Options(vm_uuid, warm_settings=warm.Settings(cutover="now")))
        assert result["warm"]["cutover"] == "now" and result["downtime_s"] > 0
        assert y.xenapi.VM.get_power_state(y.xenapi.VM.get_by_uuid(vm_uuid)) == "Running"
        assert_migrated(x, y, vm_uuid, scan=False)
        assert transients(x) == []
    finally:
        src.logout()
        dst.logout()


def test_a_held_cutover_run_again_destroys_the_source_only_with_a_whole_fingerprint(pools, connect):
    """A second held run syncs from CBT's changed blocks alone, so the cut-over has no whole
    fingerprint of the source: a later destroy is refused, the source kept; a run with now and
    destroy reads the halted source once after the start and removes it."""
    x, y = connect(0), connect(1)
    src, dst = connection(pools[0]), connection(pools[1])
    try:
        for name, how in (("warm-held-keep", "keep"), ("warm-held-destroy", "destroy")):
            vm = running_vm(pools, x, name)
            vm_uuid = x.xenapi.VM.get_uuid(vm)
            for run in range(2):
                guest_write(pools[0], x, vm, 0, run * MiB, b"written before held run %d" % run)
                migration.migrate(src, dst, migration.Options(vm_uuid, warm_settings=warm.Settings(cutover="manual")))
            now = migration.Options(vm_uuid, source_disposition=how, warm_settings=warm.Settings(cutover="now"))
            result = migration.migrate(src, dst, now)
            assert result["warm"]["cutover"] == "now" and transients(x) == []
            assert y.xenapi.VM.get_power_state(y.xenapi.VM.get_by_uuid(vm_uuid)) == "Running"
            if how == "keep":
                with pytest.raises(SxmError, match="CBT's changed blocks"):
                    migration.cutover_step(src, dst, migration.make_plan(src, dst, now), "destroy")
                assert x.xenapi.VM.get_power_state(vm) == "Halted"
            else:
                assert not x.xenapi.VM.get_all_records_where('field "uuid"="%s"' % vm_uuid)
    finally:
        src.logout()
        dst.logout()


def test_a_snapshot_that_differs_on_the_destination_stops_the_cut_over_before_the_vm_stops(pools, connect):
    """The snapshot nodes are compared on both pools while the VM runs: a destination node
    written since it was mirrored fails the cut-over with the VM running on at the source."""
    x, y = connect(0), connect(1)
    vm = running_vm(pools, x, "warm-bad-node")
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    src, dst = connection(pools[0]), connection(pools[1])
    try:
        migration.migrate(src, dst, migration.Options(vm_uuid, warm_settings=warm.Settings(cutover="manual")))
        node = [ref for ref, rec in y.xenapi.VDI.get_all_records().items()
                if rec["other_config"].get("sxm:job") == vm_uuid and rec["other_config"].get("sxm:role") == "node"][0]
        scenario.write_disk(pools[1], y, node, [(MiB, b"not what the source's snapshot holds")])
        now = migration.Options(vm_uuid, verify_depth="full", warm_settings=warm.Settings(cutover="now"))
        with pytest.raises(SxmError, match="verification of the snapshots failed before the cut-over"):
            migration.migrate(src, dst, now)
        assert x.xenapi.VM.get_power_state(vm) == "Running" and transients(x) == []
        assert not y.xenapi.VM.get_all_records_where('field "uuid"="%s"' % vm_uuid)
        assert node not in y.xenapi.VDI.get_all()          # the bad copy went: the re-run mirrors it again
        result = migration.migrate(src, dst, now)
        assert result["warm"]["snapshots_verify_bytes_read"] > 0
        assert_migrated(x, y, vm_uuid, scan=False)
    finally:
        src.logout()
        dst.logout()


def test_without_cbt_on_smapiv3_the_plan_warns_of_whole_reads_and_the_move_is_exact(pools, connect):
    """No CBT and no VHD maps (SMAPIv3): every pass, and the last one while the VM is stopped,
    reads the disks whole; the plan says so with its estimate, and the bytes still match."""
    x, y = connect(0), connect(1)
    sr = x.xenapi.SR.get_by_name_label("Local storage (SMAPIv3)")[0]
    dst_sr = y.xenapi.SR.get_uuid(y.xenapi.SR.get_by_name_label("Local storage (SMAPIv3)")[0])
    vm = running_vm(pools, x, "warm-v3", steps=[s for s in TREE if s[0] != "cbt"], sr=sr)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    src, dst = connection(pools[0]), connection(pools[1])
    try:
        guest_write(pools[0], x, vm, 0, 2 * MiB, b"written before the move")
        result = migration.migrate(src, dst, migration.Options(vm_uuid, default_sr=dst_sr))
        warned = [w for w in result["warnings"] if "no CBT on an SMAPIv3 SR" in w]
        assert len(warned) == 1 and "the downtime is about" in warned[0] and "disk(s) 0, 1" in warned[0]
        assert all(p["bytes_read"] >= 12 * MiB for p in result["warm"]["passes"])   # both disks whole
        assert result["warm"]["final_delta_read_bytes"] == 12 * MiB
        assert_migrated(x, y, vm_uuid, scan=False)
        assert transients(x) == []
    finally:
        src.logout()
        dst.logout()


def test_a_cutover_window_waits_for_its_opening_and_a_closed_one_holds(pools, connect):
    x, y = connect(0), connect(1)
    vm = running_vm(pools, x, "warm-window")
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    src, dst = connection(pools[0]), connection(pools[1])

    def utc(offset):
        return time.strftime(warm.TIME_FORMAT, time.gmtime(time.time() + offset))
    try:
        closed = warm.Settings(cutover="window", cutover_after=utc(-120), cutover_before=utc(-60))
        result = migration.migrate(src, dst, migration.Options(vm_uuid, warm_settings=closed))
        assert result["cutover_pending"] and "window closed at" in result["next_step"]
        assert result["warm"]["decision"] == "hold" and x.xenapi.VM.get_power_state(vm) == "Running"
        opens = time.time() + 4
        window = warm.Settings(cutover="window", cutover_after=utc(4), cutover_before=utc(300), sync_interval=1)
        result = migration.migrate(src, dst, migration.Options(vm_uuid, warm_settings=window))
        assert result["warm"]["decision"] == "cut over" and len(result["warm"]["passes"]) >= 2
        assert time.time() - result["downtime_s"] >= int(opens)     # stopped only once it opened
        assert_migrated(x, y, vm_uuid, scan=False)
        assert transients(x) == []
    finally:
        src.logout()
        dst.logout()

"""Evacuations (issue 13): playbooks/evacuate.yml on a source pool with two hosts - VMs halted,
running and suspended, each with a tree; a fault in one VM leaves the others finished and is
named in the report; a re-run completes it; another has nothing to do. Caps are checked from
the pools' side (their NBD and import logs); check mode plans the whole fleet."""

import json
import os
import threading
import time

import pytest

from xapisim import client
from xapisim.testing import xapisim

from fleet import (assert_all_migrated, by_uuid, evacuate, jobs_reading_at_once, jobs_writing_at_once,
                   local_sr, host_named, make_vm, slot_leftovers, start_pools)

MiB = 1 << 20
INJECTED = ["SR_BACKEND_FAILURE_44", "", "injected: no space left on the device", ""]


@pytest.fixture(scope="module")
def hosts_pools(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("xapisim-fleet"))
    pools = start_pools(state)
    yield pools
    xapisim("down", "--state-dir", state)


@pytest.fixture
def xy(hosts_pools):
    x, y = client.login(hosts_pools[0]), client.login(hosts_pools[1])
    yield x, y
    for session in (x, y):
        session.xenapi.session.logout()


def test_six_vms_of_two_hosts_a_fault_in_one_and_reruns(hosts_pools, xy, tmp_path):
    x, y = xy
    pools = hosts_pools
    layout = [("host0", "halted"), ("host0", "halted"), ("host1", "halted"), ("host1", "halted"),
              ("host1", "running"), ("host0", "suspended")]
    uuids = [make_vm(pools[0], x, "fleet-%d-%s" % (i, power), host, power, size=(4 + i) * MiB, tags=["fleet-six"])
             for i, (host, power) in enumerate(layout)]
    # the first node snapshot on the destination fails: one VM, whichever gets there first
    client.post_fault(pools[1], y, {"kind": "call", "method": "VDI.snapshot", "nth": 1, "count": 1,
                                    "error": INJECTED})
    output, report = evacuate(pools, tmp_path, expect_failure=True, sxm_evacuate_tags=["fleet-six"],
                              sxm_concurrency=2, sxm_per_host_cap=2)
    failed = [vm for vm in report["vms"] if vm["status"] == "failed"]
    assert len(failed) == 1, report["counts"]
    assert failed[0]["error_code"] == "SR_BACKEND_FAILURE_44" and "ran out of space" in failed[0]["error"]
    assert failed[0]["advice"]
    assert report["counts"] == {"migrated": 5, "failed": 1}
    assert "1 of 6 VMs did not migrate: %s" % failed[0]["name"] in output
    markdown = (tmp_path / "reports" / "sxm-evacuation.md").read_text()
    assert failed[0]["name"] in markdown and "SR_BACKEND_FAILURE_44" in markdown
    done = [u for u in uuids if u != failed[0]["uuid"]]
    assert_all_migrated(x, y, [u for u in done if by_uuid(report)[u]["power_state"] != "running"])
    warm = [vm for vm in report["vms"] if vm["power_state"] == "running"]
    assert warm and (warm[0]["status"] != "migrated" or warm[0]["downtime_s"] is not None)
    assert len(report["timeline"]) == 6
    # the re-run completes the failed VM and skips the others
    output, report = evacuate(pools, tmp_path, sxm_evacuate_tags=["fleet-six"], sxm_concurrency=2, sxm_per_host_cap=2)
    assert report["counts"] == {"migrated": 1, "skipped": 5}, report["counts"]
    assert by_uuid(report)[failed[0]["uuid"]]["status"] == "migrated"
    for uuid in uuids:
        d_vm = y.xenapi.VM.get_by_uuid(uuid)
        assert y.xenapi.VM.get_other_config(d_vm)["sxm:state"] == "complete"
    halted_sources = [u for u in uuids if x.xenapi.VM.get_power_state(x.xenapi.VM.get_by_uuid(u)) != "Running"]
    assert_all_migrated(x, y, halted_sources)
    # and another has nothing to do
    output, report = evacuate(pools, tmp_path, sxm_evacuate_tags=["fleet-six"], sxm_concurrency=2)
    assert report["counts"] == {"skipped": 6}
    assert "0 VM(s) to move, 6 already migrated" in output
    assert slot_leftovers(x) == [] and slot_leftovers(y) == []


def test_caps_hold_across_two_playbooks_from_the_pools_side(hosts_pools, xy, tmp_path):
    """Two evacuations at once on disjoint VMs of host1, each allowed 3 at once, a cap of 2 per
    source host and 1 per destination SR: the pools' logs never show more."""
    x, y = xy
    pools = hosts_pools
    groups = [[make_vm(pools[0], x, "caps-%s-%d" % (side, i), "host1", size=6 * MiB) for i in range(3)]
              for side in "ab"]
    dst_sr = y.xenapi.SR.get_uuid(local_sr(y, host_named(y, "host1")))
    since = time.time()
    results = {}

    def run(side, vms):
        folder = tmp_path / side
        folder.mkdir()
        results[side] = evacuate(pools, folder, sxm_evacuate_vms=vms, sxm_evacuation_name="caps-" + side,
                                 sxm_concurrency=3, sxm_per_host_cap=2, sxm_per_sr_cap=1, sxm_default_sr=dst_sr,
                                 sxm_bandwidth_limit=8 * MiB)
    threads = [threading.Thread(target=run, args=(side, vms)) for side, vms in zip("ab", groups)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for side in "ab":
        assert results[side][1]["counts"] == {"migrated": 3}, results[side][1]
    reading, log = jobs_reading_at_once(pools[0], x, "xapisim-pool0-host1", since)
    assert 1 <= reading <= 2, reading
    assert jobs_writing_at_once(pools[1], y, dst_sr, since) == 1
    # XAPI's 16 connections per host: never refused, never more at once
    mine = [e for e in log if e["opened"] >= since]
    assert not any(e["refused"] for e in mine)
    per_connection = [(e["id"], e["opened"], e["closed"]) for e in mine if e["host"] == "xapisim-pool0-host1"]
    from fleet import most_at_once
    assert most_at_once(per_connection) <= 16
    assert slot_leftovers(x) == [] and slot_leftovers(y) == []


def test_check_mode_plans_the_fleet_and_refuses_one_too_big_for_an_sr(hosts_pools, xy, tmp_path):
    """Each VM fits the destination SR alone, the three together do not: refused before anything
    moves, naming the SR; with room, the plan prints the order and the estimated duration."""
    x, y = xy
    pools = hosts_pools
    uuids = [make_vm(pools[0], x, "plan-%d" % i, "host0", size=8 * MiB, tags=["fleet-plan"],
                     steps=[("write", "a"), ("snap", "s1"), ("write", "b")]) for i in range(3)]
    sr = local_sr(y, host_named(y, "host1"))
    sr_uuid = y.xenapi.SR.get_uuid(sr)
    before = (y.xenapi.SR.get_physical_size(sr), set(y.xenapi.VM.get_all()))
    output, dummy = evacuate(pools, tmp_path, check=True, sxm_evacuate_tags=["fleet-plan"], sxm_default_sr=sr_uuid,
                             sxm_concurrency=2, sxm_total_bandwidth_limit=4 * MiB)
    assert "3 VM(s) to move" in output and "about" in output
    assert "at 2 at once and 2.0 MiB/s per job" in output
    one_vm = max(int(x.xenapi.VDI.get_physical_utilisation(v)) for u in uuids
                 for v in x.xenapi.VDI.get_all() if x.xenapi.VDI.get_name_label(v).startswith("plan-"))
    try:
        used = int(y.xenapi.SR.get_physical_utilisation(sr))
        y.xenapi.SR.set_physical_size(sr, str(used + 2 * one_vm + one_vm // 2))
        output, dummy = evacuate(pools, tmp_path, check=True, expect_failure=True, sxm_evacuate_tags=["fleet-plan"],
                                 sxm_default_sr=sr_uuid)
        assert "the evacuation does not fit on the destination" in output
        assert "Local storage" in output and sr_uuid in output
        output, dummy = evacuate(pools, tmp_path, expect_failure=True, sxm_evacuate_tags=["fleet-plan"],
                                 sxm_default_sr=sr_uuid)
        assert "the evacuation does not fit on the destination" in output
        assert set(y.xenapi.VM.get_all()) == before[1]
    finally:
        y.xenapi.SR.set_physical_size(sr, before[0])


def test_selection_exclusions_and_order(hosts_pools, xy, tmp_path):
    """Tags, exclusions by name and by tag; order by size, by name, by priority tag."""
    x, y = xy
    pools = hosts_pools
    # bytes to move grow with the blocks written: one 64 KiB block per write
    writes = {"sel-small": 1, "sel-big": 8, "sel-mid": 4, "sel-skip": 2, "sel-tagged-out": 6}
    uuids = {name: make_vm(pools[0], x, name, "host0", size=4 * MiB, tags=["fleet-sel"],
                           steps=[("write", "w%d" % i) for i in range(n)] + [("snap", "s1"), ("write", "b")])
             for name, n in writes.items()}
    x.xenapi.VM.add_tags(x.xenapi.VM.get_by_uuid(uuids["sel-tagged-out"]), "do-not-move")
    x.xenapi.VM.add_tags(x.xenapi.VM.get_by_uuid(uuids["sel-small"]), "sxm-priority=1")
    x.xenapi.VM.add_tags(x.xenapi.VM.get_by_uuid(uuids["sel-mid"]), "sxm-priority=2")

    def plan_order(**order):
        output, dummy = evacuate(pools, tmp_path, check=True, sxm_evacuate_tags=["fleet-sel"],
                                 sxm_evacuate_exclude=["sel-skip"], sxm_evacuate_exclude_tags=["do-not-move"], **order)
        start = output.index('"#    VM')
        return [line.split()[1] for line in output[start:].splitlines()[1:4]]
    assert plan_order() == ["sel-big", "sel-mid", "sel-small"]
    assert plan_order(sxm_order="smallest") == ["sel-small", "sel-mid", "sel-big"]
    assert plan_order(sxm_order="priority") == ["sel-small", "sel-mid", "sel-big"]
    assert plan_order(sxm_order="name") == ["sel-big", "sel-mid", "sel-small"]
    output, dummy = evacuate(pools, tmp_path, check=True, expect_failure=True, sxm_evacuate_vms=["no-such-vm"])
    assert "names 'no-such-vm', which is no VM on the source pool" in output
    # more VMs at once than the controller has forks: refused before anything is read
    output, dummy = evacuate(pools, tmp_path, check=True, expect_failure=True, sxm_evacuate_tags=["fleet-sel"],
                             sxm_concurrency=9)
    assert "give -f 9" in output


def test_a_mover_and_the_evacuation_wide_bandwidth(hosts_pools, xy, tmp_path):
    """The data flows through the mover host (its interpreter logs each module it runs), one at a
    time in the planned order, each job at its share of the evacuation's bandwidth."""
    x, y = xy
    pools = hosts_pools
    uuids = [make_vm(pools[0], x, "mover-%d" % i, "host1", size=(8 - 2 * i) * MiB, tags=["fleet-mover"],
                     steps=[("write", "a"), ("snap", "s1"), ("write", "b")]) for i in range(2)]
    wrapper = tmp_path / "mover-python"
    log = tmp_path / "mover.log"
    import sys
    wrapper.write_text("#!/bin/sh\necho \"$@\" >> %s\nexec %s \"$@\"\n" % (log, sys.executable))
    wrapper.chmod(0o755)
    inventory = tmp_path / "movers.ini"
    inventory.write_text("mover1 ansible_connection=local ansible_python_interpreter=%s\n" % wrapper)
    os.environ["ANSIBLE_INVENTORY"] = str(inventory)
    try:
        output, report = evacuate(pools, tmp_path, sxm_evacuate_tags=["fleet-mover"], sxm_movers=["mover1"],
                                  sxm_concurrency=2, sxm_total_bandwidth_limit=4 * MiB)
    finally:
        del os.environ["ANSIBLE_INVENTORY"]
    assert report["counts"] == {"migrated": 2}
    assert "-> mover1" in output
    assert log.exists() and len(log.read_text().splitlines()) >= 10
    for uuid in uuids:
        result = json.loads((tmp_path / "reports" / ("sxm-%s.json" % uuid)).read_text())
        # each job got half the evacuation's 4 MiB/s: what it read took at least that long
        assert result["bytes_read"] / max(result["timings"]["data_s"], 1e-3) <= 2 * MiB * 1.25, result["timings"]
    assert_all_migrated(x, y, uuids)


def test_pause_drain_and_resume(hosts_pools, xy, tmp_path):
    """Paused, nothing starts until resumed; draining, the VM that moves finishes and the ones
    that had not started are left (drained); resumed, a re-run moves them."""
    x, y = xy
    pools = hosts_pools
    uuids = [make_vm(pools[0], x, "drain-%d" % i, "host0", size=6 * MiB, tags=["fleet-drain"],
                     steps=[("write", "a"), ("snap", "s1"), ("write", "b")]) for i in range(3)]
    control = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "playbooks",
                           "evacuation_control.yml")
    assert os.path.exists(control)

    def set_state(state):
        from harness import pool_vars, run_playbook
        run_playbook("evacuation_control.yml", {"sxm_source": pool_vars(pools[0]), "sxm_evacuation_name": "drain",
                                                "sxm_evacuation_state": state}, tmp_path)
    set_state("paused")
    outcome = {}

    def run():
        outcome["first"] = evacuate(pools, tmp_path, sxm_evacuate_tags=["fleet-drain"], sxm_evacuation_name="drain",
                                    sxm_concurrency=1, sxm_bandwidth_limit=2 * MiB)
    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(12)
    # paused: nothing of the evacuation reached the destination yet
    assert not [v for v in y.xenapi.VM.get_all_records().values() if v["uuid"] in uuids]
    set_state("running")
    # once the first VM moves, drain: it finishes, the other two are left
    deadline = time.time() + 60
    while time.time() < deadline and not any(
            v["other_config"].get("sxm:job") in uuids for v in y.xenapi.VDI.get_all_records().values()):
        time.sleep(0.5)
    set_state("draining")
    runner.join()
    output, report = outcome["first"]
    assert report["counts"] == {"migrated": 1, "drained": 2}, report["counts"]
    assert all(vm["error_code"] == "SXM_DRAINED" for vm in report["vms"] if vm["status"] == "drained")
    set_state("running")
    output, report = evacuate(pools, tmp_path, sxm_evacuate_tags=["fleet-drain"], sxm_evacuation_name="drain",
                              sxm_concurrency=2)
    assert report["counts"] == {"migrated": 2, "skipped": 1}
    assert_all_migrated(x, y, uuids)
    assert slot_leftovers(x) == []


def test_a_rerun_of_a_list_skips_the_vms_a_destroy_disposition_removed(hosts_pools, xy, tmp_path):
    x, y = xy
    pools = hosts_pools
    uuid = make_vm(pools[0], x, "destroyed-source", "host1", size=4 * MiB, steps=[("write", "a"), ("snap", "s1")])
    output, report = evacuate(pools, tmp_path, sxm_evacuate_vms=[uuid], sxm_source_disposition="destroy")
    assert report["counts"] == {"migrated": 1}
    assert uuid not in [r["uuid"] for r in x.xenapi.VM.get_all_records().values()]
    output, report = evacuate(pools, tmp_path, sxm_evacuate_vms=[uuid], sxm_source_disposition="destroy")
    assert report["counts"] == {"skipped": 1}
    assert y.xenapi.VM.get_other_config(y.xenapi.VM.get_by_uuid(uuid))["sxm:state"] == "complete"

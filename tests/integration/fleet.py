"""Helpers of the evacuation tests: pools with two hosts, VMs on a chosen host in a chosen power
state, playbooks/evacuate.yml runs, and what the pools logged (NBD connections, imports) turned
into the most jobs at once."""

import json

from xapisim import client, scenario
from xapisim.testing import pools_up, set_guest

from checks import assert_migrated
from harness import pool_vars, run_playbook

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"), ("write", "c")]


def start_pools(state_dir, hosts=2):
    return pools_up(state_dir, "--pools", "2", "--hosts", str(hosts))


def host_named(x, suffix):
    return next(h for h in x.xenapi.host.get_all() if x.xenapi.host.get_name_label(h).endswith(suffix))


def local_sr(x, host):
    return next(sr for sr in (x.xenapi.PBD.get_SR(p) for p in x.xenapi.host.get_PBDs(host))
                if x.xenapi.SR.get_type(sr) == "ext")


def make_vm(pool, x, name, host, power="halted", size=4 * MiB, tags=(), steps=TREE):
    """A VM with a tree (a reverted branch) on the local SR of ``host`` ("host0"/"host1"), in
    ``power`` (halted, running, suspended). Returns its uuid."""
    vm, dummy = scenario.build_tree(pool, x, name, [size], steps, sr=local_sr(x, host_named(x, host)))
    for tag in tags:
        x.xenapi.VM.add_tags(vm, tag)
    if power in ("running", "suspended"):
        x.xenapi.VM.start(vm, False, False)
        set_guest(pool, x, vm, tools=True, ack_timeout=1)
    if power == "suspended":
        x.xenapi.VM.suspend(vm)
    return x.xenapi.VM.get_uuid(vm)


def evacuate(pools, tmp_path, check=False, expect_failure=False, **role_vars):
    """Run playbooks/evacuate.yml; returns (output, the report or None)."""
    extra = {"sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]),
             "sxm_report_dir": str(tmp_path / "reports"), "sxm_progress_interval": 1}
    extra.update(role_vars)
    dummy, output = run_playbook("evacuate.yml", extra, tmp_path, check=check, expect_failure=expect_failure)
    path = tmp_path / "reports" / ("sxm-%s.json" % extra.get("sxm_evacuation_name", "evacuation"))
    report = json.loads(path.read_text()) if path.exists() and not check else None
    return output, report


def by_uuid(report):
    return {vm["uuid"]: vm for vm in report["vms"]}


def assert_all_migrated(x, y, uuids):
    for uuid in uuids:
        assert_migrated(x, y, uuid)


def most_at_once(intervals):
    """The most distinct keys whose [start, end] intervals overlap at one moment: from
    ``[(key, start, end)]``, exactly (an end before a start at the same instant)."""
    events = []
    for key, start, end in intervals:
        events.append((start, 1, key))
        events.append((end, 0, key))
    open_keys, best = {}, 0
    for dummy, is_start, key in sorted(events):
        if is_start:
            open_keys[key] = open_keys.get(key, 0) + 1
        else:
            open_keys[key] -= 1
            if not open_keys[key]:
                del open_keys[key]
        best = max(best, len(open_keys))
    return best


def jobs_reading_at_once(pool, x, host_name, since, originator="xapi.sxm"):
    """From the source's NBD log: the most jobs (sessions) reading from ``host_name`` at once."""
    log = client.simulator_json(pool, x, "GET", "/xapisim/nbd-connections")
    rows = [(e["session"], e["opened"], e["closed"]) for e in log
            if e["host"] == host_name and e["opened"] >= since and e["originator"] == originator and e["closed"]]
    return most_at_once(rows), log


def jobs_writing_at_once(pool, y, sr_uuid, since):
    """From the destination's import log: the most jobs (sessions) writing into ``sr_uuid`` at once."""
    log = client.simulator_json(pool, y, "GET", "/xapisim/imports")
    rows = [(e["session"], e["opened"], e["closed"]) for e in log
            if e["sr"] == sr_uuid and e["opened"] >= since and e["closed"]]
    return most_at_once(rows)


def slot_leftovers(x):
    """Every sxm: slot, queue or control key left on a pool's pool object, hosts and SRs."""
    found = []
    for cls in ("pool", "host", "SR"):
        for ref, rec in getattr(x.xenapi, cls).get_all_records().items():
            found += ["%s %s: %s" % (cls, rec.get("name_label", ref), k) for k in rec["other_config"]
                      if k.startswith(("sxm:queue:", "sxm:evacuation:")) or ":slot:" in k]
    return found

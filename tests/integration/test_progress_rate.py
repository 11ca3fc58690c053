"""Issue 4: while data moves, the migration's task advances on both pools at least every 2 s,
and a bandwidth limit holds within 10 % over 10 s."""

import json
import os
import sys
import threading
import time

from xapisim import scenario

from harness import REPO

sys.path.insert(0, os.path.join(REPO, "build", "collections"))

from ansible_collections.xapi.sxm.plugins.module_utils import migrate as migration  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection  # noqa: E402

MiB = 1 << 20
LIMIT = 3 * MiB


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


def test_progress_on_both_pools_and_rate_limit(pools, connect, tmp_path):
    x = connect(0)
    vm = scenario.create_vm(x, "rate-limited", [48 * MiB])
    disk = scenario.disks(x, vm)["0"]
    scenario.write_disk(pools[0], x, disk, [(i * MiB, os.urandom(MiB)) for i in range(0, 48, 1)])
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    progress_file = str(tmp_path / "progress.json")
    src, dst = connection(pools[0]), connection(pools[1])
    outcome = {}

    def run():
        try:
            outcome["result"] = migration.migrate(src, dst, migration.Options(
                vm_uuid, bandwidth_limit=LIMIT, progress_file=progress_file, verify=False))
        except Exception as e:  # noqa: BLE001 - reported by the test
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    watchers = [connect(0), connect(1)]
    seen = {0: [], 1: []}
    samples = []
    while worker.is_alive():
        now = time.monotonic()
        for i, w in enumerate(watchers):
            tasks = w.xenapi.task.get_all_records_where('field "name__label"="xapi.sxm: migrating rate-limited"')
            for rec in tasks.values():
                seen[i].append((now, float(rec["progress"])))
        try:
            with open(progress_file) as f:
                state = json.load(f)
            if state["phase"] == "mirror":
                samples.append((now, state["bytes_done"]))
        except (OSError, ValueError):
            pass
        time.sleep(0.25)
    worker.join()
    src.logout()
    dst.logout()
    assert "error" not in outcome, outcome.get("error")
    for i in (0, 1):
        values = seen[i]
        assert len({v for t, v in values}) >= 5, "pool %d: progress did not advance: %s" % (i, values)
        # while data moves, a new value at least every 2 s
        changes = [t for (t, v), (t0, v0) in zip(values[1:], values[:-1]) if v != v0]
        gaps = [b - a for a, b in zip(changes, changes[1:])]
        assert max(gaps) <= 2.0, gaps
        assert all(b[1] >= a[1] for a, b in zip(values, values[1:])), "progress went backwards"
    # the rate over a 10 s window inside the transfer
    assert len(samples) > 20, (samples, open(progress_file).read())
    start = [s for s in samples if s[0] >= samples[0][0] + 1.0][0]
    end = [s for s in samples if s[0] >= start[0] + 10.0][0]
    rate = (end[1] - start[1]) / (end[0] - start[0])
    assert 0.9 * LIMIT <= rate <= 1.1 * LIMIT, "rate %.2f MiB/s for a limit of %.2f" % (rate / MiB, LIMIT / MiB)

"""progress.py: the state a Progress publishes (with a fake clock), its progress file written
at most every FILE_INTERVAL unless forced and 1.0 only once finished, a cancelled job stopping
as bytes are added, and the XAPI task it shows on a simulated pool, destroyed at the end."""

import json
import time
import uuid

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import progress as progmod
from ansible_collections.xapi.sxm.plugins.module_utils.cancel import Cancel
from ansible_collections.xapi.sxm.plugins.module_utils.errors import JobCancelled
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection


class Clock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def read(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def made(tmp_path):
    clock = Clock()
    path = str(tmp_path / "sub" / "progress.json")
    return progmod.Progress([], "label", 1000, path=path, clock=clock).start(), clock, path


def test_state_fields(made):
    p, clock, path = made
    p.set_node("0", 2, 3, "v1")
    clock.now += 10
    p.add(500)
    state = p.state()
    assert {k: state[k] for k in ("phase", "bytes_done", "bytes_total_estimate", "fraction", "rate_bytes_per_s",
                                  "eta_s", "disk", "node", "nodes", "node_name", "elapsed_s")} == {
        "phase": "mirror", "bytes_done": 500, "bytes_total_estimate": 1000, "fraction": 0.5,
        "rate_bytes_per_s": 50, "eta_s": 10, "disk": "0", "node": 2, "nodes": 3, "node_name": "v1",
        "elapsed_s": 10.0}
    assert read(path)["bytes_done"] == 500


def test_fraction_stays_below_one_until_finish(made):
    p, clock, path = made
    clock.now += progmod.FILE_INTERVAL
    p.add(5000)
    assert p.fraction() == 0.99 and read(path)["fraction"] == 0.99 and read(path)["eta_s"] == 0
    p.finish(ok=True)
    final = read(path)
    assert final["fraction"] == 1.0 and final["phase"] == "done" and final["bytes_done"] == 5000


def test_a_failed_finish_keeps_the_fraction(made):
    p, clock, path = made
    p.add(250)
    p.finish(ok=False)
    assert read(path)["fraction"] == 0.25 and read(path)["phase"] == "failed"


def test_the_file_is_rewritten_at_most_every_interval_unless_forced(made):
    p, clock, path = made
    assert read(path)["phase"] == "starting", "start() writes at once"
    clock.now += progmod.FILE_INTERVAL / 2
    p.add(100)
    assert read(path)["bytes_done"] == 0, "rewritten before FILE_INTERVAL"
    clock.now += progmod.FILE_INTERVAL / 2
    p.add(100)
    assert read(path)["bytes_done"] == 200
    p.add(100)
    assert read(path)["bytes_done"] == 200
    p.set_phase("verify")
    assert read(path)["bytes_done"] == 300 and read(path)["phase"] == "verify", "a forced write waited"


def test_a_cancelled_job_stops_when_bytes_are_added(tmp_path):
    cancel = Cancel()
    p = progmod.Progress([], "label", 100, clock=Clock(), cancel=cancel).start()
    p.add(10)
    cancel.cancel("received SIGTERM")
    with pytest.raises(JobCancelled) as info:
        p.add(10)
    assert str(info.value) == "received SIGTERM" and p.done == 20


def test_the_xapi_task_shows_progress_and_is_destroyed_after_finish(pools):
    pool = pools[0]
    conn = Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()
    label = "xapi.sxm test progress %s" % uuid.uuid4().hex[:8]
    try:
        p = progmod.Progress([conn], label, 1000).start()
        tasks = conn.call("task.get_by_name_label", label)
        assert len(tasks) == 1 and conn.call("task.get_status", tasks[0]) == "pending"
        p.add(400)
        deadline = time.monotonic() + progmod.TASK_INTERVAL + 3
        while conn.call("task.get_progress", tasks[0]) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert conn.call("task.get_progress", tasks[0]) == pytest.approx(0.4)
        p.finish(ok=True)
        assert conn.call("task.get_by_name_label", label) == []
        assert p.updater is not None and not p.updater.is_alive()
    finally:
        conn.logout()

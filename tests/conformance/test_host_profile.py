"""``xapisim up --host-profile real``: a real host's fixed costs, as docs/xapisim.md lists them
(estimates): a dom0 attach per import request and per NBD connection, VDI.snapshot's own
time, an API latency, and per-connection data rates. Lower bounds of elapsed time only: the
costs are sleeps, so a loaded machine can only make them longer."""

import json
import os
import time

import pytest

from xapisim import client, host_profile, scenario
from xapisim.testing import xapisim

MiB = 1 << 20
COSTS = ["attach_s=0.4", "vdi_snapshot_s=0.6", "api_latency_s=0.02", "nbd_bytes_per_s=8000000",
         "https_bytes_per_s=8000000"]


@pytest.fixture(scope="module")
def real_pool(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("xapisim-real"))
    xapisim("up", "--state-dir", state_dir, "--pools", "1", "--host-profile", "real",
            *["--host-cost=%s" % c for c in COSTS])
    with open(os.path.join(state_dir, "pools.json")) as f:
        pool = json.load(f)["pools"][0]
    x = client.login(pool)
    yield pool, x
    x.xenapi.session.logout()
    xapisim("down", "--state-dir", state_dir)


def elapsed(thunk):
    start = time.monotonic()
    thunk()
    return time.monotonic() - start


def test_the_profile_parses_and_refuses_unknown_costs():
    costs = host_profile.parse("real", ["attach_s=2"])
    assert costs["attach_s"] == 2.0 and costs["nbd_bytes_per_s"] == host_profile.PROFILES["real"]["nbd_bytes_per_s"]
    with pytest.raises(ValueError):
        host_profile.parse("real", ["attach=2"])
    with pytest.raises(ValueError):
        host_profile.parse("fast")


def test_calls_snapshots_imports_and_nbd_connections_cost_what_the_profile_says(real_pool):
    pool, x = real_pool
    vm = scenario.create_vm(x, "costly", [8 * MiB])
    vdi = scenario.disks(x, vm)["0"]
    assert elapsed(lambda: x.xenapi.VM.get_name_label(vm)) >= 0.02
    assert elapsed(lambda: x.xenapi.VDI.snapshot(vdi, {})) >= 0.6 + 0.02
    # one import request: an attach, then 4 MiB at 8 MB/s
    assert elapsed(lambda: scenario.write_disk(pool, x, vdi, [(0, b"r" * (4 * MiB))])) >= 0.4 + 0.5
    # one NBD connection reading 8 MiB: an attach, then 1 s of data
    assert elapsed(lambda: b"".join(client.nbd_chunks(x, vdi))) >= 0.4 + 1.0


def test_what_the_host_charged_is_counted_per_kind(real_pool):
    """GET /xapisim/host-costs counts what the benchmarks' model multiplies by the profile."""
    pool, x = real_pool
    vm = scenario.create_vm(x, "counted", [4 * MiB])
    vdi = scenario.disks(x, vm)["0"]
    before = client.host_costs(pool, x)
    assert before["costs"]["attach_s"] == 0.4
    x.xenapi.VDI.snapshot(vdi, {})
    scenario.write_disk(pool, x, vdi, [(0, b"c" * MiB)])
    b"".join(client.nbd_chunks(x, vdi))
    after = client.host_costs(pool, x)["charged"]

    def grew(kind):
        return after.get(kind, 0) - before["charged"].get(kind, 0)
    assert grew("VDI.snapshot") == 1
    assert grew("attach_import") == 1 and grew("attach_nbd") == 1 and grew("attach_export") == 0
    assert grew("calls") >= 3          # the snapshot, and the look-ups of the write and the read

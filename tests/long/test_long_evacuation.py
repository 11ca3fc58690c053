"""Issue 13, `make test-long`: an evacuation of 20 VMs (halted, running, suspended, with trees) from
a source pool of two hosts, 4 at once, with a fault in 2 of them: the other 18 finish, the
report names the 2 with their reasons, a re-run completes them, another has nothing to do; the
pools' logs never show more than the caps allow, and no slot key is left."""

import os
import sys
import time

import pytest

from xapisim import client
from xapisim.testing import xapisim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

from fleet import (assert_all_migrated, evacuate, jobs_reading_at_once, make_vm, slot_leftovers,  # noqa: E402
                   start_pools)

MiB = 1 << 20
INJECTED = ["SR_BACKEND_FAILURE_44", "", "injected: no space left on the device", ""]


@pytest.fixture
def pools(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("xapisim-long-fleet"))
    entries = start_pools(state)
    yield entries
    xapisim("down", "--state-dir", state)


def test_twenty_vms_four_at_once_two_faults(pools, tmp_path):
    x, y = client.login(pools[0]), client.login(pools[1])
    powers = ["halted"] * 14 + ["running"] * 3 + ["suspended"] * 3
    uuids = [make_vm(pools[0], x, "long-%02d-%s" % (i, power), "host%d" % (i % 2), power,
                     size=(4 + i % 5) * MiB, tags=["long-fleet"]) for i, power in enumerate(powers)]
    # two VMs fail: the first two node snapshots made on the destination
    client.post_fault(pools[1], y, {"kind": "call", "method": "VDI.snapshot", "nth": 1, "count": 2,
                                    "error": INJECTED})
    since = time.time()
    caps = dict(sxm_evacuate_tags=["long-fleet"], sxm_concurrency=4, sxm_per_host_cap=3)
    output, report = evacuate(pools, tmp_path, expect_failure=True, **caps)
    failed = [vm for vm in report["vms"] if vm["status"] == "failed"]
    assert report["counts"] == {"migrated": 18, "failed": 2}, report["counts"]
    assert all(vm["error_code"] == "SR_BACKEND_FAILURE_44" and vm["advice"] for vm in failed)
    assert "2 of 20 VMs did not migrate" in output
    for host in ("xapisim-pool0-host0", "xapisim-pool0-host1"):
        most, dummy = jobs_reading_at_once(pools[0], x, host, since)
        assert most <= 3, (host, most)
    output, report = evacuate(pools, tmp_path, **caps)
    assert report["counts"] == {"migrated": 2, "skipped": 18}
    output, report = evacuate(pools, tmp_path, **caps)
    assert report["counts"] == {"skipped": 20}
    halted = [u for u in uuids if x.xenapi.VM.get_power_state(x.xenapi.VM.get_by_uuid(u)) != "Running"]
    assert_all_migrated(x, y, halted)
    assert slot_leftovers(x) == [] and slot_leftovers(y) == []

"""An evacuation killed outright (issue 13): the controller and every module it started are
SIGKILLed while VMs move under the caps. The slots of the dead jobs age out, a re-run of the
same playbook finishes every VM, and nothing is left: no slot, queue or lock key on either pool,
no secret on disk or in a process."""

import os
import signal
import time

import pytest
from xapisim import client
from xapisim.testing import xapisim

from harness import REPO, pool_vars
from test_locks import module_pids
from test_secrets import leaks, start

from fleet import assert_all_migrated, evacuate, make_vm, slot_leftovers, start_pools

MiB = 1 << 20
TIMEOUT = 6          # orphan, lock and slot timeouts: the dead jobs' keys age out quickly
STEPS = [("write", "a"), ("snap", "s1"), ("write", "b")]


@pytest.fixture(scope="module")
def fleet_pools(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("xapisim-fleet-kill"))
    pools = start_pools(state)
    yield pools, state
    xapisim("down", "--state-dir", state)


@pytest.mark.parametrize("after_s", [4.0, 9.0])
def test_a_killed_evacuation_is_finished_by_a_rerun(fleet_pools, tmp_path, after_s):
    pools, state = fleet_pools
    x, y = client.login(pools[0]), client.login(pools[1])
    tag = "kill-%d" % int(after_s)
    uuids = [make_vm(pools[0], x, "%s-%d" % (tag, i), "host%d" % (i % 2), size=6 * MiB, tags=[tag], steps=STEPS)
             for i in range(3)]
    since = time.time() - 1
    report_dir = str(tmp_path / "reports")
    variables = {"sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]),
                 "sxm_evacuate_tags": [tag], "sxm_concurrency": 2, "sxm_per_host_cap": 1, "sxm_per_sr_cap": 1,
                 "sxm_report_dir": report_dir, "sxm_bandwidth_limit": 2 * MiB, "sxm_orphan_timeout": TIMEOUT,
                 "sxm_lock_timeout": TIMEOUT, "sxm_slot_timeout": TIMEOUT}
    run = start(variables, tmp_path, playbook=os.path.join(REPO, "playbooks", "evacuate.yml"))
    time.sleep(after_s)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    for name in ("vdi_mirror", "migration_verify", "vm_metadata", "vm_cutover"):
        for pid in module_pids(run.tag, name=name, wrapper_too=True):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    time.sleep(TIMEOUT + 1)       # the dead holders' locks and slots age out
    evacuate(pools, tmp_path, **variables)
    output, report = evacuate(pools, tmp_path, **variables)
    assert report["counts"] == {"skipped": 3}, report["counts"]
    assert_all_migrated(x, y, uuids)
    assert slot_leftovers(x) == [] and slot_leftovers(y) == []
    dst_pool = y.xenapi.pool.get_all()[0]
    assert [k for k in y.xenapi.pool.get_other_config(dst_pool) if k.startswith("sxm:")] == []
    # the re-runs' variables files are this test's own (the killed run read its from a FIFO)
    ours = {str(p) for p in tmp_path.glob("vars-*.json")}
    assert [leak for leak in leaks(pools, state, since, report_dir) if leak.split(" holds ")[0] not in ours] == []

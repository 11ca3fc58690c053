"""Issue 12: Ctrl-C means cancel. ansible-playbook runs no task after SIGINT, so the module
that was copying stops itself once nobody polls it (within sxm_orphan_timeout and its next safe
point); afterwards it makes no call to the source at all, no disposition is ever applied (here
`destroy`), and a re-run finishes."""

import json
import signal
import time

from xapisim import client

from checks import assert_migrated
from test_locks import ORPHAN_TIMEOUT, copying, module_pids, role_vars, slow_vm, start_playbook, wait_for

STOP_BOUND = ORPHAN_TIMEOUT + 20


def calls_since(pool, x, since):
    x.xenapi.pool.get_all()  # renews the test's session if needed
    status, dummy, body = client.http_request(pool, "GET", "/xapisim/calls", {"since": "%f" % since}, x)
    assert status == 200, body
    return [c for c in json.loads(body) if c[2] == "xapi.sxm"]


def test_ctrl_c_during_the_copy_cancels_the_job(pools, connect, tmp_path):
    x, y = connect(0), connect(1)
    vm_uuid = slow_vm(pools, x)
    variables = role_vars(pools, vm_uuid, tmp_path, sxm_source_disposition="destroy")
    run = start_playbook(variables, tmp_path)
    wait_for(lambda: copying(y, vm_uuid, run), 60, "the copy")
    interrupted = time.monotonic()
    # what a terminal's Ctrl-C does: SIGINT to the foreground process group (the modules
    # run in a session of their own, as async_wrapper makes them)
    run.send_signal(signal.SIGINT)
    run.wait(30)
    assert "interrupted" in open(run.log).read().lower()
    wait_for(lambda: not module_pids(run.tag), STOP_BOUND, "the module to stop")
    assert time.monotonic() - interrupted <= STOP_BOUND
    gone = time.time()
    time.sleep(3)
    assert calls_since(pools[0], x, gone) == [], "the stopped job still called the source"
    vm = x.xenapi.VM.get_by_uuid(vm_uuid)
    assert "start" not in x.xenapi.VM.get_blocked_operations(vm), "a disposition was applied"
    dst_vm = [r for r in y.xenapi.VM.get_all_records().values() if r["uuid"] == vm_uuid]
    assert all(r["other_config"].get("sxm:state") != "complete" for r in dst_vm)
    from harness import run_playbook
    stats, output = run_playbook("migrate_vm.yml", dict(variables, sxm_bandwidth_limit=0,
                                                        sxm_source_disposition="keep"), tmp_path)
    assert stats["failed"] == 0
    assert_migrated(x, y, vm_uuid)

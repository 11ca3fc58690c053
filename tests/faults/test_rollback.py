"""Issue 12: rollback on request. After a failure at each step of the flow (and after a
completed migration with the block disposition), playbooks/rollback.yml leaves the destination
as it was before the job, and the source's blocked_operations, tags and power state and every
lock key as they were; it refuses while a job holds the lock."""

import os
import time
import uuid

import pytest
from xapisim import scenario

from checks import inventory
from harness import REPO, pool_vars
from test_fault_matrix import COMPOSITE, LOCK_TIMEOUT, ORPHAN_TIMEOUT, call, post_fault, run_to_end, source_state
from test_locks import module_pids
from test_secrets import start

from ansible_collections.xapi.sxm.plugins.module_utils.lock import lock_keys

MiB = 1 << 20
ROLLBACK = os.path.join(REPO, "playbooks", "rollback.yml")
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"), ("write", "c")]

# (name, fault, disposition, quick): a failed XAPI call at each step of the flow
STEPS = [
    ("preflight", call(1, "SR.get_record"), "keep", False),
    ("transfer: working disk", call(1, "VDI.create"), "keep", False),
    ("transfer: second node", call(1, "VDI.snapshot", 2), "keep", False),
    ("markers", call(1, "VDI.add_to_other_config", 3), "keep", False),
    ("metadata import", call(1, "VM.get_blocked_operations"), "keep", True),
    ("fix-ups", call(1, "VDI.get_snapshot_time"), "keep", False),
    ("verify", call(1, "VDI.get_nbd_info"), "keep", False),
    ("cut-over", call(1, "VM.remove_from_blocked_operations"), "keep", False),
    ("disposition block", call(0, "VM.add_to_blocked_operations"), "block", False),
    ("after completion with block", None, "block", False),
]


def lock_keys_of(x):
    return sorted(lock_keys(x.xenapi.pool.get_other_config(x.xenapi.pool.get_all()[0])))


def source_vm(pools, x, name):
    """A VM whose owner had set tags and blocked an operation before the migration."""
    vm, dummy = scenario.build_tree(pools[0], x, "%s-%s" % (name, uuid.uuid4().hex[:6]), [2 * MiB, 1 * MiB], TREE)
    x.xenapi.VM.set_tags(vm, ["prod", "team-a"])
    x.xenapi.VM.add_to_blocked_operations(vm, "clone", "the owner's own reason")
    return x.xenapi.VM.get_uuid(vm)


def variables(pools, vm_uuid, tmp_path, **extra):
    out = {"sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]), "sxm_vm": vm_uuid,
           "sxm_report_dir": str(tmp_path / "reports"), "sxm_orphan_timeout": ORPHAN_TIMEOUT,
           "sxm_lock_timeout": LOCK_TIMEOUT, "sxm_source_disposition": "keep"}
    out.update(extra)
    return out


@pytest.mark.parametrize("name, fault, disposition, quick",
                         [pytest.param(*s, id=s[0], marks=[pytest.mark.quick] if s[3] else []) for s in STEPS])
def test_rollback_after_a_failure_at_each_step(name, fault, disposition, quick, pools, connect, tmp_path):
    x, y = connect(0), connect(1)
    vm_uuid = source_vm(pools, x, "rollback")
    before_src, before_dst = source_state(x, vm_uuid), inventory(y)
    before_locks = lock_keys_of(x), lock_keys_of(y)
    run_vars = variables(pools, vm_uuid, tmp_path, sxm_source_disposition=disposition)
    if fault is not None:
        kind, where, spec = fault
        post_fault(pools[where], [x, y][where], spec)
    code, output = run_to_end(run_vars, tmp_path, playbook=COMPOSITE)
    for pool, session in ((pools[0], x), (pools[1], y)):
        post_fault(pool, session, {"kind": "clear"})
    assert (code != 0) == (fault is not None), output[-3000:]
    # the disposition comes after the cut-over: a copy that is complete is rolled back only on request
    complete = vm_uuid in inventory(y)[0] and \
        y.xenapi.VM.get_other_config(y.xenapi.VM.get_by_uuid(vm_uuid)).get("sxm:state") == "complete"
    assert complete == (disposition == "block")
    if complete:
        code, output = run_to_end(variables(pools, vm_uuid, tmp_path), tmp_path, playbook=ROLLBACK)
        assert code != 0 and "SXM_STATE" in output and "include_complete" in output, output[-3000:]

    code, output = run_to_end(variables(pools, vm_uuid, tmp_path, sxm_include_complete=complete),
                              tmp_path, playbook=ROLLBACK)
    assert code == 0, output[-4000:]
    assert inventory(y) == before_dst, "the destination is as it was before the job"
    assert source_state(x, vm_uuid) == before_src, "blocked operations, tags, power state as they were"
    assert (lock_keys_of(x), lock_keys_of(y)) == before_locks
    assert [t for t in y.xenapi.task.get_all_records().values() if t["status"] == "pending"] == []
    code, output = run_to_end(variables(pools, vm_uuid, tmp_path), tmp_path, playbook=ROLLBACK)
    assert code == 0 and "changed=0" in output, "a second rollback changes nothing:\n" + output[-3000:]


def test_rollback_refuses_while_a_job_holds_the_lock(pools, connect, tmp_path):
    x, y = connect(0), connect(1)
    vm_uuid = source_vm(pools, x, "rollback-locked")
    run = start(variables(pools, vm_uuid, tmp_path, sxm_bandwidth_limit=1 * MiB), tmp_path, COMPOSITE)
    deadline = time.monotonic() + 60
    while not module_pids(run.tag, name="vm_migrate") and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    during = inventory(y)
    code, output = run_to_end(variables(pools, vm_uuid, tmp_path), tmp_path, playbook=ROLLBACK)
    assert code != 0 and "SXM_LOCK_HELD" in output, output[-3000:]
    assert during[1] <= inventory(y)[1], "the refused rollback removed nothing"
    assert run.wait(300) == 0, open(run.log).read()[-3000:]
    assert "start" not in x.xenapi.VM.get_blocked_operations(x.xenapi.VM.get_by_uuid(vm_uuid))
    assert y.xenapi.VM.get_by_uuid(vm_uuid), "the running job was not disturbed and finished"

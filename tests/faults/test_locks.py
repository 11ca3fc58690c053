"""Issue 8: one job at a time per VM, and a job nobody waits for stops itself.
- two runs at once: one migrates, the other stops before touching anything, naming the holder;
- ansible-playbook killed (SIGKILL) during the copy: the orphaned module stops within
  sxm_orphan_timeout (+ the next safe point), a re-run meanwhile is refused, one after it finishes;
- the module itself killed (SIGKILL): a re-run takes its lock over once its heartbeat is
  sxm_lock_timeout old, and finishes."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from xapisim import scenario

from ansible_dirs import ansible_async_dir
from checks import assert_migrated
from harness import REPO, pool_vars, run_playbook

sys.path.insert(0, os.path.join(REPO, "build", "collections"))

from ansible_collections.xapi.sxm.plugins.module_utils.lock import lock_keys  # noqa: E402

MiB = 1 << 20
ORPHAN_TIMEOUT = 8
LOCK_TIMEOUT = 10


def slow_vm(pools, x, size=32 * MiB):
    vm = scenario.create_vm(x, "locked-%s" % uuid.uuid4().hex[:6], [size])
    disk = scenario.disks(x, vm)["0"]
    scenario.write_disk(pools[0], x, disk, [(i * MiB, os.urandom(MiB)) for i in range(size // MiB)])
    return x.xenapi.VM.get_uuid(vm)


def role_vars(pools, vm_uuid, tmp_path, **extra):
    variables = {"sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]), "sxm_vm": vm_uuid,
                 "sxm_report_dir": str(tmp_path / "reports"), "sxm_bandwidth_limit": 2 * MiB,
                 "sxm_orphan_timeout": ORPHAN_TIMEOUT, "sxm_lock_timeout": LOCK_TIMEOUT}
    variables.update(extra)
    return variables


def start_playbook(variables, tmp_path):
    """ansible-playbook in the background; its modules inherit a tag in their environment, by
    which module_pids finds them (and never another run's, on a shared machine)."""
    vars_file = tmp_path / ("bg-%s.json" % uuid.uuid4().hex[:6])
    vars_file.write_text(json.dumps(variables))
    log = open(tmp_path / ("bg-%s.log" % uuid.uuid4().hex[:6]), "w")
    tag = uuid.uuid4().hex
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               SXM_TEST_RUN=tag)
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                             os.path.join(REPO, "playbooks", "migrate_vm.yml"), "-e", "@%s" % vars_file],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log, proc.tag = log.name, tag
    return proc


def module_pids(tag, name="vdi_mirror", wrapper_too=False):
    """The module's own process of the run tagged ``tag`` (with ``wrapper_too``, also
    async_wrapper's, whose command line names the module too)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    cmdline = f.read()
                if ("AnsiballZ_%s" % name).encode() not in cmdline or \
                        (not wrapper_too and b"async_wrapper" in cmdline):
                    continue
                with open("/proc/%s/environ" % entry, "rb") as f:
                    if ("SXM_TEST_RUN=%s" % tag).encode() in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def orphan_results(vm_uuid):
    """The error codes (or, for a result without one, its start) of the async job results
    that name the VM, removed once read: with its controller gone, nobody else reads them."""
    folder = ansible_async_dir()
    codes = []
    for path in glob.glob(os.path.join(folder, "*")):
        with open(path) as f:
            text = f.read()
        if vm_uuid in text:
            codes.append(json.loads(text).get("error_code") or text[:300])
            os.unlink(path)
    return codes


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out after %d s waiting for %s" % (seconds, what))


def lock_held(y, vm_uuid):
    return lock_keys(y.xenapi.pool.get_other_config(y.xenapi.pool.get_all()[0]), vm_uuid)


def copying(y, vm_uuid, run):
    return module_pids(run.tag) and [k for k in lock_held(y, vm_uuid) if k.startswith("sxm:lock:")]


def test_two_runs_at_once(pools, connect, tmp_path):
    x, y = connect(0), connect(1)
    vm_uuid = slow_vm(pools, x)
    first = start_playbook(role_vars(pools, vm_uuid, tmp_path), tmp_path)
    wait_for(lambda: copying(y, vm_uuid, first), 60, "the first run's copy")
    pid = module_pids(first.tag)[0]
    stats, output = run_playbook("migrate_vm.yml", role_vars(pools, vm_uuid, tmp_path), tmp_path,
                                 expect_failure=True)
    assert "SXM_LOCK_HELD" in output and "vdi_mirror" in output and ("pid %d" % pid) in output, output[-3000:]
    assert first.wait(300) == 0, open(first.log).read()[-3000:]
    assert_migrated(x, y, vm_uuid)
    assert lock_held(y, vm_uuid) == []


def test_killed_controller_leaves_a_job_that_stops_itself(pools, connect, tmp_path):
    x, y = connect(0), connect(1)
    vm_uuid = slow_vm(pools, x)
    run = start_playbook(role_vars(pools, vm_uuid, tmp_path), tmp_path)
    wait_for(lambda: copying(y, vm_uuid, run), 60, "the copy")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    killed = time.monotonic()
    # a re-run while the orphan still runs never starts a second writer beside it
    stats, output = run_playbook("migrate_vm.yml", role_vars(pools, vm_uuid, tmp_path), tmp_path,
                                 expect_failure=True)
    assert "SXM_LOCK_HELD" in output, output[-3000:]
    wait_for(lambda: not module_pids(run.tag), ORPHAN_TIMEOUT + 20, "the orphaned module to stop")
    stopped_after = time.monotonic() - killed
    assert stopped_after <= ORPHAN_TIMEOUT + 20
    assert lock_held(y, vm_uuid) == [], "the orphan did not free its lock"
    # it says why it stopped, in the result async_wrapper keeps (nobody polls it any more);
    # async_wrapper writes that file just after its module process is gone
    codes = wait_for(lambda: orphan_results(vm_uuid), 10, "the orphan's async result")
    assert "SXM_CANCELLED" in codes, codes
    stats, output = run_playbook("migrate_vm.yml", role_vars(pools, vm_uuid, tmp_path, sxm_bandwidth_limit=0),
                                 tmp_path)
    assert stats["failed"] == 0
    assert_migrated(x, y, vm_uuid)


@pytest.mark.parametrize("whole_job", [False, True], ids=["module", "module and async_wrapper"])
def test_killed_module_lock_is_taken_over(pools, connect, tmp_path, whole_job):
    x, y = connect(0), connect(1)
    vm_uuid = slow_vm(pools, x)
    run = start_playbook(role_vars(pools, vm_uuid, tmp_path), tmp_path)
    wait_for(lambda: copying(y, vm_uuid, run), 60, "the copy")
    for pid in module_pids(run.tag, wrapper_too=whole_job):
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    # the waiting play fails: async_wrapper records the dead module as a failed job, and a
    # job killed with its wrapper is found dead by migration_wait (its pid is gone)
    assert run.wait(60) != 0
    if whole_job:
        assert "SXM_JOB_DIED" in open(run.log).read()
    assert [k for k in lock_held(y, vm_uuid) if k.startswith("sxm:lock:")], "a killed module keeps its lock"
    time.sleep(max(0, LOCK_TIMEOUT + 2 - (time.monotonic() - killed)))
    stats, output = run_playbook("migrate_vm.yml", role_vars(pools, vm_uuid, tmp_path, sxm_bandwidth_limit=0),
                                 tmp_path)
    assert stats["failed"] == 0
    assert_migrated(x, y, vm_uuid)
    assert lock_held(y, vm_uuid) == []

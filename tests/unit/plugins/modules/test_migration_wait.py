"""migration_wait's module: the finished results that orphaned jobs of the same VM left in the
async folder go with the job's own; running jobs and other VMs' results stay."""

import json
import os
import subprocess
import sys
import time

from ansible_collections.xapi.sxm.plugins.modules import migration_wait


def test_orphan_results_of_the_same_vm_are_removed(tmp_path):
    files = {"j1": {"vm_uuid": "vm-a", "changed": False, "failed": True, "error_code": "SXM_CANCELLED"},
             "j2": {"started": 1, "finished": 0, "ansible_job_id": "j2"},
             "j3": {"vm_uuid": "vm-b", "changed": True},
             "j4": "not json",
             "j5": {"failed": True, "partial_result": {}, "invocation": {"module_args": {"vm": "vm-a"}}}}
    for name, data in files.items():
        (tmp_path / name).write_text(data if isinstance(data, str) else json.dumps(data))
    removed = migration_wait.remove_orphan_results(str(tmp_path), {"vm_uuid": "vm-a"})
    assert removed == ["j1", "j5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j2", "j3", "j4"]
    assert migration_wait.remove_orphan_results(str(tmp_path), {}) == []


def test_a_result_written_just_after_the_process_ended_is_waited_for(tmp_path):
    """The module is gone (or a zombie) a moment before async_wrapper records its result: the
    waiter reports that result, not a killed job."""
    import threading
    job = tmp_path / "123.456"
    job.write_text(json.dumps({"started": 1, "finished": 0}))

    def wrapper_writes():
        job.write_text(json.dumps({"failed": True, "msg": "the real error"}))
    threading.Timer(0.5, wrapper_writes).start()
    assert migration_wait.result_after_exit(str(job), grace=5)["msg"] == "the real error"
    job.write_text(json.dumps({"started": 1, "finished": 0}))
    assert not migration_wait.job_finished(migration_wait.result_after_exit(str(job), grace=0.3))


def test_the_first_poll_may_come_before_the_job_made_the_keepalive_folder(tmp_path):
    path = tmp_path / "reports" / "sxm-keepalive-vm-1"
    migration_wait.touch(str(path))
    assert path.exists()


def test_a_job_killed_before_its_first_progress_is_found_dead_by_its_wrapper(tmp_path):
    """The progress file is an earlier step's (older than the job file): the job's
    async_wrapper, found by the jid on its command line, says whether the job lives."""
    progress = tmp_path / "progress.json"
    progress.write_text(json.dumps({"pid": os.getpid()}))
    job = tmp_path / "j424242.999"
    job.write_text(json.dumps({"started": True, "finished": False}))
    os.utime(progress, (time.time() - 60, time.time() - 60))     # an earlier step's
    wrapper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                "/tmp/x/async_wrapper.py", "j424242", "60"])
    deadline = time.monotonic() + 10
    # until the child has exec'd, its command line is still pytest's
    while b"j424242" not in open("/proc/%d/cmdline" % wrapper.pid, "rb").read() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert not migration_wait.job_died(str(job), str(progress), json.loads(progress.read_text()), "j424242.999")
    finally:
        wrapper.kill()
        wrapper.wait()
    assert migration_wait.job_died(str(job), str(progress), json.loads(progress.read_text()), "j424242.999")
    assert migration_wait.died(None)["error_code"] == "SXM_JOB_DIED"

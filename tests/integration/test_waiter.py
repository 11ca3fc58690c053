"""xapi.sxm.migration_wait run for real by ansible-playbook against a stand-in job (a small Python
script started with async, no pools needed): the job's own result comes back, progress lines
are printed, the keepalive file is touched while the job runs, and nothing is left behind."""

import json
import os
import re
import subprocess
import sys

from harness import REPO

# Stands in for vm_migrate: rewrites a progress file every 0.5 s, and records each time the
# modification time of the keepalive file, for the test to read afterwards.
JOB = r"""
import json, os, sys, time
progress, keepalive, seen, seconds, rc = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
start = time.time()
step = 0
while time.time() - start < seconds:
    state = {"phase": "starting" if step < 2 else "mirror", "bytes_done": step * 1048576,
             "bytes_total_estimate": 32 * 1048576, "fraction": step / 32.0, "rate_bytes_per_s": 2097152,
             "eta_s": None if step < 2 else 16 - step // 2, "disk": "0", "node": 1 + step // 6, "nodes": 3,
             "node_name": "snap%d" % (1 + step // 6), "elapsed_s": round(time.time() - start, 1)}
    with open(progress + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(progress + ".tmp", progress)
    try:
        mtime = os.stat(keepalive).st_mtime
    except FileNotFoundError:
        mtime = None
    with open(seen, "a") as f:
        f.write(json.dumps({"at": time.time(), "mtime": mtime}) + "\n")
    step += 1
    time.sleep(0.5)
if rc:
    print("the job gave up", file=sys.stderr)
sys.exit(rc)
"""

PLAYBOOK = """
- name: Wait for an async job with xapi.sxm.migration_wait
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Start the job
      ansible.builtin.command:
        argv: ["{{{{ ansible_playbook_python }}}}", "{tmp}/job.py", "{tmp}/progress.json",
               "{tmp}/keepalive", "{tmp}/seen.jsonl", "{seconds}", "{rc}"]
      async: 120
      poll: 0
      register: job

    - name: Wait for it
      xapi.sxm.migration_wait:
        jid: "{{{{ job.ansible_job_id }}}}"
        progress_file: "{tmp}/progress.json"
        keepalive_file: "{tmp}/keepalive"
        interval: 0.5
        progress_every: 2
        label: vm01
      register: waited
      ignore_errors: true

    - name: Keep its result for the test
      ansible.builtin.copy:
        content: "{{{{ waited | to_json }}}}"
        dest: "{tmp}/result.json"
        mode: "0600"

    - name: A job that never started (its task was skipped) is skipped too
      xapi.sxm.migration_wait:
        jid: "{{{{ never_started.ansible_job_id | default('') }}}}"
"""

PROGRESS_LINE = re.compile(r"^vm01: (starting|mirror), disk 0 node \d of 3 \(snap\d\): \d+\.\d of 32\.0 MiB, "
                           r"2\.0 MiB/s, ETA (\d+|\?) s$", re.M)
RECAP = re.compile(r"^localhost\s*:\s*(.*)$", re.M)


def run_waiter(tmp_path, seconds, rc):
    """Runs the playbook above; returns (recap counts, output, the wait task's registered result)."""
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "async").mkdir()
    playbook = tmp_path / "wait.yml"
    playbook.write_text(PLAYBOOK.format(tmp=tmp_path, seconds=seconds, rc=rc))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(playbook)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, "ansible-playbook failed (%d):\n%s" % (proc.returncode, output[-6000:])
    recap = RECAP.findall(proc.stdout)
    assert recap, output[-3000:]
    stats = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap[-1])}
    return stats, output, json.loads((tmp_path / "result.json").read_text())


def keepalive_samples(tmp_path):
    with open(tmp_path / "seen.jsonl") as f:
        return [json.loads(line) for line in f]


def assert_nothing_left(tmp_path):
    assert os.listdir(tmp_path / "async") == [], "job files left in the async dir"
    assert not (tmp_path / "keepalive").exists(), "keepalive file left behind"


def test_waits_prints_progress_and_keeps_the_job_alive(tmp_path):
    stats, output, result = run_waiter(tmp_path, seconds=8, rc=0)
    assert stats["failed"] == 0 and stats["ignored"] == 0 and stats["skipped"] == 1, output[-3000:]
    # the job's own result (ansible.builtin.command's), without the async bookkeeping
    assert result["rc"] == 0 and result["failed"] is False and result["changed"] is True
    assert {"cmd", "start", "end", "delta"} <= set(result), result
    assert not {"ansible_job_id", "started", "finished", "results_file"} & set(result), result
    assert result["polls"] >= 10, result
    assert result["waited_s"] >= 7, result
    lines = PROGRESS_LINE.findall(output)
    assert len(lines) >= 3, output[-3000:]
    assert "starting" in [phase for phase, _ in lines] and "mirror" in [phase for phase, _ in lines]
    samples = keepalive_samples(tmp_path)
    touched = [s for s in samples if s["mtime"] is not None]
    assert len({s["mtime"] for s in touched}) >= 5, samples
    assert max(s["at"] - s["mtime"] for s in touched) < 5, samples
    assert_nothing_left(tmp_path)


def test_a_failed_job_fails_the_wait_with_its_message(tmp_path):
    stats, output, result = run_waiter(tmp_path, seconds=1.5, rc=1)
    assert stats["ignored"] == 1, output[-3000:]
    assert result["failed"] is True and result["rc"] == 1, result
    assert result["msg"] == "non-zero return code", result
    assert "non-zero return code" in output.split("TASK [Wait for it]")[1]
    assert result["polls"] >= 1 and "ansible_job_id" not in result, result
    assert_nothing_left(tmp_path)

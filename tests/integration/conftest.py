"""Integration tests: the migrate_vm playbook run for real (ansible-playbook from .venv) against
two simulated pools, every migration run twice; the second run must change nothing."""

import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pool_vars(pool, user="root"):
    creds = (pool["username"], pool["password"]) if user == "root" else \
        (pool["pool_admin"]["username"], pool["pool_admin"]["password"])
    return {"url": pool["url"], "username": creds[0], "password": creds[1],
            "validate_certs": True, "ca_path": pool["ca_file"]}


RECAP = re.compile(r"^localhost\s*:\s*(.*)$", re.M)


def run_playbook(playbook, extra_vars, tmp_path, check=False, expect_failure=False):
    """Run a playbook of this repository; returns (the recap counts of localhost, output).
    Fails the test when ansible-playbook fails (or, with expect_failure, when it does not)."""
    vars_file = tmp_path / ("vars-%d.json" % len(list(tmp_path.glob("vars-*.json"))))
    vars_file.write_text(json.dumps(extra_vars))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           os.path.join(REPO, "playbooks", playbook), "-e", "@%s" % vars_file]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if expect_failure:
        assert proc.returncode != 0, "ansible-playbook should have failed:\n%s" % output[-3000:]
    else:
        assert proc.returncode == 0, "ansible-playbook failed (%d):\n%s" % (proc.returncode, output[-6000:])
    recap = RECAP.findall(proc.stdout)
    assert recap, output[-3000:]
    stats = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap[-1])}
    return stats, output


@pytest.fixture
def migrate(pools, tmp_path):
    """migrate(vm_uuid, check=False, user="root", expect_failure=False, **role_vars)
    -> (stats, sxm_result), or (stats, output) when a failure is expected."""
    def run(vm, check=False, user="root", expect_failure=False, **role_vars):
        extra = {"sxm_source": pool_vars(pools[0], user), "sxm_destination": pool_vars(pools[1], user),
                 "sxm_vm": vm, "sxm_report_dir": str(tmp_path / "reports")}
        extra.update(role_vars)
        stats, output = run_playbook("migrate_vm.yml", extra, tmp_path, check=check,
                                     expect_failure=expect_failure)
        if expect_failure:
            return stats, output
        result = None
        if not check:
            src_uuid = extra["sxm_vm"]
            with open(os.path.join(extra["sxm_report_dir"], "sxm-%s.json" % src_uuid)) as f:
                result = json.load(f)
        return stats, result
    return run


AMPLIFICATION = []


def record_amplification(tree, result):
    """Bytes written against the walk's minimum (issue 3: at most 1.1x) and against the sum of
    per-edge changes (the seed's minimum), kept for the summary printed after the tests."""
    row = {"tree": tree, "bytes_written": result["bytes_written"],
           "walk_minimum": result["walk_minimum_bytes"], "edge_minimum": result["edge_minimum_bytes"],
           "bytes_read": result["bytes_read"]}
    row["written_vs_walk"] = round(row["bytes_written"] / max(1, row["walk_minimum"]), 3)
    row["written_vs_edges"] = round(row["bytes_written"] / max(1, row["edge_minimum"]), 3)
    AMPLIFICATION.append(row)
    return row


def pytest_terminal_summary(terminalreporter):
    if not AMPLIFICATION:
        return
    out = os.path.join(REPO, "tests", "output")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "amplification.json"), "w") as f:
        json.dump(AMPLIFICATION, f, indent=1)
    write = terminalreporter.write_line
    write("")
    write("bytes written per tree (ratio to the walk's minimum, and to the sum of per-edge changes)")
    write("%-34s %12s %12s %12s %8s %8s" % ("tree", "written", "walk min", "edge min", "/walk", "/edges"))
    for r in AMPLIFICATION:
        write("%-34s %12d %12d %12d %8.3f %8.3f" % (r["tree"], r["bytes_written"], r["walk_minimum"],
                                                   r["edge_minimum"], r["written_vs_walk"], r["written_vs_edges"]))

"""Helpers of the integration tests: run a playbook of this repository, pool variables, the
amplification figures. (A module of its own: test files cannot import one of several
conftest.py files by name.)"""

import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pool_vars(pool, user="root"):
    account = pool["accounts"].get(user, {})
    creds = (pool["username"], pool["password"]) if user == "root" else (account["username"], account["password"])
    return {"url": pool["url"], "username": creds[0], "password": creds[1],
            "validate_certs": True, "ca_path": pool["ca_file"]}


RECAP = re.compile(r"^localhost\s*:\s*(.*)$", re.M)


def run_playbook(playbook, extra_vars, tmp_path, check=False, expect_failure=False, diff=False):
    """Run a playbook of this repository; returns (the recap counts of localhost, output).
    Fails the test when ansible-playbook fails (or, with expect_failure, when it does not)."""
    vars_file = tmp_path / ("vars-%d.json" % len(list(tmp_path.glob("vars-*.json"))))
    vars_file.write_text(json.dumps(extra_vars))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           os.path.join(REPO, "playbooks", playbook), "-e", "@%s" % vars_file]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
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


def amplification_row(tree, result):
    """Bytes written against the walk's minimum (issue 3: at most 1.1x) and against the sum of
    per-edge changes (the seed's minimum)."""
    row = {"tree": tree, "bytes_written": result["bytes_written"],
           "walk_minimum": result["walk_minimum_bytes"], "edge_minimum": result["edge_minimum_bytes"],
           "bytes_read": result["bytes_read"]}
    row["written_vs_walk"] = round(row["bytes_written"] / max(1, row["walk_minimum"]), 3)
    row["written_vs_edges"] = round(row["bytes_written"] / max(1, row["edge_minimum"]), 3)
    return row

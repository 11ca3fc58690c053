"""Integration tests: the migrate_vm playbook run for real (ansible-playbook from .venv) against
two simulated pools, every migration run twice; the second run must change nothing."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pool_vars(pool, user="root"):
    creds = (pool["username"], pool["password"]) if user == "root" else \
        (pool["pool_admin"]["username"], pool["pool_admin"]["password"])
    return {"url": pool["url"], "username": creds[0], "password": creds[1],
            "validate_certs": True, "ca_path": pool["ca_file"]}


def run_playbook(playbook, extra_vars, tmp_path, check=False):
    """Run a playbook of this repository; returns (stats of localhost, the sxm_result fact or
    None, full output). Fails the test when ansible-playbook fails."""
    vars_file = tmp_path / ("vars-%d.json" % len(list(tmp_path.glob("vars-*.json"))))
    vars_file.write_text(json.dumps(extra_vars))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           os.path.join(REPO, "playbooks", playbook), "-e", "@%s" % vars_file]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook printed no JSON:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:]))
    if proc.returncode != 0:
        failures = [t["hosts"] for p in out["plays"] for t in p["tasks"]
                    if any(h.get("failed") for h in t["hosts"].values())]
        raise AssertionError("ansible-playbook failed (%d): %s" % (proc.returncode, json.dumps(failures)[:4000]))
    stats = out["stats"]["localhost"]
    result = None
    for play in out["plays"]:
        for task in play["tasks"]:
            host = task["hosts"].get("localhost", {})
            facts = host.get("ansible_facts", {})
            if "sxm_result" in facts:
                result = facts["sxm_result"]
    return stats, result, out


@pytest.fixture
def migrate(pools, tmp_path):
    """migrate(vm_uuid, check=False, user="root", **role_vars) -> (stats, sxm_result)."""
    def run(vm, check=False, user="root", **role_vars):
        extra = {"sxm_source": pool_vars(pools[0], user), "sxm_destination": pool_vars(pools[1], user),
                 "sxm_vm": vm, "sxm_report_dir": str(tmp_path / "reports")}
        extra.update(role_vars)
        stats, result, _ = run_playbook("migrate_vm.yml", extra, tmp_path, check=check)
        return stats, result
    return run

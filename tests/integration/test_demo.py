"""The README's first command, `make demo` (playbooks/demo.yml), runs and shows two equal trees."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_migrates_and_prints_both_trees():
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                           "playbooks/demo.yml"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    out = proc.stdout
    rows = [line for line in out.splitlines() if "v2-abandoned" in line]
    assert len(rows) == 1 and rows[0].count("v2-abandoned") == 2, out[-3000:]
    assert "trees equal, 10 disks equal byte for byte" in out
    assert "failed=0" in out

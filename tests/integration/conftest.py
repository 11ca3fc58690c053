"""Integration tests: the migrate_vm playbook run for real (ansible-playbook from .venv) against
two simulated pools, every migration run twice; the second run must change nothing."""

import json
import os

import pytest

from harness import REPO, amplification_row, pool_vars, run_playbook

AMPLIFICATION = []  # the rows of every test, gathered where the summary is printed


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


@pytest.fixture
def amplification(request):
    """amplification(result, tree): bytes written must stay within 1.1x the walk's minimum
    (issue 3). The row travels as a user property, so that it reaches the summary from
    pytest-xdist's workers too."""
    def check(result, tree):
        row = amplification_row(tree, result)
        request.node.user_properties.append(("amplification", row))
        assert row["written_vs_walk"] <= 1.1, row
        return row
    return check


def pytest_runtest_logreport(report):
    if report.when == "call":
        AMPLIFICATION.extend(value for key, value in report.user_properties if key == "amplification")


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

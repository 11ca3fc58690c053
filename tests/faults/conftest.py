"""The fault matrix uses the integration tests' helpers, and reports its table at the end."""

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
sys.path.insert(0, INTEGRATION)

# the integration tests' `migrate` fixture (the role from pool 0 to pool 1)
_spec = importlib.util.spec_from_file_location("integration_conftest", os.path.join(INTEGRATION, "conftest.py"))
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)
migrate = _integration.migrate


ROWS = []  # every case's row, gathered where the table is printed


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: the fault-matrix cases that make test runs")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        from ansible_dirs import isolate_worker
        config.sxm_worker_folder = isolate_worker(worker)


def pytest_unconfigure(config):
    folder = getattr(config, "sxm_worker_folder", None)
    if folder:
        from ansible_dirs import remove_if_empty
        remove_if_empty(folder)


def pytest_runtest_logreport(report):
    if report.when == "call":
        ROWS.extend(value for key, value in report.user_properties if key == "fault_matrix_row")


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    out = os.path.join(os.path.dirname(HERE), "output")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "fault-matrix.json"), "w") as f:
        json.dump(ROWS, f, indent=1)
    keys = ["step", "first_run", "rerun", "byte_mismatches", "source_changes", "leftover_objects",
            "pending_tasks", "lock_keys", "sessions", "ansible_tmp", "ansible_local_caches",
            "payload_dirs", "ansible_async", "secrets"]
    terminalreporter.write_line("")
    terminalreporter.write_line("| case | " + " | ".join(keys) + " |")
    terminalreporter.write_line("|" + " --- |" * (len(keys) + 1))
    for row in ROWS:
        terminalreporter.write_line("| %s | %s |" % (row["case"], " | ".join(str(row.get(k, "")) for k in keys)))

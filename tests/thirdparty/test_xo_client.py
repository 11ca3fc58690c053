"""Xen Orchestra's own XAPI client against the simulator: the npm package ``xen-api`` (pinned
in tests/thirdparty/xo/package.json, unmodified, installed by tools/setup_node_clients.sh) runs
each check of tests/thirdparty/xo/conformance.mjs against pool 0, the way Xen Orchestra uses it:
connect and log out, the object cache and its initial load, calls and their XAPI errors, Async
calls and their tasks, the event loop (event.inject then event.from), barrier(), and the HTTP
data handlers through putResource/getResource. TLS is verified against the pool's ca_file."""

import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
XO_DIR = os.path.join(HERE, "xo")
PROGRAM = os.path.join(XO_DIR, "conformance.mjs")
BOGUS_REF = "OpaqueRef:00000000-dead-beef-0000-000000000000"
TLS_ERRORS = {"DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN",
              "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"}


def _shorten(calls):
    """The initial fetch is one get_all_records per class: count those runs instead."""
    out, run = [], []

    def flush():
        out.extend(run if len(run) < 3 else ["(%d x get_all_records)" % len(run)])
        run.clear()

    for call in calls:
        if call.endswith(".get_all_records"):
            run.append(call)
            continue
        flush()
        out.append(call)
    flush()
    return out


def run_check(state_dir, name):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run make setup (tools/setup_node_clients.sh)")
    if not os.path.isfile(os.path.join(XO_DIR, "node_modules", "xen-api", "package.json")):
        pytest.fail("tests/thirdparty/xo/node_modules lacks xen-api: run make setup "
                    "(tools/setup_node_clients.sh)")
    proc = subprocess.run(
        [node, PROGRAM, os.path.join(state_dir, "pools.json"), name],
        cwd=XO_DIR, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        pytest.fail("%s: no JSON result (exit %s)\nstdout: %s\nstderr: %s"
                    % (name, proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:]))
    if proc.returncode != 0 or not result.get("ok"):
        pytest.fail("%s failed (exit %s): %s\nobservations: %s\ncalls: %s\nhttp: %s\nwarnings: %s"
                    % (name, proc.returncode, json.dumps(result.get("error"), indent=1),
                       json.dumps(result.get("observations")),
                       " ".join(_shorten(result.get("calls", []))[-40:]),
                       json.dumps(result.get("http")), json.dumps(result.get("warnings"))[:2000]))
    assert result["check"] == name
    return result


@pytest.fixture(scope="module")
def check(pools, state_dir):
    return lambda name: run_check(state_dir, name)


def test_connect_status_logout_and_wrong_password(check):
    result = check("connect")
    obs = result["observations"]
    assert obs["status_after_connect"] == "connected"
    assert obs["status_after_disconnect"] == "disconnected"
    assert obs["list_methods"] == "ok" and obs["classes_from_list_methods"] > 10
    assert obs["session_invalid_after_disconnect"] is True
    assert obs["wrong_password"]["code"] == "SESSION_AUTHENTICATION_FAILED"
    # what the client does on connect, in this order
    assert result["calls"][:3] == ["session.login_with_password", "pool.get_all_records",
                                   "system.listMethods"]
    assert "event.inject" in result["calls"]


def test_tls_refused_without_the_pool_certificate(check):
    obs = check("tls_refused")["observations"]
    for variant in ("no extra CA", "another pool's certificate"):
        assert obs[variant]["error"] in TLS_ERRORS, obs
        assert obs[variant]["control_login_with_allow_unauthorized"] == "ok"


def test_object_cache_initial_load(check):
    obs = check("objects")["observations"]
    types = obs["cached_types"]
    assert types["pool"] == 1 and types["host"] == 1
    assert types["SR"] >= 2 and types["PBD"] >= 2
    assert types["VM"] >= 1 and types["VBD"] >= 1 and types["VDI"] >= 1 and types["VIF"] >= 1
    assert types["network"] >= 1 and types["PIF"] >= 1
    assert obs["host"]["address"] == "127.0.0.1"
    assert obs["control_domains"] == 1 and obs["default_templates"] >= 3


def test_call_results_and_xapi_errors(check):
    obs = check("call")["observations"]
    assert obs["handle_invalid"] == ["VM", BOGUS_REF]
    assert obs["method_unknown"] == ["VM.no_such_method"]
    assert obs["parameter_count_mismatch"][0] == "pool.set_name_description"
    assert obs["srs"] >= 2


def test_call_async_tasks(check):
    obs = check("callAsync")["observations"]
    assert obs["clone"] == "ok" and obs["vdi_create_destroy"] == "ok"
    assert obs["failed_task"]["code"] == "VM_BAD_POWER_STATE"
    assert obs["failed_task"]["params"][1:] == ["paused, suspended, running", "halted"]
    assert obs["async_calls"] == ["Async.VM.clone", "Async.VM.hard_shutdown",
                                  "Async.VDI.create", "Async.VDI.destroy"]
    assert obs["tasks_destroyed"] is True


def test_events_reach_the_object_cache(check):
    obs = check("events")["observations"]
    assert set(obs["latency_ms"]) == {"add", "set_name_label", "add_to_other_config",
                                      "remove_from_other_config", "del"}
    assert obs["event_inject_args"] == ["* session id *", "pool", "OpaqueRef"]
    assert obs["timeout_param"] == 60.1
    classes = obs["event_from_classes"]
    assert {"pool", "host", "SR", "VDI", "VBD", "VM", "VIF", "network", "PIF", "task"} \
        <= set(classes)


def test_barrier(check):
    obs = check("barrier")["observations"]
    assert obs["barrier_key_value"] == "ms timestamp"
    assert obs["leftover_keys"] == "none"
    assert "stale" in obs["removed"]


def test_resources_import_export_raw(check):
    obs = check("resources")["observations"]
    assert obs["bytes_read"] == 4 << 20
    assert obs["sha256_read"] == obs["sha256_written"]
    assert [p["content_length"] for p in obs["put_requests"]] == [0, 4 << 20]
    assert obs["tasks_destroyed"] is True

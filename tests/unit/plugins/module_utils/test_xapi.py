"""xapi.py: failure messages that name the object and what to do, the retry back-off, task
results, and a real Connection to a simulated pool: a wrong password, a task that never
finishes (WaitTimeout, task destroyed) and a task that fails (XAPI's code)."""

import random
import time
import uuid

import pytest
from xapisim import scenario

from ansible_collections.xapi.sxm.plugins.module_utils import xapi
from ansible_collections.xapi.sxm.plugins.module_utils.errors import WaitTimeout, XapiFailure
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection

URL = "https://pool.example/"


def test_explain_names_the_object_and_what_to_do():
    text = xapi.explain("SESSION_AUTHENTICATION_FAILED", ["root", "Authentication failure"], URL,
                        "session.login_with_password")
    assert "'root'" in text and "check the credentials" in text
    assert "(pool %s, call session.login_with_password)" % URL in text
    text = xapi.explain("HANDLE_INVALID", ["VDI", "OpaqueRef:7"], URL)
    assert "the VDI OpaqueRef:7 no longer exists (pool %s)" % URL in text and "run again" in text
    text = xapi.explain("SR_FULL", ["100", "50"], URL)
    assert "requested 100 bytes, at most 50" in text and "free space" in text
    text = xapi.explain("VM_BAD_POWER_STATE", ["OpaqueRef:v", "halted", "running"], URL)
    assert text.startswith("VM OpaqueRef:v is running but must be halted")
    assert xapi.explain("VDI_IN_USE", [], URL).startswith("disk  is in use ()"), "missing params are padded"


def test_explain_of_an_unknown_code_falls_back_to_code_and_params():
    assert xapi.explain("SOMETHING_NEW", ["a", 1], URL, "VM.frob") == \
        "XAPI error SOMETHING_NEW ['a', 1] (pool %s, call VM.frob)" % URL


def test_backoff_grows_with_the_attempt_within_its_jitter():
    samples = {attempt: [xapi.backoff(2.0, attempt) for dummy in range(300)] for attempt in (1, 2, 3)}
    for attempt, values in samples.items():
        assert all(0.5 * 2.0 * attempt <= v <= 1.5 * 2.0 * attempt for v in values), attempt
        assert max(values) - min(values) > 0.5 * 2.0 * attempt, "no jitter"
    assert min(samples[3]) >= max(samples[1])
    means = [sum(v) / len(v) for v in samples.values()]
    assert means == sorted(means)


def test_backoff_at_the_jitter_bounds(monkeypatch):
    for factor in (0.5, 1.5):
        monkeypatch.setattr(random, "uniform", lambda low, high, factor=factor: factor)
        assert xapi.backoff(1.0, 4) == 4.0 * factor


def test_parse_task_result():
    assert xapi.parse_task_result("<value>OpaqueRef:abc</value>") == "OpaqueRef:abc"
    assert xapi.parse_task_result("<value><array><data><value>OpaqueRef:a</value><value>OpaqueRef:b</value>"
                                  "</data></array></value>") == ["OpaqueRef:a", "OpaqueRef:b"]
    assert xapi.parse_task_result("") == ""
    assert xapi.parse_task_result(None) == ""
    assert xapi.parse_task_result("not xml") == "not xml"


def connection(pool, password=None):
    return Connection(pool["url"], pool["username"], password or pool["password"], ca_path=pool["ca_file"])


@pytest.fixture
def conn(pools):
    c = connection(pools[0]).login()
    yield c
    c.logout()


def test_a_wrong_password_says_so_without_the_password(pools):
    secret = "wrong-%s" % uuid.uuid4().hex
    with pytest.raises(XapiFailure) as info:
        connection(pools[0], secret).login()
    assert info.value.code == "SESSION_AUTHENTICATION_FAILED"
    assert "wrong username or password" in info.value.message and repr(pools[0]["username"]) in info.value.message
    assert secret not in info.value.message and secret not in repr(info.value.params)


def test_a_task_that_never_finishes_times_out_and_is_destroyed(conn):
    task = conn.call("task.create", "stuck", "")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        conn.wait_task(task, poll=0.2, timeout=1)
    assert time.monotonic() - started < 1 + 2
    assert info.value.code == "SXM_TIMEOUT" and "'stuck'" in info.value.message
    with pytest.raises(XapiFailure) as gone:
        conn.call("task.get_record", task)
    assert gone.value.code == "HANDLE_INVALID"


def test_a_failed_task_raises_xapis_code_and_is_destroyed(conn, connect):
    x = connect(0)
    vm = scenario.create_vm(x, "xapi-test-%s" % uuid.uuid4().hex[:6], [])
    try:
        task = conn.call("Async.VM.clean_shutdown", vm)      # the VM is halted: the task fails
        with pytest.raises(XapiFailure) as info:
            conn.wait_task(task, poll=0.1)
        assert info.value.code == "VM_BAD_POWER_STATE"
        assert info.value.params[0] == vm and info.value.params[2] == "halted"
        assert "is halted but must be" in info.value.message
        with pytest.raises(XapiFailure):
            conn.call("task.get_record", task)
    finally:
        x.xenapi.VM.destroy(vm)


@pytest.mark.parametrize("code, params, words", [
    ("SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""], "ran out of space"),
    ("VDI_IO_ERROR", ["Device I/O errors"], "SR that is full"),
    ("DUPLICATE_MAC_SEED", ["seed-1"], "halt one of them"),
])
def test_explain_gives_a_cause_and_run_again(code, params, words):
    text = xapi.explain(code, params, URL)
    assert words in text and "run again" in text and URL in text


def test_a_session_xapi_expired_is_renewed_and_remembered_as_a_secret(pools, connect):
    """XenAPI logs in again when a call gets SESSION_INVALID (XAPI destroyed the session after
    its inactivity timeout, cut here to 0.5 s); the connection keeps every session ref it had,
    for the modules' no_log_values."""
    import json
    import time
    from xapisim import client

    def timeout(seconds):
        x = connect(0)
        body = json.dumps({"kind": "session_timeout", "seconds": seconds}).encode()
        status, dummy, body = client.http_request(pools[0], "POST", "/xapisim/faults", session=x, body=body)
        assert status == 200, body

    conn = xapi.Connection(pools[0]["url"], pools[0]["username"], pools[0]["password"],
                           ca_path=pools[0]["ca_file"]).login()
    first = conn.session_ref
    timeout(0.5)
    try:
        time.sleep(1.0)
        assert conn.call("pool.get_all")            # renewed, not failed
    finally:
        timeout(86400)
    assert conn.session_ref != first and {first, conn.session_ref} <= conn.session_refs
    conn.logout()

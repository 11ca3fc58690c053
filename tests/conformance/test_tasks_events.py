"""Tasks, Async calls and event.from (XAPI-FACTS §7; checklist fact 14)."""

import threading
import time

import pytest
import XenAPI


def wait_task(xapi, task, timeout=10):
    deadline = time.monotonic() + timeout
    while xapi.xenapi.task.get_status(task) == "pending":
        assert time.monotonic() < deadline, "task still pending"
        time.sleep(0.05)
    return xapi.xenapi.task.get_record(task)


def test_async_call_returns_a_task_with_an_xmlrpc_result(xapi):
    """Fact 14: Async.<Class>.<msg> returns a task; on success status=success, progress=1.0,
    finished set, result = the XML-RPC serialisation of the value (no <string> tags)."""
    task = xapi.xenapi.Async.network.create({"name_label": "async-net", "name_description": "",
                                             "MTU": "1500", "other_config": {}})
    assert task.startswith("OpaqueRef:")
    rec = wait_task(xapi, task)
    assert rec["status"] == "success" and float(rec["progress"]) == 1.0
    assert rec["finished"].value != "19700101T00:00:00Z"
    net = rec["result"][len("<value>"):-len("</value>")]
    assert rec["result"] == "<value>%s</value>" % net
    assert xapi.xenapi.network.get_name_label(net) == "async-net"
    xapi.xenapi.network.destroy(net)
    xapi.xenapi.task.destroy(task)


def test_failed_async_call_sets_error_info(xapi):
    """Fact 14: a failed task has status=failure and error_info = [code, params...]."""
    task = xapi.xenapi.Async.network.destroy("OpaqueRef:gone")
    rec = wait_task(xapi, task)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["HANDLE_INVALID", "network", "OpaqueRef:gone"]


def test_event_from_wakes_on_a_task_change(xapi, connect):
    """§7: event.from(["task/<ref>"], token, timeout) returns the task's mod events as soon as
    it changes, and a new token; with nothing new it waits for the timeout and returns none."""
    event_from = getattr(xapi.xenapi.event, "from")
    task = xapi.xenapi.task.create("watched", "")
    first = event_from(["task/%s" % task], "", 1.0)
    assert [e["ref"] for e in first["events"]] == [task]
    token = first["token"]
    quiet_start = time.monotonic()
    quiet = event_from(["task/%s" % task], token, 0.5)
    assert quiet["events"] == [] and time.monotonic() - quiet_start >= 0.45
    other = connect(0)  # a XenAPI session is not thread-safe: the change comes from another
    timer = threading.Timer(0.3, lambda: other.xenapi.task.set_status(task, "success"))
    timer.start()
    changed = event_from(["task/%s" % task], quiet["token"], 10.0)
    timer.join()
    assert changed["events"] and changed["events"][-1]["operation"] == "mod"
    assert changed["events"][-1]["snapshot"]["status"] == "success"
    assert changed["token"] != quiet["token"]
    xapi.xenapi.task.destroy(task)


def test_event_from_bad_token_and_any_class(xapi):
    """§7: EVENT_FROM_TOKEN_PARSE_FAILURE [token] for a token that is not ``<id>,<id>``.
    Xapi_event.Subscription.of_string accepts any class name (lower-cased), so a class that has
    no objects, or that XAPI does not know, is no error: it matches nothing."""
    event_from = getattr(xapi.xenapi.event, "from")
    for token in ("not-a-token", "12"):
        with pytest.raises(XenAPI.Failure) as e:
            event_from(["task"], token, 0.1)
        assert e.value.details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", token]
    quiet = event_from(["nosuchclass", "host_metrics", "VTPM"], "", 0.1)
    assert all(ev["class"] == "host_metrics" for ev in quiet["events"])
    first, second = quiet["token"].split(",")
    assert len(first) == len(second) == 20 and first.isdigit()

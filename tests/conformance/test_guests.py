"""Guests that behave like guests (xen-api master: Xapi_vm_lifecycle.check_op_for_feature,
xenopsd's domain_shutdown_ack_timeout, xapi_vm.ml start/shutdown): without tools a running HVM
guest neither lists nor completes the operations that need its help; hard operations always
work; with tools everything completes and the tools report guest metrics."""

import time

from xapisim import scenario
from xapisim.testing import error_of, set_guest

MiB = 1 << 20
NULL = "OpaqueRef:NULL"
NEEDS_GUEST = {"clean_shutdown", "clean_reboot", "suspend", "checkpoint", "pool_migrate"}


def running_vm(pools, x, name, **guest):
    vm = scenario.create_vm(x, name, [1 * MiB])
    set_guest(pools[0], x, vm, **guest)
    x.xenapi.VM.start(vm, False, False)
    return vm


def test_without_tools_clean_shutdown_times_out(xapi, pools):
    vm = running_vm(pools, xapi, "no-tools", tools=False, ack_timeout=1)
    rec = xapi.xenapi.VM.get_record(vm)
    assert rec["guest_metrics"] == NULL
    assert not NEEDS_GUEST & set(rec["allowed_operations"])
    assert {"hard_shutdown", "hard_reboot", "snapshot"} <= set(rec["allowed_operations"])
    started = time.monotonic()
    assert error_of(xapi.xenapi.VM.clean_shutdown, vm) == ["VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", vm]
    assert time.monotonic() - started >= 1.0
    assert error_of(xapi.xenapi.VM.clean_reboot, vm) == ["VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", vm]
    assert error_of(xapi.xenapi.VM.suspend, vm) == ["VM_FAILED_SUSPEND_ACKNOWLEDGMENT", vm]
    assert error_of(xapi.xenapi.VM.checkpoint, vm, "cp") == ["VM_FAILED_SUSPEND_ACKNOWLEDGMENT", vm]
    assert xapi.xenapi.VM.get_power_state(vm) == "Running"
    assert xapi.xenapi.VM.get_snapshots(vm) == [] and xapi.xenapi.VM.get_current_operations(vm) == {}
    xapi.xenapi.VM.hard_shutdown(vm)
    assert xapi.xenapi.VM.get_power_state(vm) == "Halted"


def test_without_tools_hard_shutdown_during_a_clean_one(xapi, pools, connect):
    """While a clean shutdown waits, current_operations shows it and a hard_shutdown (allowed
    concurrently) halts the VM, which ends the wait."""
    vm = running_vm(pools, xapi, "no-tools-hard", tools=False, ack_timeout=30)
    task = xapi.xenapi.Async.VM.clean_shutdown(vm)
    deadline = time.monotonic() + 10
    while "clean_shutdown" not in xapi.xenapi.VM.get_current_operations(vm).values():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert error_of(xapi.xenapi.VM.suspend, vm)[0] == "OTHER_OPERATION_IN_PROGRESS"
    other = connect(0)
    other.xenapi.VM.hard_shutdown(vm)
    while xapi.xenapi.task.get_status(task) == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert xapi.xenapi.VM.get_power_state(vm) == "Halted"
    assert xapi.xenapi.VM.get_current_operations(vm) == {}


def test_vm_shutdown_falls_back_to_hard(xapi, pools):
    """xapi_vm.ml shutdown: a clean shutdown that fails becomes a hard one."""
    vm = running_vm(pools, xapi, "no-tools-shutdown", tools=False, ack_timeout=0.5)
    xapi.xenapi.VM.shutdown(vm)
    assert xapi.xenapi.VM.get_power_state(vm) == "Halted"


def test_with_tools_everything_completes(xapi, pools):
    vm = running_vm(pools, xapi, "tools", tools=True)
    rec = xapi.xenapi.VM.get_record(vm)
    assert NEEDS_GUEST <= set(rec["allowed_operations"])
    gm = xapi.xenapi.VM_guest_metrics.get_record(rec["guest_metrics"])
    assert gm["PV_drivers_detected"] and gm["PV_drivers_version"]["major"]
    assert gm["other"]["feature-shutdown"] == "1" and gm["networks"]["0/ip"].startswith("10.0.0.")
    metrics = xapi.xenapi.VM_metrics.get_record(rec["metrics"])
    assert metrics["current_domain_type"] == "hvm" and metrics["VCPUs_number"] == "1"
    xapi.xenapi.VM.clean_reboot(vm)
    assert xapi.xenapi.VM.get_guest_metrics(vm) not in (rec["guest_metrics"], NULL)
    cp = xapi.xenapi.VM.checkpoint(vm, "cp")
    assert xapi.xenapi.VM.get_power_state(cp) == "Suspended"
    xapi.xenapi.VM.pool_migrate(vm, rec["resident_on"], {})
    xapi.xenapi.VM.suspend(vm)
    xapi.xenapi.VM.resume(vm, False, False)
    gm_before_halt = xapi.xenapi.VM.get_guest_metrics(vm)
    xapi.xenapi.VM.clean_shutdown(vm)
    assert xapi.xenapi.VM.get_power_state(vm) == "Halted"
    # a halted VM keeps its tools' last report; the next start clears it
    assert xapi.xenapi.VM.get_guest_metrics(vm) == gm_before_halt


def test_pv_guest_needs_no_tools(xapi, pools):
    """has_definitely_booted_pv: a PV guest supports every operation implicitly."""
    vm = scenario.create_vm(xapi, "pv-guest", [1 * MiB])
    xapi.xenapi.VM.set_domain_type(vm, "pv")
    xapi.xenapi.VM.start(vm, False, False)
    assert NEEDS_GUEST <= set(xapi.xenapi.VM.get_allowed_operations(vm))
    xapi.xenapi.VM.clean_shutdown(vm)
    assert xapi.xenapi.VM.get_power_state(vm) == "Halted"


def test_installing_tools_in_a_running_guest(xapi, pools):
    vm = running_vm(pools, xapi, "later-tools", tools=False)
    assert "clean_shutdown" not in xapi.xenapi.VM.get_allowed_operations(vm)
    set_guest(pools[0], xapi, vm, tools=True)
    assert "clean_shutdown" in xapi.xenapi.VM.get_allowed_operations(vm)
    assert xapi.xenapi.VM.get_guest_metrics(vm) != NULL
    xapi.xenapi.VM.clean_shutdown(vm)
    assert xapi.xenapi.VM.get_power_state(vm) == "Halted"


def test_guest_endpoint_refuses_nonsense(xapi, pools):
    from xapisim import client
    vm = scenario.create_vm(xapi, "guest-endpoint", [])
    for body in (b'{"tools": "yes"}', b'{"ack_timeout": -1}', b"not json"):
        status, _, _ = client.http_request(pools[0], "POST", "/xapisim/guest",
                                           {"vm": xapi.xenapi.VM.get_uuid(vm)}, xapi, body)
        assert status == 400
    status, _, _ = client.http_request(pools[0], "POST", "/xapisim/guest",
                                       {"vm": xapi.xenapi.VM.get_uuid(vm), "session_id": "x"},
                                       None, b"{}")
    assert status == 401

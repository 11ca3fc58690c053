"""What a fresh pool holds and what clients read on connect (XAPI-FACTS §7, §9; xen-api master
gen_server.ml, xapi_event.ml): every class of the datamodel answers get_all_records, the host's
metrics, CPUs, certificate, the SM plugins, a control domain, stock templates; system.listMethods,
event.inject and the Class_message wire names."""

import ssl
import xmlrpc.client

import pytest

from xapisim.testing import error_of
from xapisim.model import datamodel

NULL = "OpaqueRef:NULL"
# classes Xen Orchestra's client and community.general read when they connect
READ_ON_CONNECT = ("VM_metrics", "VM_guest_metrics", "host_metrics", "host_cpu", "PIF_metrics",
                   "VLAN", "Bond", "SM", "message", "console", "VTPM", "pool_update",
                   "VM_appliance", "Certificate", "PCI", "PGPU", "VGPU", "GPU_group")


def test_every_class_with_records_answers(xapi):
    """§9: every class of datamodel-full.json that has get_all_records answers it (empty where
    this pool has none), and get_record of each object it lists."""
    classes = [name for name, cls in datamodel().classes.items() if "get_all_records" in cls.messages]
    assert set(READ_ON_CONNECT) <= set(classes) and len(classes) > 60
    for name in classes:
        records = getattr(xapi.xenapi, name).get_all_records()
        for ref, rec in records.items():
            assert getattr(xapi.xenapi, name).get_record(ref)["uuid"] == rec["uuid"]


def test_fresh_pool_objects(xapi):
    """A fresh pool: host metrics, one host_cpu per CPU, the host certificate, SM plugins for the
    SR types present, a PIF with metrics, the control domain, stock default templates."""
    host = xapi.xenapi.host.get_all()[0]
    rec = xapi.xenapi.host.get_record(host)
    metrics = xapi.xenapi.host_metrics.get_record(rec["metrics"])
    assert metrics["live"] and int(metrics["memory_total"]) > int(metrics["memory_free"]) > 0
    assert len(rec["host_CPUs"]) == 2
    assert {xapi.xenapi.host_cpu.get_number(c) for c in rec["host_CPUs"]} == {"0", "1"}
    assert [xapi.xenapi.Certificate.get_host(c) for c in rec["certificates"]] == [host]
    sm_types = {r["type"] for r in xapi.xenapi.SM.get_all_records().values()}
    assert {r["type"] for r in xapi.xenapi.SR.get_all_records().values()} <= sm_types
    for pif in rec["PIFs"]:
        assert xapi.xenapi.PIF_metrics.get_record(xapi.xenapi.PIF.get_metrics(pif))["carrier"]
    dom0 = rec["control_domain"]
    d = xapi.xenapi.VM.get_record(dom0)
    assert d["is_control_domain"] and d["domid"] == "0" and d["power_state"] == "Running"
    assert d["resident_on"] == host and not d["is_a_template"] and d["consoles"]
    assert xapi.xenapi.VM_metrics.get_current_domain_type(d["metrics"]) == "pv"
    templates = [r for r in xapi.xenapi.VM.get_all_records().values()
                 if r["is_a_template"] and not r["is_a_snapshot"]]
    assert len(templates) >= 3 and all(t["is_default_template"] for t in templates)
    # Xapi_vm_helpers.set_is_a_template: templates have no metrics
    assert all(t["metrics"] == NULL for t in templates)
    assert "provision" in templates[0]["allowed_operations"]
    assert "start" not in templates[0]["allowed_operations"]


def test_control_domain_refuses_what_xapi_refuses(xapi):
    """check_operation_error: dom0 allows only a few operations; its VCPUs and destroy never."""
    dom0 = xapi.xenapi.host.get_control_domain(xapi.xenapi.host.get_all()[0])
    assert error_of(xapi.xenapi.VM.snapshot, dom0, "s") == \
        ["OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain"]
    assert error_of(xapi.xenapi.VM.set_VCPUs_max, dom0, "4") == \
        ["OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0"]
    assert error_of(xapi.xenapi.VM.hard_shutdown, dom0)[0] == "OPERATION_NOT_ALLOWED"
    assert sorted(xapi.xenapi.VM.get_allowed_operations(dom0)) == \
        ["changing_dynamic_range", "changing_memory_limits", "changing_static_range",
         "metadata_export"]


def test_metrics_follow_their_vm(xapi):
    """A VM gets its own VM_metrics (a clone a copy of them), destroyed with it."""
    from xapisim import scenario
    vm = scenario.create_vm(xapi, "with-metrics", [])
    metrics = xapi.xenapi.VM.get_metrics(vm)
    assert xapi.xenapi.VM_metrics.get_current_domain_type(metrics) == "unspecified"
    clone = xapi.xenapi.VM.clone(vm, "its clone")
    assert xapi.xenapi.VM.get_metrics(clone) not in (metrics, NULL)
    xapi.xenapi.VM.destroy(clone)
    assert metrics in xapi.xenapi.VM_metrics.get_all()
    xapi.xenapi.VM.destroy(vm)
    assert metrics not in xapi.xenapi.VM_metrics.get_all()


def test_list_methods_without_session(pools):
    """gen_server.ml: system.listMethods answers every synchronous wire name, without a session;
    over XML-RPC the array is bare (no Status/Value struct, api_server.ml)."""
    context = ssl.create_default_context(cafile=pools[0]["ca_file"])
    proxy = xmlrpc.client.ServerProxy(pools[0]["url"], context=context)
    methods = proxy.system.listMethods()
    assert "VM.get_all_records" in methods and "event.from" in methods
    assert "VM_metrics.get_record" in methods and not any(m.startswith("Async.") for m in methods)


def test_alternative_wire_names(xapi):
    """Datamodel_utils.alternative_wire_name: Class_message is accepted for every message."""
    assert xapi.xenapi.VM_get_all() == xapi.xenapi.VM.get_all()
    events = xapi.xenapi.event_from(["pool"], "", 0.1)
    assert events["events"] and events["events"][0]["class"] == "pool"
    assert error_of(xapi.xenapi.VM_no_such_message)[0] == "MESSAGE_METHOD_UNKNOWN"


def test_event_inject_is_a_barrier(xapi):
    """Xapi_event.inject touches the row and returns the token just before that event: an
    event.from with it returns the touch at once (Xen Orchestra's barrier)."""
    pool = xapi.xenapi.pool.get_all()[0]
    token = xapi.xenapi.event.inject("pool", pool)
    events = xapi.xenapi.event_from(["pool"], token, 5.0)["events"]
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("pool", "mod", pool)]
    assert error_of(xapi.xenapi.event.inject, "VM", pool) == ["HANDLE_INVALID", "VM", pool]


@pytest.mark.parametrize("cls", ["host_metrics", "VTPM", "message", "SM"])
def test_event_from_any_class(xapi, cls):
    """event.from accepts every class XAPI knows; a first call returns its objects."""
    events = xapi.xenapi.event_from([cls], "", 0.1)["events"]
    expected = len(getattr(xapi.xenapi, cls).get_all())
    assert len(events) == expected and all(e["class"] == cls.lower() for e in events)

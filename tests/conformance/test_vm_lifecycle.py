"""VM, VBD, VIF and VDI lifecycle of the simulator against XAPI's rules: constructors, power
operations and their errors, operation restrictions of snapshots and templates."""


from xapisim.testing import error_of, set_guest
from xapisim import client, scenario

MiB = 1 << 20
NULL = "OpaqueRef:NULL"


def test_vm_create_forces_snapshot_fields_and_halted(xapi):
    """XAPI-FACTS §3: VM.create forces snapshot_metadata="", snapshot_info={}, parent=NULL,
    is_a_snapshot=false and power_state Halted whatever the record says."""
    vm = scenario.create_vm(xapi, "create-forced", [])
    rec = xapi.xenapi.VM.get_record(vm)
    assert (rec["snapshot_metadata"], rec["snapshot_info"], rec["parent"]) == ("", {}, NULL)
    assert rec["is_a_snapshot"] is False and rec["power_state"] == "Halted"
    assert rec["children"] == [] and rec["snapshots"] == []
    record = xapi.xenapi.VM.get_record(vm)
    for key in ("uuid", "allowed_operations", "VBDs", "VIFs"):
        record.pop(key, None)
    record.update(power_state="Running", snapshot_metadata="forged",
                  snapshot_info={"x": "y"}, name_label="create-forced-2")
    other = xapi.xenapi.VM.create(record)
    rec = xapi.xenapi.VM.get_record(other)
    assert (rec["power_state"], rec["snapshot_metadata"], rec["snapshot_info"]) == \
        ("Halted", "", {})


def test_power_operations_and_bad_power_state(xapi, pools):
    """XAPI-FACTS §2.1: VM_BAD_POWER_STATE [vm, expected (comma-separated lowercase), actual
    (lowercase)], the expected states being Xapi_vm_lifecycle.allowed_power_states."""
    vm = scenario.create_vm(xapi, "power", [4 * MiB])
    set_guest(pools[0], xapi, vm, tools=True)
    assert error_of(xapi.xenapi.VM.hard_shutdown, vm) == \
        ["VM_BAD_POWER_STATE", vm, "paused, suspended, running", "halted"]
    xapi.xenapi.VM.start(vm, False, False)
    rec = xapi.xenapi.VM.get_record(vm)
    assert rec["power_state"] == "Running" and rec["resident_on"] != NULL
    assert all(xapi.xenapi.VBD.get_currently_attached(v) for v in rec["VBDs"])
    assert error_of(xapi.xenapi.VM.start, vm, False, False) == \
        ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert error_of(xapi.xenapi.VM.destroy, vm) == \
        ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]
    xapi.xenapi.VM.suspend(vm)
    rec = xapi.xenapi.VM.get_record(vm)
    assert rec["power_state"] == "Suspended" and rec["suspend_VDI"] != NULL
    assert xapi.xenapi.VDI.get_type(rec["suspend_VDI"]) == "suspend"
    xapi.xenapi.VM.resume(vm, False, False)
    assert xapi.xenapi.VM.get_power_state(vm) == "Running"
    xapi.xenapi.VM.hard_shutdown(vm)
    rec = xapi.xenapi.VM.get_record(vm)
    assert rec["power_state"] == "Halted" and rec["resident_on"] == NULL
    assert not any(xapi.xenapi.VBD.get_currently_attached(v) for v in rec["VBDs"])


def test_destroy_keeps_vdis_and_in_use_vdi_is_refused(xapi):
    """XAPI-FACTS §2.2/§8: VDI.destroy with a plugged VBD -> VDI_IN_USE [vdi, "destroy"];
    VM.destroy removes VBDs and VIFs but keeps the VDIs."""
    vm = scenario.create_vm(xapi, "destroy-me", [4 * MiB])
    vdi = scenario.disks(xapi, vm)["0"]
    xapi.xenapi.VM.start(vm, False, False)
    assert error_of(xapi.xenapi.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    vbd = xapi.xenapi.VDI.get_VBDs(vdi)[0]
    assert error_of(xapi.xenapi.VBD.destroy, vbd)[0] == "OPERATION_NOT_ALLOWED"
    xapi.xenapi.VM.hard_shutdown(vm)
    vifs = xapi.xenapi.VM.get_VIFs(vm)
    xapi.xenapi.VM.destroy(vm)
    assert xapi.xenapi.VDI.get_VBDs(vdi) == []
    assert error_of(xapi.xenapi.VIF.get_record, vifs[0])[0] == "HANDLE_INVALID"
    xapi.xenapi.VDI.destroy(vdi)
    assert error_of(xapi.xenapi.VDI.get_record, vdi) == ["HANDLE_INVALID", "VDI", vdi]


def test_vbd_create_rules(xapi):
    """XAPI-FACTS §3: VBD.create refuses a used userdevice (DEVICE_ALREADY_EXISTS [device]);
    a CD VBD may be empty; a VBD can be added to a halted snapshot VM."""
    vm = scenario.create_vm(xapi, "vbds", [4 * MiB], cd=True)
    vdi = scenario.disks(xapi, vm)["0"]
    record = {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": False, "mode": "RW",
              "type": "Disk", "unpluggable": False, "empty": False, "other_config": {},
              "qos_algorithm_type": "", "qos_algorithm_params": {}}
    assert error_of(xapi.xenapi.VBD.create, record) == ["DEVICE_ALREADY_EXISTS", "0"]
    cds = [v for v in xapi.xenapi.VM.get_VBDs(vm) if xapi.xenapi.VBD.get_type(v) == "CD"]
    assert xapi.xenapi.VBD.get_empty(cds[0]) is True
    assert xapi.xenapi.VBD.get_VDI(cds[0]) == NULL
    snap = xapi.xenapi.VM.snapshot(vm, "vbds-snap")
    extra = scenario.add_disk(xapi, snap, 5, 2 * MiB)
    assert extra in scenario.disks(xapi, snap).values()


def test_vdi_create_record_and_sr_accounting(xapi):
    """XAPI-FACTS §2.2 (datamodel VDI constructor): location = uuid, snapshot fields empty;
    SR.virtual_allocation grows by the virtual size. Both SRs are thin (sparse files, like
    sm's FileSR, whose create checks no space): a VDI larger than the SR is created."""
    sr = scenario.default_sr(xapi)
    before = int(xapi.xenapi.SR.get_virtual_allocation(sr))
    vdi = xapi.xenapi.VDI.create({
        "name_label": "accounted", "name_description": "", "SR": sr,
        "virtual_size": str(6 * MiB), "type": "user", "sharable": False, "read_only": False,
        "other_config": {}})
    rec = xapi.xenapi.VDI.get_record(vdi)
    assert rec["location"] == rec["uuid"] and rec["managed"] is True
    assert rec["is_a_snapshot"] is False and rec["snapshot_of"] == NULL
    assert int(rec["virtual_size"]) == 6 * MiB
    assert int(xapi.xenapi.SR.get_virtual_allocation(sr)) == before + 6 * MiB
    huge = int(xapi.xenapi.SR.get_physical_size(sr)) * 2
    big = xapi.xenapi.VDI.create(dict(xapi.xenapi.VDI.get_record(vdi), virtual_size=str(huge)))
    assert int(xapi.xenapi.VDI.get_virtual_size(big)) == huge
    xapi.xenapi.VDI.destroy(big)
    xapi.xenapi.VDI.destroy(vdi)
    assert int(xapi.xenapi.SR.get_virtual_allocation(sr)) == before


def test_thin_sr_refuses_what_does_not_fit(xapi, pools):
    """A thin SR charges the bytes stored: an import that outgrows the SR's free space fails
    with VDI_IO_ERROR (ENOSPC under tapdisk), a snapshot whose copy does not fit with
    SR_BACKEND_FAILURE_44 (sm SRNoSpace)."""
    sr = [r for r, rec in xapi.xenapi.SR.get_all_records().items() if rec["type"] == "file-v3"][0]
    size_before = xapi.xenapi.SR.get_physical_size(sr)
    vm = scenario.create_vm(xapi, "thin", [8 * MiB], sr=sr)
    vdi = scenario.disks(xapi, vm)["0"]
    scenario.write_disk(pools[0], xapi, vdi, [(0, scenario.pattern("first", 2 * MiB))])
    used = int(xapi.xenapi.SR.get_physical_utilisation(sr))
    try:
        xapi.xenapi.SR.set_physical_size(sr, str(used + 1 * MiB))
        task = xapi.xenapi.task.create("import", "")
        body = scenario.chunked_body([(4 * MiB, scenario.pattern("more", 3 * MiB))])
        status, _, _ = client.http_request(
            pools[0], "PUT", "/import_raw_vdi", {"vdi": vdi, "format": "raw", "chunked": "true",
                                                 "task_id": task}, xapi, body)
        assert status == 200  # sent before the body is read: only the task tells
        assert xapi.xenapi.task.get_status(task) == "failure"
        assert xapi.xenapi.task.get_error_info(task) == ["VDI_IO_ERROR", "Device I/O errors"]
        xapi.xenapi.task.destroy(task)
        assert error_of(xapi.xenapi.VDI.snapshot, vdi, {}) == \
            ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]
        xapi.xenapi.SR.set_physical_size(sr, size_before)
        xapi.xenapi.VDI.destroy(xapi.xenapi.VDI.snapshot(vdi, {}))
    finally:
        xapi.xenapi.SR.set_physical_size(sr, size_before)
        xapi.xenapi.VM.destroy(vm)
        xapi.xenapi.VDI.destroy(vdi)


def test_snapshot_vm_operations_are_restricted(xapi):
    """Fact 5: on a snapshot only revert/clone/copy/export/destroy/hard_shutdown/
    metadata_export; others -> VM_IS_SNAPSHOT [vm, op]. Templates -> VM_IS_TEMPLATE."""
    vm = scenario.create_vm(xapi, "restricted", [2 * MiB])
    snap = xapi.xenapi.VM.snapshot(vm, "restricted-snap")
    assert error_of(xapi.xenapi.VM.start, snap, False, False) == ["VM_IS_SNAPSHOT", snap, "start"]
    assert error_of(xapi.xenapi.VM.snapshot, snap, "again", []) == \
        ["VM_IS_SNAPSHOT", snap, "snapshot"]
    allowed = set(xapi.xenapi.VM.get_allowed_operations(snap))
    assert {"revert", "clone", "copy", "export", "destroy"} <= allowed
    assert "start" not in allowed and "snapshot" not in allowed
    assert error_of(xapi.xenapi.VM.revert, vm) == ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT"]
    template = xapi.xenapi.VM.clone(vm, "template")
    xapi.xenapi.VM.set_is_a_template(template, True)
    assert error_of(xapi.xenapi.VM.start, template, False, False) == \
        ["VM_IS_TEMPLATE", template, "start"]


def test_update_snapshot_metadata_sets_four_fields_not_parent(xapi):
    """Fact 9: the hidden, deprecated VM.update_snapshot_metadata sets is_a_snapshot,
    snapshot_of, snapshot_time and transportable_snapshot_id, but not parent."""
    origin = scenario.create_vm(xapi, "origin", [])
    other = scenario.create_vm(xapi, "made-snapshot", [])
    xapi.xenapi.VM.update_snapshot_metadata(other, origin, "20240102T03:04:05Z", "tsid-1")
    rec = xapi.xenapi.VM.get_record(other)
    assert rec["is_a_snapshot"] is True and rec["snapshot_of"] == origin
    assert rec["snapshot_time"].value == "20240102T03:04:05Z"
    assert rec["transportable_snapshot_id"] == "tsid-1" and rec["parent"] == NULL
    assert other in xapi.xenapi.VM.get_snapshots(origin)


def test_guest_write_only_for_running_vm(pools, xapi):
    """Simulator endpoint (brief): POST /xapisim/guest_write answers 409 unless Running."""
    vm = scenario.create_vm(xapi, "writer", [2 * MiB])
    query = {"vm": xapi.xenapi.VM.get_uuid(vm), "userdevice": "0", "offset": "0"}
    status, _, body = client.http_request(pools[0], "POST", "/xapisim/guest_write", query,
                                          xapi, b"x" * 512)
    assert status == 409 and b"Running" in body
    xapi.xenapi.VM.start(vm, False, False)
    status, _, _ = client.http_request(pools[0], "POST", "/xapisim/guest_write", query, xapi,
                                       b"x" * 512)
    assert status == 200

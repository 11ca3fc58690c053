"""Setters that check what XAPI checks (xen-api master xapi_vm.ml, message_forwarding.ml,
vm_memory_constraints.ml), templates and provisioning (xapi_templates.ml), free device
numbers (xapi_vm_helpers.ml), CD drives, VIF and PBD plugging."""

from xapisim import scenario
from xapisim.testing import error_of, set_guest

MiB = 1 << 20
GiB = 1 << 30
NULL = "OpaqueRef:NULL"
VCPU_RULE = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"


def test_vcpu_setters(xapi):
    vm = scenario.create_vm(xapi, "vcpus", [])
    x = xapi.xenapi.VM
    x.set_VCPUs_max(vm, "4")
    x.set_VCPUs_at_startup(vm, "4")
    assert error_of(x.set_VCPUs_at_startup, vm, "5") == ["INVALID_VALUE", VCPU_RULE, "5"]
    assert error_of(x.set_VCPUs_max, vm, "0") == ["INVALID_VALUE", VCPU_RULE, "0"]
    assert error_of(x.set_VCPUs_max, vm, "2") == ["INVALID_VALUE", VCPU_RULE, "2"]
    assert (x.get_VCPUs_max(vm), x.get_VCPUs_at_startup(vm)) == ("4", "4")
    x.start(vm, False, False)
    assert error_of(x.set_VCPUs_max, vm, "8") == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    # without tools an HVM guest cannot hot-plug VCPUs
    assert error_of(x.set_VCPUs_number_live, vm, "2") == ["VM_LACKS_FEATURE", vm]
    x.hard_shutdown(vm)


def test_memory_setters(xapi):
    vm = scenario.create_vm(xapi, "memory", [])
    x = xapi.xenapi.VM
    x.set_memory_limits(vm, str(128 * MiB), str(1 * GiB), str(512 * MiB), str(1 * GiB))
    assert error_of(x.set_memory_static_max, vm, str(256 * MiB)) == ["MEMORY_CONSTRAINT_VIOLATION_ORDER"]
    assert error_of(x.set_memory_dynamic_range, vm, str(64 * MiB), str(512 * MiB)) == \
        ["MEMORY_CONSTRAINT_VIOLATION_ORDER"]
    assert error_of(x.set_memory_limits, vm, "0", str(MiB), str(2 * MiB), str(2 * MiB)) == \
        ["MEMORY_CONSTRAINT_VIOLATION_ORDER"]
    rec = x.get_record(vm)
    assert (rec["memory_static_min"], rec["memory_dynamic_min"], rec["memory_dynamic_max"],
            rec["memory_static_max"]) == (str(128 * MiB), str(512 * MiB), str(GiB), str(GiB))
    x.set_memory_dynamic_max(vm, str(768 * MiB))
    x.set_memory(vm, str(2 * GiB))
    rec = x.get_record(vm)
    assert {rec[k] for k in ("memory_dynamic_min", "memory_dynamic_max", "memory_static_max")} == {str(2 * GiB)}
    x.start(vm, False, False)
    assert error_of(x.set_memory_limits, vm, str(MiB), str(GiB), str(GiB), str(GiB))[0] == "VM_BAD_POWER_STATE"
    x.set_memory_dynamic_range(vm, str(GiB), str(2 * GiB))  # allowed live
    x.hard_shutdown(vm)
    dom0 = xapi.xenapi.host.get_control_domain(xapi.xenapi.host.get_all()[0])
    d = x.get_record(dom0)
    assert error_of(x.set_memory_dynamic_range, dom0, str(MiB), d["memory_static_max"]) == \
        ["MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "control domain"]


def test_is_a_template_needs_a_halted_vm(xapi):
    vm = scenario.create_vm(xapi, "templated", [])
    xapi.xenapi.VM.start(vm, False, False)
    assert error_of(xapi.xenapi.VM.set_is_a_template, vm, True) == \
        ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    xapi.xenapi.VM.hard_shutdown(vm)
    xapi.xenapi.VM.set_is_a_template(vm, True)
    rec = xapi.xenapi.VM.get_record(vm)
    assert rec["is_a_template"] and rec["metrics"] == NULL and "start" not in rec["allowed_operations"]
    assert error_of(xapi.xenapi.VM.start, vm, False, False) == ["VM_IS_TEMPLATE", vm, "start"]
    assert error_of(xapi.xenapi.VM.set_is_a_template, vm, True) == \
        ["VM_IS_TEMPLATE", vm, "make_into_template"]


def test_provision_from_a_stock_template(xapi):
    """The copy of a template provisions the disks of other_config "disks" on the SR the
    client named there; it stops being a template and can start."""
    templates = xapi.xenapi.VM.get_by_name_label("Debian Bookworm 12")
    assert len(templates) == 1
    template = templates[0]
    assert error_of(xapi.xenapi.VM.provision, scenario.create_vm(xapi, "not a template", [])) == \
        ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE"]
    vm = xapi.xenapi.VM.clone(template, "from template")
    assert xapi.xenapi.VM.get_is_a_template(vm) and not xapi.xenapi.VM.get_is_default_template(vm)
    disks = xapi.xenapi.VM.get_other_config(vm)["disks"]
    # as xe vm-install and community.general do: name the SR in the XML
    assert error_of(xapi.xenapi.VM.provision, vm) == ["UUID_INVALID", "sr", ""]
    # Xapi_vm.provision clears is_a_template before making the disks, and does not restore it
    assert not xapi.xenapi.VM.get_VBDs(vm) and not xapi.xenapi.VM.get_is_a_template(vm)
    xapi.xenapi.VM.set_is_a_template(vm, True)
    sr = scenario.default_sr(xapi)
    xapi.xenapi.VM.remove_from_other_config(vm, "disks")
    xapi.xenapi.VM.add_to_other_config(vm, "disks", disks.replace('sr=""', 'sr="%s"' % xapi.xenapi.SR.get_uuid(sr)))
    xapi.xenapi.VM.provision(vm)
    rec = xapi.xenapi.VM.get_record(vm)
    assert not rec["is_a_template"] and "disks" not in rec["other_config"]
    [vbd] = rec["VBDs"]
    vdi = xapi.xenapi.VBD.get_VDI(vbd)
    assert xapi.xenapi.VDI.get_SR(vdi) == sr and xapi.xenapi.VDI.get_virtual_size(vdi) == str(10 * GiB)
    assert xapi.xenapi.VDI.get_name_label(vdi) == "0" and xapi.xenapi.VBD.get_bootable(vbd)
    xapi.xenapi.VM.start(vm, False, False)
    xapi.xenapi.VM.hard_shutdown(vm)
    xapi.xenapi.VM.destroy(vm)
    xapi.xenapi.VDI.destroy(vdi)


def test_allowed_device_numbers(xapi):
    vm = scenario.create_vm(xapi, "devices", [MiB, MiB], cd=True)
    vbds = xapi.xenapi.VM.get_allowed_VBD_devices(vm)
    assert vbds[:3] == ["3", "4", "5"] and vbds[-1] == "254" and len(vbds) == 252
    vifs = xapi.xenapi.VM.get_allowed_VIF_devices(vm)
    assert vifs == [str(n) for n in range(1, 16)]


def test_cd_insert_and_eject(xapi):
    vm = scenario.create_vm(xapi, "cd", [MiB], cd=True)
    cd = [v for v in xapi.xenapi.VM.get_VBDs(vm) if xapi.xenapi.VBD.get_type(v) == "CD"][0]
    disk = [v for v in xapi.xenapi.VM.get_VBDs(vm) if v != cd][0]
    iso = xapi.xenapi.VDI.get_by_name_label("guest-tools.iso")[0]
    assert error_of(xapi.xenapi.VBD.eject, cd) == ["VBD_IS_EMPTY", cd]
    assert error_of(xapi.xenapi.VBD.insert, disk, iso) == ["VBD_NOT_REMOVABLE_MEDIA", disk]
    xapi.xenapi.VBD.insert(cd, iso)
    assert xapi.xenapi.VBD.get_VDI(cd) == iso and not xapi.xenapi.VBD.get_empty(cd)
    assert error_of(xapi.xenapi.VBD.insert, cd, iso) == ["VBD_NOT_EMPTY", cd]
    xapi.xenapi.VBD.eject(cd)
    assert xapi.xenapi.VBD.get_VDI(cd) == NULL and xapi.xenapi.VBD.get_empty(cd)


def test_vif_plug_unplug(xapi, pools):
    vm = scenario.create_vm(xapi, "vif", [])
    vif = xapi.xenapi.VM.get_VIFs(vm)[0]
    assert error_of(xapi.xenapi.VIF.plug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    xapi.xenapi.VM.start(vm, False, False)
    assert error_of(xapi.xenapi.VIF.unplug, vif) == ["VM_MISSING_PV_DRIVERS", vm]
    set_guest(pools[0], xapi, vm, tools=True)
    assert error_of(xapi.xenapi.VIF.plug, vif) == ["DEVICE_ALREADY_ATTACHED", vif]
    xapi.xenapi.VIF.unplug(vif)
    assert not xapi.xenapi.VIF.get_currently_attached(vif)
    xapi.xenapi.VIF.plug(vif)
    assert xapi.xenapi.VIF.get_currently_attached(vif)
    xapi.xenapi.VM.hard_shutdown(vm)


def test_pbd_plug_unplug(xapi):
    """Idempotent both ways; unplug refuses while a VDI of the SR is attached; an SR whose PBD
    is unplugged serves no VDI operation."""
    sr = [r for r, rec in xapi.xenapi.SR.get_all_records().items() if rec["type"] == "file-v3"][0]
    pbd = xapi.xenapi.SR.get_PBDs(sr)[0]
    vm = scenario.create_vm(xapi, "pbd", [MiB], sr=sr)
    vdi = xapi.xenapi.VBD.get_VDI(xapi.xenapi.VM.get_VBDs(vm)[0])
    xapi.xenapi.VM.start(vm, False, False)
    assert error_of(xapi.xenapi.PBD.unplug, pbd) == ["VDI_IN_USE", vdi]
    xapi.xenapi.VM.hard_shutdown(vm)
    xapi.xenapi.PBD.unplug(pbd)
    xapi.xenapi.PBD.unplug(pbd)
    assert not xapi.xenapi.PBD.get_currently_attached(pbd)
    assert error_of(xapi.xenapi.VDI.snapshot, vdi, {}) == ["SR_HAS_NO_PBDS", sr]
    xapi.xenapi.PBD.plug(pbd)
    xapi.xenapi.PBD.plug(pbd)
    assert xapi.xenapi.PBD.get_currently_attached(pbd)
    xapi.xenapi.VDI.destroy(xapi.xenapi.VDI.snapshot(vdi, {}))

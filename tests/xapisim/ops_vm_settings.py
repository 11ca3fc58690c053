"""A VM's configuration: VCPU and memory setters with XAPI's constraints, templates
(``set_is_a_template``, ``provision``) and the device numbers a VM has free.

From xen-api master: ``xapi_vm.ml`` (set_VCPUs_*, set_memory_*, provision),
``message_forwarding.ml`` (which operation each setter is checked as, and that
``set_memory_{static,dynamic}_{min,max}`` become the range setters), ``vm_memory_constraints.ml``
(static_min ≤ dynamic_min ≤ dynamic_max ≤ static_max, else
``MEMORY_CONSTRAINT_VIOLATION_ORDER``; a control domain must be pinned at static_max),
``xapi_templates.ml`` (the other_config "disks" XML), ``xapi_vm_helpers.ml`` (allowed devices).
"""

import xml.etree.ElementTree as ET

from . import ops_vdi, ops_vm
from .api import implements
from .errors import XapiError
from .model import NULL_REF, now_text

VCPU_RULE = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"
VIF_DEVICES = range(0, 16)      # allowed_VIF_devices: 0..15
PROVISION_KEYS = ("disks", "postinstall")
VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump")


def checked(ctx, vm, op):
    ops_vm.assert_operation(ctx.db, vm, op)
    return ctx.db.raw("VM", vm)


def is_domain_zero(rec):
    return rec["is_control_domain"] and rec.get("domid") == 0


def changed(ctx, vm):
    ops_vm.update_allowed_operations(ctx.db, vm)


# ---- VCPUs -------------------------------------------------------------------------------------

@implements("VM.set_VCPUs_max")
def set_vcpus_max(ctx, vm, value):
    rec = checked(ctx, vm, "changing_VCPUs")
    if value < 1 or value < rec["VCPUs_at_startup"]:
        raise XapiError("INVALID_VALUE", VCPU_RULE, str(value))
    ctx.db.set("VM", vm, "VCPUs_max", value)


@implements("VM.set_VCPUs_at_startup")
def set_vcpus_at_startup(ctx, vm, value):
    # no operation check in XAPI: only the bounds (and never on dom0)
    rec = ctx.db.raw("VM", vm)
    if is_domain_zero(rec):
        raise XapiError("OPERATION_NOT_ALLOWED", "set_VCPUs_at_startup is not allowed on dom0")
    if value < 1 or value > rec["VCPUs_max"]:
        raise XapiError("INVALID_VALUE", VCPU_RULE, str(value))
    ctx.db.set("VM", vm, "VCPUs_at_startup", value)


@implements("VM.set_VCPUs_number_live")
def set_vcpus_number_live(ctx, vm, nvcpu):
    rec = checked(ctx, vm, "changing_VCPUs_live")
    if nvcpu < 1 or nvcpu > rec["VCPUs_max"]:
        raise XapiError("INVALID_VALUE", "VCPU values must satisfy: 0 < VCPUs ≤ VCPUs_max",
                        str(nvcpu))
    if ctx.db.exists("VM_metrics", rec["metrics"]):
        ctx.db.set("VM_metrics", rec["metrics"], "VCPUs_number", nvcpu)


# ---- memory ------------------------------------------------------------------------------------

def memory_of(rec):
    return {k: rec["memory_" + k] for k in ("static_min", "dynamic_min", "dynamic_max", "static_max")}


def assert_memory_valid(rec, limits):
    """assert_valid_for_current_context, with DMC enabled (as on XCP-ng)."""
    ordered = limits["static_min"] <= limits["dynamic_min"] <= limits["dynamic_max"] <= limits["static_max"]
    if rec["is_control_domain"]:
        pinned = limits["dynamic_min"] == limits["dynamic_max"] == limits["static_max"]
        if not (limits["static_min"] <= limits["dynamic_min"] and pinned):
            raise XapiError("MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "control domain")
    elif not ordered:
        raise XapiError("MEMORY_CONSTRAINT_VIOLATION_ORDER")


def write_memory(ctx, vm, limits):
    fields = {"memory_" + k: v for k, v in limits.items()}
    if "dynamic_min" in limits:
        fields["memory_target"] = limits["dynamic_min"]
    ctx.db.update("VM", vm, **fields)
    if ctx.db.raw("VM", vm)["is_control_domain"]:
        ctx.db.set("VM", vm, "requires_reboot", True)


@implements("VM.set_memory_static_range")
def set_memory_static_range(ctx, vm, low, high):
    rec = checked(ctx, vm, "changing_static_range")
    limits = dict(memory_of(rec), static_min=low, static_max=high)
    assert_memory_valid(rec, limits)
    write_memory(ctx, vm, {"static_min": low, "static_max": high})


@implements("VM.set_memory_static_max")
def set_memory_static_max(ctx, vm, value):
    set_memory_static_range(ctx, vm, ctx.db.raw("VM", vm)["memory_static_min"], value)


@implements("VM.set_memory_static_min")
def set_memory_static_min(ctx, vm, value):
    set_memory_static_range(ctx, vm, value, ctx.db.raw("VM", vm)["memory_static_max"])


@implements("VM.set_memory_dynamic_range")
def set_memory_dynamic_range(ctx, vm, low, high):
    rec = checked(ctx, vm, "changing_dynamic_range")
    limits = dict(memory_of(rec), dynamic_min=low, dynamic_max=high)
    assert_memory_valid(rec, limits)
    write_memory(ctx, vm, {"dynamic_min": low, "dynamic_max": high})
    if rec["power_state"] == "Running" and ctx.db.exists("VM_metrics", rec["metrics"]):
        ctx.db.set("VM_metrics", rec["metrics"], "memory_actual", high)


@implements("VM.set_memory_dynamic_max")
def set_memory_dynamic_max(ctx, vm, value):
    set_memory_dynamic_range(ctx, vm, ctx.db.raw("VM", vm)["memory_dynamic_min"], value)


@implements("VM.set_memory_dynamic_min")
def set_memory_dynamic_min(ctx, vm, value):
    set_memory_dynamic_range(ctx, vm, value, ctx.db.raw("VM", vm)["memory_dynamic_max"])


@implements("VM.set_memory_limits")
def set_memory_limits(ctx, vm, static_min, static_max, dynamic_min, dynamic_max):
    rec = checked(ctx, vm, "changing_memory_limits")
    limits = {"static_min": static_min, "dynamic_min": dynamic_min,
              "dynamic_max": dynamic_max, "static_max": static_max}
    assert_memory_valid(rec, limits)
    write_memory(ctx, vm, limits)


@implements("VM.set_memory")
def set_memory(ctx, vm, value):
    rec = ctx.db.raw("VM", vm)
    set_memory_limits(ctx, vm, rec["memory_static_min"], value, value, value)


@implements("VM.set_memory_target_live")
def set_memory_target_live(ctx, vm, target):
    # deprecated: XAPI ignores it (use set_memory_dynamic_range)
    return None


# ---- templates ---------------------------------------------------------------------------------

@implements("VM.set_is_a_template")
def set_is_a_template(ctx, vm, value):
    """true is checked as make_into_template (a halted VM, not already a template); a
    template loses its metrics. false counts as install time."""
    db = ctx.db
    if value:
        checked(ctx, vm, "make_into_template")
        metrics = db.raw("VM", vm)["metrics"]
        db.update("VM", vm, ha_always_run=False, metrics=NULL_REF)
        if db.exists("VM_metrics", metrics):
            db.destroy("VM_metrics", metrics)
    elif db.exists("VM_metrics", db.raw("VM", vm)["metrics"]):
        db.set("VM_metrics", db.raw("VM", vm)["metrics"], "install_time", now_text())
    db.set("VM", vm, "is_a_template", bool(value))
    changed(ctx, vm)


def template_disks(rec):
    """The other_config "disks" XML: [{device, size, sr, bootable, type}]."""
    text = rec["other_config"].get("disks")
    if not text:
        return []
    try:
        root = ET.fromstring(text)
        if root.tag != "provision":
            raise ValueError(root.tag)
        disks = []
        for disk in root:
            a = disk.attrib
            if disk.tag != "disk" or not {"device", "size", "sr", "bootable"} <= set(a):
                raise ValueError(disk.tag)
            vdi_type = a.get("type", "system")
            disks.append({"device": a["device"], "size": int(a["size"]), "sr": a["sr"],
                          "bootable": a["bootable"] == "true",
                          "type": vdi_type if vdi_type in VDI_TYPES else "system"})
        return disks
    except (ET.ParseError, ValueError) as e:
        raise XapiError("INTERNAL_ERROR", "Xapi_templates.Parse_failure (%s)" % e)


@implements("VM.provision")
def vm_provision(ctx, vm):
    """Xapi_vm.provision: the VM stops being a template, the disks the template describes are
    made (each on the SR named by uuid in the XML), then the install keys are removed. A
    failure removes the disks made so far."""
    db = ctx.db
    rec = checked(ctx, vm, "provision")
    set_is_a_template(ctx, vm, False)
    made = []
    try:
        for disk in template_disks(rec):
            try:
                sr = db.ref_of_uuid("SR", disk["sr"])
            except XapiError:
                raise XapiError("UUID_INVALID", "sr", disk["sr"])
            vdi = ops_vdi.vdi_create(ctx, {
                "name_label": "", "name_description": "Created by template provisioner",
                "SR": sr, "virtual_size": disk["size"], "type": disk["type"], "sharable": False,
                "read_only": False, "other_config": {}, "xenstore_data": {},
                "sm_config": {"vmhint": rec["uuid"]}, "tags": []})
            made.append((None, vdi))
            vbd = ops_vm.vbd_create(ctx, {
                "VM": vm, "VDI": vdi, "userdevice": disk["device"], "bootable": disk["bootable"],
                "mode": "RW", "type": "Disk", "unpluggable": disk["type"] != "system",
                "empty": False, "qos_algorithm_type": "", "qos_algorithm_params": {},
                "other_config": {"owner": ""}})
            made[-1] = (vbd, vdi)
            db.set("VDI", vdi, "name_label", db.raw("VBD", vbd)["userdevice"])
            ctx.progress(0.1 + 0.8 * len(made) / max(1, len(template_disks(rec))))
    except XapiError:
        for vbd, vdi in made:
            if vbd and db.exists("VBD", vbd):
                ops_vm.vbd_destroy(ctx, vbd)
            if db.exists("VDI", vdi):
                ops_vdi.vdi_destroy(ctx, vdi)
        raise
    other = dict(db.raw("VM", vm)["other_config"])
    for key in PROVISION_KEYS:
        other.pop(key, None)
    db.set("VM", vm, "other_config", other)
    changed(ctx, vm)


# ---- free device numbers -----------------------------------------------------------------------

def device_number(text):
    """A userdevice or device name as a disk number: "3", "xvdd", "hdd", "sdd" -> 3."""
    text = (text or "").strip()
    if text.isdigit():
        return int(text)
    for prefix in ("xvd", "hd", "sd"):
        if text.startswith(prefix) and len(text) == len(prefix) + 1 and text[-1].isalpha():
            return ord(text[-1]) - ord("a")
    return None


@implements("VM.get_allowed_VBD_devices")
def get_allowed_vbd_devices(ctx, vm):
    db = ctx.db
    used = set()
    for vbd in db.where("VBD", VM=vm):
        rec = db.raw("VBD", vbd)
        used.update(n for n in (device_number(rec["userdevice"]), device_number(rec["device"]))
                    if n is not None)
    top = 256 if db.raw("VM", vm)["is_control_domain"] else 255
    return [str(n) for n in range(0, top) if n not in used]


@implements("VM.get_allowed_VIF_devices")
def get_allowed_vif_devices(ctx, vm):
    db = ctx.db
    used = {db.raw("VIF", vif)["device"] for vif in db.where("VIF", VM=vm)}
    return [str(n) for n in VIF_DEVICES if str(n) not in used]

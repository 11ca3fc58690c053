"""VM, VBD and VIF messages: snapshot, checkpoint, clone, copy, revert, power operations.

Operation checks follow ``Xapi_vm_lifecycle.check_operation_error``: power state first
(``VM_BAD_POWER_STATE [vm; expected, comma-separated lowercase; actual]``), then templates
(``VM_IS_TEMPLATE [vm; op]``), snapshots (``VM_IS_SNAPSHOT [vm; op]``), revert on a non-snapshot
(``REVERT_ONLY_ALLOWED_ON_SNAPSHOT []``).
"""

import contextlib
import hashlib
import json
import random
import uuid as uuidlib

from . import guests, ops_vdi
from .api import Context, create_from_record, implements
from .errors import XapiError
from .model import EPOCH, NULL_REF, now_text
from .server import route

ALL_STATES = ("Halted", "Paused", "Suspended", "Running")
# Xapi_vm_lifecycle.allowed_power_states
ALLOWED_POWER_STATES = {
    "start": ("Halted",), "start_on": ("Halted",), "provision": ("Halted",),
    "make_into_template": ("Halted",), "changing_VCPUs": ("Halted",),
    "changing_static_range": ("Halted",), "changing_memory_limits": ("Halted",),
    "changing_shadow_memory": ("Halted",),
    "unpause": ("Paused",),
    "resume": ("Suspended",), "resume_on": ("Suspended",),
    "clean_reboot": ("Running",), "clean_shutdown": ("Running",), "migrate_send": ("Running",),
    "pause": ("Running",), "pool_migrate": ("Running",), "suspend": ("Running",),
    "snapshot_with_quiesce": ("Running",), "changing_VCPUs_live": ("Running",),
    "changing_dynamic_range": ("Halted", "Running"),
    "destroy": ("Halted", "Suspended"), "export": ("Halted", "Suspended"),
    "hard_reboot": ("Paused", "Running"),
    "checkpoint": ("Paused", "Suspended", "Running"),
    "hard_shutdown": ("Paused", "Suspended", "Running"),
    "metadata_export": ALL_STATES, "revert": ALL_STATES, "reverting": ALL_STATES,
    "snapshot": ALL_STATES, "power_state_reset": ALL_STATES,
}
# newer XAPI also allows migrate_send of halted/suspended VMs (storage motion)
ALLOWED_POWER_STATES["migrate_send"] = ("Halted", "Suspended", "Running")
TEMPLATE_OPS = {"changing_dynamic_range", "changing_static_range", "changing_memory_limits",
                "changing_shadow_memory", "changing_VCPUs", "clone", "copy", "export",
                "metadata_export", "provision"}
SNAPSHOT_OPS = {"revert", "clone", "copy", "export", "destroy", "hard_shutdown",
                "metadata_export"}
LISTED_OPS = ("snapshot", "copy", "clone", "revert", "checkpoint", "snapshot_with_quiesce",
              "start", "start_on", "pause", "unpause", "clean_shutdown", "clean_reboot",
              "hard_shutdown", "hard_reboot", "suspend", "resume", "resume_on", "export",
              "destroy", "provision", "changing_VCPUs_live", "pool_migrate", "migrate_send",
              "make_into_template", "changing_static_range", "changing_shadow_memory",
              "changing_dynamic_range", "changing_memory_limits", "changing_VCPUs",
              "metadata_export")
# fields a new VM record must not inherit from the VM it is copied from
VM_RUNTIME_RESET = {"resident_on": NULL_REF, "scheduled_to_be_resident_on": NULL_REF,
                    "domid": -1, "current_operations": {}, "suspend_VDI": NULL_REF,
                    "ha_always_run": False, "is_default_template": False,
                    "transportable_snapshot_id": "", "guest_metrics": NULL_REF,
                    "is_control_domain": False}
# revert_vm_fields: fields of the snapshot's record that are not copied back onto the VM
REVERT_KEPT_FIELDS = {"uuid", "name_label", "is_a_snapshot", "is_a_template", "snapshot_of",
                      "snapshot_time", "transportable_snapshot_id", "snapshot_info",
                      "snapshot_metadata", "parent", "power_state", "suspend_VDI",
                      "resident_on", "scheduled_to_be_resident_on", "domid",
                      "allowed_operations", "current_operations", "is_default_template",
                      "blocked_operations", "metrics", "guest_metrics"}


# ---- operation checks -------------------------------------------------------------------------

# Xapi_vm_lifecycle.is_allowed_concurrently: groups that may run together
CONCURRENT_GROUPS = ({"clone", "copy", "export"}, {"snapshot", "checkpoint"}, {"get_boot_record"})
# what a control domain allows (check_operation_error)
CONTROL_DOMAIN_OPS = {"data_source_op", "changing_memory_live", "awaiting_memory_live",
                      "metadata_export", "changing_dynamic_range", "changing_memory_limits",
                      "changing_static_range", "start", "start_on", "changing_VCPUs", "destroy"}
# ops refused while a PCI device is passed through
IMMOVABLE_OPS = {"suspend", "checkpoint", "pool_migrate", "migrate_send"}


def allowed_power_states(rec, op):
    allowed = ALLOWED_POWER_STATES.get(op, ALL_STATES)
    if op in ("clone", "copy"):
        allowed = ("Halted", "Suspended") if rec["is_a_snapshot"] else ("Halted",)
    if op in ("changing_VCPUs", "changing_static_range", "changing_memory_limits") \
            and rec["is_control_domain"]:
        allowed = ("Halted", "Running")
    return allowed


def allowed_concurrently(op, current):
    if op == "hard_shutdown":
        return "hard_shutdown" not in current
    if op == "hard_reboot":
        return not {"hard_shutdown", "hard_reboot"} & set(current)
    return any(op in group and set(current) <= group for group in CONCURRENT_GROUPS)


def operation_error(db, vm, op, strict=False):
    """Xapi_vm_lifecycle.check_operation_error, in its order. ``strict`` is for
    allowed_operations (advisory): ops that need the guest's help are left out when it lacks
    the feature, while a call is let through (and may then fail or time out)."""
    rec = db.raw("VM", vm)
    if op in rec.get("blocked_operations", {}):
        return XapiError("OPERATION_BLOCKED", vm, rec["blocked_operations"][op])
    allowed = allowed_power_states(rec, op)
    if rec["power_state"] not in allowed:
        return XapiError("VM_BAD_POWER_STATE", vm, ", ".join(s.lower() for s in allowed),
                         rec["power_state"].lower())
    current = list(rec.get("current_operations", {}).values())
    if current and not allowed_concurrently(op, current):
        refs = list(rec["current_operations"])
        return XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm,
                         current[0] if len(current) == 1 else "{%s}" % ",".join(current),
                         refs[0] if len(refs) == 1 else "{%s}" % ",".join(refs))
    if rec["is_a_template"] and not rec["is_a_snapshot"]:
        default = rec.get("is_default_template") or rec["other_config"].get("default_template") == "true"
        if op not in TEMPLATE_OPS and not (op in ("destroy", "migrate_send") and not default):
            return XapiError("VM_IS_TEMPLATE", vm, op)
    if rec["is_a_snapshot"] and op not in SNAPSHOT_OPS:
        return XapiError("VM_IS_SNAPSHOT", vm, op)
    if op == "provision" and not rec["is_a_template"]:
        return XapiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
    if op == "revert" and not rec["is_a_snapshot"]:
        return XapiError("REVERT_ONLY_ALLOWED_ON_SNAPSHOT")
    if rec["is_control_domain"]:
        if op in ("changing_VCPUs", "destroy") and rec.get("domid") == 0:
            return XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
        if op not in CONTROL_DOMAIN_OPS:
            return XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain")
    error = guests.feature_error(rec, vm, op, strict)
    if error is not None:
        return error
    if op == "snapshot_with_quiesce":
        # VSS support was removed from XAPI
        return XapiError("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", vm)
    if op in IMMOVABLE_OPS and rec.get("attached_PCIs"):
        return XapiError("VM_HAS_PCI_ATTACHED", vm)
    return None


def assert_operation(db, vm, op):
    error = operation_error(db, vm, op)
    if error is not None:
        raise error


def update_allowed_operations(db, vm):
    if db.exists("VM", vm):
        allowed = [op for op in LISTED_OPS if operation_error(db, vm, op, strict=True) is None]
        if allowed != db.raw("VM", vm)["allowed_operations"]:
            db.set("VM", vm, "allowed_operations", allowed)


def refresh_vdis_of(db, vm):
    for vbd in db.where("VBD", VM=vm):
        vdi = db.raw("VBD", vbd)["VDI"]
        if vdi != NULL_REF and db.exists("VDI", vdi):
            ops_vdi.update_vdi_allowed_operations(db, vdi)


# ---- records ----------------------------------------------------------------------------------

def random_mac():
    # locally administered, unicast, as XAPI's generated MACs
    return "%02x:%02x:%02x:%02x:%02x:%02x" % (
        (random.randrange(256) & 0xFC) | 0x02, *[random.randrange(256) for _ in range(5)])


def device_name(userdevice):
    try:
        return "xvd" + chr(ord("a") + int(userdevice))
    except ValueError:
        return ""


@implements("VM.create")
def vm_create(ctx, record):
    """Xapi_vm.create forces the snapshot fields empty and the VM Halted; adds a mac_seed."""
    other = dict(record.get("other_config") or {})
    other.setdefault("mac_seed", str(uuidlib.uuid4()))
    record = dict(record, other_config=other)
    vm = create_from_record(ctx, "VM", record, extra={
        "power_state": "Halted", "snapshot_metadata": "", "snapshot_info": {},
        "parent": NULL_REF, "is_a_snapshot": False, "snapshot_of": NULL_REF,
        "snapshot_time": EPOCH, "transportable_snapshot_id": "", "resident_on": NULL_REF,
        "domid": -1, "suspend_VDI": NULL_REF})
    update_allowed_operations(ctx.db, vm)
    return vm


@implements("VM.destroy")
def vm_destroy(ctx, vm):
    """The VM's VBDs and VIFs go, its VDIs stay. Its children are re-parented to its parent
    (xapi_vm.ml destroy, "rebase the children"), so deleting a snapshot keeps the tree
    connected."""
    db = ctx.db
    assert_operation(db, vm, "destroy")
    rec = db.raw("VM", vm)
    for child in db.where("VM", parent=vm):
        db.set("VM", child, "parent", rec["parent"])
    for vbd in db.where("VBD", VM=vm):
        vdi = db.raw("VBD", vbd)["VDI"]
        db.destroy("VBD", vbd)
        if vdi != NULL_REF and db.exists("VDI", vdi):
            ops_vdi.update_vdi_allowed_operations(db, vdi)
    for vif in db.where("VIF", VM=vm):
        db.destroy("VIF", vif)
    db.destroy("VM", vm)


def userdevice_in_use(db, vm, cls, field, value, ignore=None):
    return any(db.raw(cls, ref)[field] == value for ref in db.where(cls, VM=vm) if ref != ignore)


@implements("VBD.create")
def vbd_create(ctx, record):
    db = ctx.db
    vm = record.get("VM", NULL_REF)
    if not db.exists("VM", vm):
        raise XapiError("HANDLE_INVALID", "VM", vm)
    if db.raw("VM", vm)["power_state"] == "Suspended":
        raise XapiError("VM_BAD_POWER_STATE", vm, "halted, running", "suspended")
    vdi = record.get("VDI", NULL_REF)
    empty = str(record.get("empty", False)).lower() in ("true", "1")
    vbd_type = record.get("type", "Disk")
    if vdi == NULL_REF and not (empty and vbd_type == "CD"):
        raise XapiError("HANDLE_INVALID", "VDI", vdi)
    userdevice = str(record.get("userdevice", ""))
    if userdevice == "autodetect":
        used = {db.raw("VBD", v)["userdevice"] for v in db.where("VBD", VM=vm)}
        userdevice = str(next(i for i in range(1000) if str(i) not in used))
    if userdevice_in_use(db, vm, "VBD", "userdevice", userdevice):
        raise XapiError("DEVICE_ALREADY_EXISTS", userdevice)
    record = dict(record, userdevice=userdevice)
    vbd = create_from_record(ctx, "VBD", record, extra={
        "currently_attached": False, "device": "", "VDI": NULL_REF if empty else vdi,
        "empty": empty, "storage_lock": False, "status_code": 0, "status_detail": "",
        "runtime_properties": {}})
    update_vbd_allowed_operations(db, vbd)
    if not empty and db.exists("VDI", vdi):
        ops_vdi.update_vdi_allowed_operations(db, vdi)
    return vbd


def update_vbd_allowed_operations(db, vbd):
    rec = db.raw("VBD", vbd)
    ops = ["unplug", "unplug_force"] if rec["currently_attached"] else ["attach", "plug"]
    if rec["type"] == "CD":
        ops.append("insert" if rec["empty"] else "eject")
    db.set("VBD", vbd, "allowed_operations", sorted(ops))


@implements("VBD.destroy")
def vbd_destroy(ctx, vbd):
    db = ctx.db
    rec = db.raw("VBD", vbd)
    if rec["currently_attached"]:
        vm_uuid = db.raw("VM", rec["VM"])["uuid"] if db.exists("VM", rec["VM"]) else ""
        raise XapiError("OPERATION_NOT_ALLOWED",
                        "VBD '%s' still attached to '%s'" % (rec["uuid"], vm_uuid))
    db.destroy("VBD", vbd)
    if rec["VDI"] != NULL_REF and db.exists("VDI", rec["VDI"]):
        ops_vdi.update_vdi_allowed_operations(db, rec["VDI"])


def plug_vbd(ctx, vbd):
    """Attach a VBD of a running VM; a RW attach on a SMAPIv1 SR drops the VDI's content_id
    (storage_smapiv1 VDI.activate), as the content is about to change."""
    db = ctx.db
    rec = db.raw("VBD", vbd)
    db.update("VBD", vbd, currently_attached=True, device=device_name(rec["userdevice"]))
    vdi = rec["VDI"]
    if vdi != NULL_REF and db.exists("VDI", vdi):
        vdi_rec = db.raw("VDI", vdi)
        if rec["mode"] == "RW" and ops_vdi.flavour(db, vdi_rec["SR"]) == "smapiv1" \
                and "content_id" in vdi_rec["other_config"]:
            other = dict(vdi_rec["other_config"])
            del other["content_id"]
            db.set("VDI", vdi, "other_config", other)
        ops_vdi.update_vdi_allowed_operations(db, vdi)
    update_vbd_allowed_operations(db, vbd)


def unplug_vbd(ctx, vbd):
    """Detach; SMAPIv1 VDI.deactivate gives the VDI a fresh content_id if it has none."""
    db = ctx.db
    rec = db.raw("VBD", vbd)
    db.set("VBD", vbd, "currently_attached", False)
    vdi = rec["VDI"]
    if vdi != NULL_REF and db.exists("VDI", vdi):
        vdi_rec = db.raw("VDI", vdi)
        if rec["mode"] == "RW" and ops_vdi.flavour(db, vdi_rec["SR"]) == "smapiv1" \
                and "content_id" not in vdi_rec["other_config"]:
            db.set("VDI", vdi, "other_config",
                   dict(vdi_rec["other_config"], content_id=str(uuidlib.uuid4())))
        ops_vdi.refresh_vdi_usage(ctx, vdi)
        ops_vdi.update_vdi_allowed_operations(db, vdi)
    update_vbd_allowed_operations(db, vbd)


@implements("VBD.plug")
def vbd_plug(ctx, vbd):
    db = ctx.db
    rec = db.raw("VBD", vbd)
    state = db.raw("VM", rec["VM"])["power_state"]
    if state != "Running":
        raise XapiError("VM_BAD_POWER_STATE", rec["VM"], "running", state.lower())
    if rec["currently_attached"]:
        raise XapiError("DEVICE_ALREADY_ATTACHED", vbd)
    plug_vbd(ctx, vbd)


@implements("VBD.unplug", "VBD.unplug_force")
def vbd_unplug(ctx, vbd):
    db = ctx.db
    rec = db.raw("VBD", vbd)
    if not rec["currently_attached"]:
        raise XapiError("DEVICE_ALREADY_DETACHED", vbd)
    if ctx.wire_name == "VBD.unplug" and not rec["unpluggable"]:
        raise XapiError("VBD_NOT_UNPLUGGABLE", vbd)
    unplug_vbd(ctx, vbd)


@implements("VIF.create")
def vif_create(ctx, record):
    db = ctx.db
    vm = record.get("VM", NULL_REF)
    if not db.exists("VM", vm):
        raise XapiError("HANDLE_INVALID", "VM", vm)
    device = str(record.get("device", ""))
    if userdevice_in_use(db, vm, "VIF", "device", device):
        raise XapiError("DEVICE_ALREADY_EXISTS", device)
    mac = record.get("MAC") or ""
    autogenerated = mac == ""
    record = dict(record, MAC=mac or random_mac())
    return create_from_record(ctx, "VIF", record, extra={
        "currently_attached": False, "MAC_autogenerated": autogenerated})


@implements("VIF.destroy")
def vif_destroy(ctx, vif):
    db = ctx.db
    rec = db.raw("VIF", vif)
    if rec["currently_attached"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "VIF '%s' still attached" % rec["uuid"])
    db.destroy("VIF", vif)


# ---- power operations -------------------------------------------------------------------------

def srs_of_vm(db, vm):
    srs = []
    for vbd in db.where("VBD", VM=vm):
        vdi = db.raw("VBD", vbd)["VDI"]
        if vdi != NULL_REF and db.exists("VDI", vdi):
            srs.append(db.raw("VDI", vdi)["SR"])
    return srs


def assert_host_sees_disks(ctx, vm, host):
    """VM_REQUIRES_SR [vm, sr] when ``host`` does not see the SR of one of the VM's disks."""
    for sr in srs_of_vm(ctx.db, vm):
        if host not in ctx.pool.hosts_with_sr(sr):
            raise XapiError("VM_REQUIRES_SR", vm, sr)


def choose_host(ctx, vm):
    """Where VM.start / VM.resume put a VM: its affinity when that host sees every disk, else
    the first host that does (the master first); NO_HOSTS_AVAILABLE when none does."""
    db = ctx.db
    current = db.raw("VM", vm)["resident_on"]
    if current != NULL_REF:
        return current
    candidates = [db.raw("VM", vm)["affinity"]] + ctx.pool.hosts()
    for host in candidates:
        if db.exists("host", host):
            try:
                assert_host_sees_disks(ctx, vm, host)
                return host
            except XapiError:
                continue
    raise XapiError("NO_HOSTS_AVAILABLE")


def set_power_state(ctx, vm, state, host=None):
    db = ctx.db
    old_state = db.raw("VM", vm)["power_state"]
    running = state in ("Running", "Paused")
    if running:
        host = host or choose_host(ctx, vm)
    db.update("VM", vm, power_state=state,
              resident_on=host if running else NULL_REF,
              domid=(db.raw("VM", vm)["domid"] if db.raw("VM", vm)["domid"] > 0
                     else random.randrange(1, 1000)) if running else -1)
    for vbd in db.where("VBD", VM=vm):
        rec = db.raw("VBD", vbd)
        if running and not rec["currently_attached"] and not rec["empty"]:
            plug_vbd(ctx, vbd)
        elif not running and rec["currently_attached"]:
            unplug_vbd(ctx, vbd)
    for vif in db.where("VIF", VM=vm):
        if db.raw("VIF", vif)["currently_attached"] != running:
            db.set("VIF", vif, "currently_attached", running)
    guests.on_power_change(db, vm, old_state, state)
    update_allowed_operations(db, vm)


@contextlib.contextmanager
def current_operation(ctx, vm, op):
    """The VM's current_operations holds ``op`` while it runs (for calls that wait)."""
    db = ctx.db
    key = ctx.task_ref or "OpaqueRef:" + str(uuidlib.uuid4())
    db.set("VM", vm, "current_operations", dict(db.raw("VM", vm)["current_operations"], **{key: op}))
    update_allowed_operations(db, vm)
    try:
        yield
    finally:
        if db.exists("VM", vm):
            ops = dict(db.raw("VM", vm)["current_operations"])
            ops.pop(key, None)
            db.set("VM", vm, "current_operations", ops)
            update_allowed_operations(db, vm)


def ask_guest(ctx, vm, op):
    """A request the guest must acknowledge (shutdown, reboot, suspend): waits, and fails if
    the guest does not cooperate (guests.py)."""
    if guests.cooperates(ctx.db.raw("VM", vm)):
        return
    with current_operation(ctx, vm, op):
        guests.wait_for_acknowledgement(ctx, vm, op)


def destroy_suspend_vdi(ctx, vm):
    db = ctx.db
    vdi = db.raw("VM", vm)["suspend_VDI"]
    db.set("VM", vm, "suspend_VDI", NULL_REF)
    if vdi != NULL_REF and db.exists("VDI", vdi):
        ops_vdi.vdi_destroy(ctx, vdi)


@implements("VM.start")
def vm_start(ctx, vm, start_paused, force):
    assert_operation(ctx.db, vm, "start")
    set_power_state(ctx, vm, "Paused" if start_paused else "Running")


@implements("VM.start_on")
def vm_start_on(ctx, vm, host, start_paused, force):
    assert_operation(ctx.db, vm, "start_on")
    assert_host_sees_disks(ctx, vm, host)
    set_power_state(ctx, vm, "Paused" if start_paused else "Running", host)


@implements("VM.hard_shutdown")
def vm_hard_shutdown(ctx, vm):
    assert_operation(ctx.db, vm, "hard_shutdown")
    hard_shutdown(ctx, vm)


def hard_shutdown(ctx, vm):
    """Also what revert does to a VM that is not Halted: a suspended VM loses its image."""
    if ctx.db.raw("VM", vm)["power_state"] == "Suspended":
        destroy_suspend_vdi(ctx, vm)
    set_power_state(ctx, vm, "Halted")


@implements("VM.clean_shutdown", "VM.shutdown")
def vm_clean_shutdown(ctx, vm):
    db = ctx.db
    if db.raw("VM", vm)["power_state"] == "Suspended" and ctx.wire_name == "VM.shutdown":
        hard_shutdown(ctx, vm)
        return
    assert_operation(db, vm, "clean_shutdown")
    try:
        ask_guest(ctx, vm, "clean_shutdown")
    except XapiError:
        if ctx.wire_name != "VM.shutdown":
            raise
        # VM.shutdown: a clean shutdown that fails becomes a hard one (xapi_vm.ml shutdown)
    if db.raw("VM", vm)["power_state"] != "Halted":
        set_power_state(ctx, vm, "Halted")


@implements("VM.clean_reboot")
def vm_clean_reboot(ctx, vm):
    assert_operation(ctx.db, vm, "clean_reboot")
    ask_guest(ctx, vm, "clean_reboot")
    reboot(ctx, vm)


@implements("VM.hard_reboot")
def vm_hard_reboot(ctx, vm):
    assert_operation(ctx.db, vm, "hard_reboot")
    reboot(ctx, vm)


def reboot(ctx, vm):
    """A new domain: the guest metrics of the old one go, running tools report again."""
    if guests.is_live(ctx.db.raw("VM", vm)):
        set_power_state(ctx, vm, "Halted")
        set_power_state(ctx, vm, "Running")


@implements("VM.pause")
def vm_pause(ctx, vm):
    assert_operation(ctx.db, vm, "pause")
    set_power_state(ctx, vm, "Paused")


@implements("VM.unpause")
def vm_unpause(ctx, vm):
    assert_operation(ctx.db, vm, "unpause")
    set_power_state(ctx, vm, "Running")


def suspend_image(ctx, vm, name):
    """A suspend VDI (memory image) in the VM's suspend_SR, else the pool's suspend image SR."""
    db = ctx.db
    rec = db.raw("VM", vm)
    sr = rec.get("suspend_SR", NULL_REF)
    if sr == NULL_REF or not db.exists("SR", sr):
        sr = db.raw("pool", db.refs("pool")[0])["suspend_image_SR"]
    size = max(int(rec.get("memory_static_max") or 0), 1 << 20)
    vdi = ops_vdi.vdi_create(ctx, {
        "name_label": "Suspend image", "name_description": name, "SR": sr,
        "virtual_size": size, "type": "suspend", "sharable": False, "read_only": False,
        "other_config": {}})
    # the guest's memory: a header, then pages of its own at the start and in the middle (a
    # sparse image, as a guest uses part of its RAM), different in every image
    uuid = db.raw("VDI", vdi)["uuid"]
    header = ("xapisim memory of VM %s, image %s|" % (rec["uuid"], uuid)).encode()
    ctx.pool.storage.write(uuid, 0, header + memory_pages(uuid, 256 << 10))
    ctx.pool.storage.write(uuid, size // 2, memory_pages(uuid + "/middle", 64 << 10))
    ops_vdi.refresh_vdi_usage(ctx, vdi)
    ops_vdi.refresh_sr_usage(ctx, sr)
    return vdi


def memory_pages(seed, length):
    """``length`` bytes that no other image holds (sha256 in counter mode over ``seed``)."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(("%s:%d" % (seed, counter)).encode()).digest()
        counter += 1
    return bytes(out[:length])


@implements("VM.suspend")
def vm_suspend(ctx, vm):
    assert_operation(ctx.db, vm, "suspend")
    ask_guest(ctx, vm, "suspend")
    image = suspend_image(ctx, vm, "suspend image")
    set_power_state(ctx, vm, "Suspended")
    ctx.db.set("VM", vm, "suspend_VDI", image)
    update_allowed_operations(ctx.db, vm)


@implements("VM.resume")
def vm_resume(ctx, vm, start_paused, force):
    assert_operation(ctx.db, vm, "resume")
    destroy_suspend_vdi(ctx, vm)
    set_power_state(ctx, vm, "Paused" if start_paused else "Running")


@implements("VM.resume_on")
def vm_resume_on(ctx, vm, host, start_paused, force):
    assert_operation(ctx.db, vm, "resume_on")
    assert_host_sees_disks(ctx, vm, host)
    destroy_suspend_vdi(ctx, vm)
    set_power_state(ctx, vm, "Paused" if start_paused else "Running", host)


@implements("VM.pool_migrate")
def vm_pool_migrate(ctx, vm, host, options):
    """A migration to another host of the pool that sees the VM's disks, or to the host the VM
    is on (a "localhost migration", which XAPI performs), moves the guest to a new domain; the
    guest must suspend for it."""
    db = ctx.db
    assert_operation(db, vm, "pool_migrate")
    if not db.exists("host", host):
        raise XapiError("HANDLE_INVALID", "host", host)
    assert_host_sees_disks(ctx, vm, host)
    ask_guest(ctx, vm, "pool_migrate")
    db.update("VM", vm, domid=db.raw("VM", vm)["domid"] + 1, resident_on=host)


@implements("VM.power_state_reset")
def vm_power_state_reset(ctx, vm):
    set_power_state(ctx, vm, "Halted")


# ---- snapshot / checkpoint / clone / copy ---------------------------------------------------

def vm_metadata(db, vm):
    """What snapshot_metadata holds: the VM's record at snapshot time (serialised; the real one
    is XAPI's own serialisation, opaque to clients)."""
    rec = db.record("VM", vm)
    return json.dumps({"VM": rec}, sort_keys=True)


def copy_vm_record(ctx, vm, overrides):
    db = ctx.db
    fields = {k: v for k, v in db.raw("VM", vm).items() if k != "uuid"}
    fields.update(VM_RUNTIME_RESET)
    fields["other_config"] = dict(fields["other_config"])
    fields.update(overrides)
    new_vm = db.create("VM", fields)
    guests.copy_guest_metrics(db, vm, new_vm)
    return new_vm


def disk_vbds(db, vm, ignore_vdis=()):
    """The VBDs whose VDI is copied by snapshot/clone: non-CD, non-empty, not ignored."""
    out = []
    for vbd in db.where("VBD", VM=vm):
        rec = db.raw("VBD", vbd)
        if rec["type"] != "CD" and not rec["empty"] and rec["VDI"] not in ignore_vdis:
            out.append(vbd)
    return out


def copy_vbd(ctx, vbd, new_vm, new_vdi):
    db = ctx.db
    fields = {k: v for k, v in db.raw("VBD", vbd).items() if k != "uuid"}
    fields.update(VM=new_vm, VDI=new_vdi, currently_attached=False, device="",
                  storage_lock=False, current_operations={})
    if fields["type"] == "Disk":
        fields["other_config"] = dict(fields["other_config"], owner="")
    new = db.create("VBD", fields)
    update_vbd_allowed_operations(db, new)
    return new


def copy_vifs(ctx, vm, new_vm, keep_mac):
    db = ctx.db
    for vif in db.where("VIF", VM=vm):
        fields = {k: v for k, v in db.raw("VIF", vif).items() if k != "uuid"}
        fields.update(VM=new_vm, currently_attached=False, current_operations={})
        if not keep_mac:
            fields.update(MAC=random_mac(), MAC_autogenerated=True)
        db.create("VIF", fields)


def clone_vm(ctx, vm, new_name, disk_op, ignore_vdis=(), sr=NULL_REF, overrides=None):
    """Xapi_vm_clone.clone: a new VM record, its disks made by ``disk_op`` (VDI.snapshot,
    VDI.clone or VDI.copy), VBDs and VIFs copied."""
    db = ctx.db
    new_vm = copy_vm_record(ctx, vm, dict(overrides or {}, name_label=new_name))
    vbds = [v for v in db.where("VBD", VM=vm) if db.raw("VBD", v)["VDI"] not in ignore_vdis
            or db.raw("VBD", v)["VDI"] == NULL_REF]
    to_copy = set(disk_vbds(db, vm, ignore_vdis))
    for index, vbd in enumerate(vbds):
        rec = db.raw("VBD", vbd)
        new_vdi = rec["VDI"]
        if vbd in to_copy:
            if disk_op == "snapshot":
                new_vdi = ops_vdi.vdi_snapshot(ctx, rec["VDI"], {"epochhint": str(uuidlib.uuid4())})
            elif disk_op == "clone":
                new_vdi = ops_vdi.vdi_clone(ctx, rec["VDI"], {})
            else:
                target = sr if sr != NULL_REF and db.exists("SR", sr) \
                    else db.raw("VDI", rec["VDI"])["SR"]
                new_vdi = ops_vdi.vdi_copy(ctx, rec["VDI"], target, NULL_REF, NULL_REF)
            ctx.progress(0.9 * (index + 1) / max(len(vbds), 1))
        copy_vbd(ctx, vbd, new_vm, new_vdi)
    copy_vifs(ctx, vm, new_vm, keep_mac=disk_op == "snapshot")
    for vdi in {db.raw("VBD", v)["VDI"] for v in vbds} - {NULL_REF}:
        if db.exists("VDI", vdi):
            ops_vdi.update_vdi_allowed_operations(db, vdi)
    return new_vm


def snapshot_fields(db, vm, power_state):
    state = db.raw("VM", vm)["power_state"]
    return {"is_a_snapshot": True, "is_a_template": True, "snapshot_of": vm,
            "snapshot_time": now_text(),
            "snapshot_info": {"disk-snapshot-type": "crash_consistent",
                              "power-state-at-snapshot": state},
            "snapshot_metadata": vm_metadata(db, vm), "transportable_snapshot_id": "",
            "parent": db.raw("VM", vm)["parent"], "power_state": power_state,
            "allowed_operations": []}


@implements("VM.snapshot")
def vm_snapshot(ctx, vm, new_name, ignore_vdis):
    db = ctx.db
    assert_operation(db, vm, "snapshot")
    snap = clone_vm(ctx, vm, new_name, "snapshot", ignore_vdis=ignore_vdis,
                    overrides=snapshot_fields(db, vm, "Halted"))
    db.set("VM", vm, "parent", snap)
    update_allowed_operations(db, snap)
    update_allowed_operations(db, vm)
    return snap


@implements("VM.snapshot_with_quiesce")
def vm_snapshot_with_quiesce(ctx, vm, new_name):
    assert_operation(ctx.db, vm, "snapshot_with_quiesce")
    raise XapiError("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", vm, "")


@implements("VM.checkpoint")
def vm_checkpoint(ctx, vm, new_name):
    """Disks and memory: the snapshot is Suspended (with a suspend VDI) when the VM was Running
    or Suspended; the VM goes on running."""
    db = ctx.db
    assert_operation(db, vm, "checkpoint")
    if db.raw("VM", vm)["power_state"] == "Running":
        ask_guest(ctx, vm, "checkpoint")
    state = db.raw("VM", vm)["power_state"]
    snap_state = "Suspended" if state in ("Running", "Suspended") else "Halted"
    snap = clone_vm(ctx, vm, new_name, "snapshot", overrides=snapshot_fields(db, vm, snap_state))
    if state == "Running":
        # XAPI suspends the VM, snapshots the suspend VDI with the disks, resumes the VM (which
        # destroys its suspend VDI): the checkpoint's image is a snapshot of a VDI that is gone
        image = suspend_image(ctx, vm, "checkpoint image")
        db.set("VM", snap, "suspend_VDI", ops_vdi.vdi_snapshot(ctx, image, {}))
        ops_vdi.vdi_destroy(ctx, image)
    elif state == "Suspended" and db.raw("VM", vm)["suspend_VDI"] != NULL_REF:
        db.set("VM", snap, "suspend_VDI",
               ops_vdi.vdi_snapshot(ctx, db.raw("VM", vm)["suspend_VDI"], {}))
    db.set("VM", vm, "parent", snap)
    update_allowed_operations(db, snap)
    update_allowed_operations(db, vm)
    return snap


def clone_or_copy(ctx, vm, new_name, disk_op, sr=NULL_REF):
    db = ctx.db
    src = db.raw("VM", vm)
    suspended = src["power_state"] == "Suspended"
    overrides = {"is_a_snapshot": False, "snapshot_of": NULL_REF, "snapshot_time": EPOCH,
                 "snapshot_info": {}, "snapshot_metadata": "", "parent": NULL_REF,
                 "is_default_template": False, "generation_id": str(uuidlib.uuid4()),
                 "power_state": "Suspended" if suspended else "Halted"}
    new_vm = clone_vm(ctx, vm, new_name, disk_op, sr=sr, overrides=overrides)
    other = dict(db.raw("VM", new_vm)["other_config"], mac_seed=str(uuidlib.uuid4()))
    other.pop("default_template", None)
    if src["is_a_template"] and not src["is_a_snapshot"]:
        # xapi_vm_clone.ml: the copy of a template remembers the template's name
        other.setdefault("base_template_name", src["name_label"])
    db.set("VM", new_vm, "other_config", other)
    if suspended and src["suspend_VDI"] != NULL_REF and db.exists("VDI", src["suspend_VDI"]):
        image = (ops_vdi.vdi_clone(ctx, src["suspend_VDI"], {}) if disk_op == "clone" else
                 ops_vdi.vdi_copy(ctx, src["suspend_VDI"], db.raw("VDI", src["suspend_VDI"])["SR"],
                                  NULL_REF, NULL_REF))
        db.set("VM", new_vm, "suspend_VDI", image)
    update_allowed_operations(db, new_vm)
    return new_vm


@implements("VM.clone")
def vm_clone(ctx, vm, new_name):
    assert_operation(ctx.db, vm, "clone")
    return clone_or_copy(ctx, vm, new_name, "clone")


@implements("VM.copy")
def vm_copy(ctx, vm, new_name, sr):
    assert_operation(ctx.db, vm, "copy")
    return clone_or_copy(ctx, vm, new_name, "copy", sr=sr)


# ---- revert -----------------------------------------------------------------------------------

def revert_fields(db, snapshot):
    """revert_vm_fields: from snapshot_metadata, or the snapshot record itself if empty."""
    metadata = db.raw("VM", snapshot)["snapshot_metadata"]
    source = None
    if metadata:
        try:
            source = json.loads(metadata)["VM"]
        except (ValueError, KeyError, TypeError):
            source = None
    if source is None:
        source = db.raw("VM", snapshot)
    spec = db.model.classes["VM"].fields
    return {k: v for k, v in source.items()
            if k in spec and k not in REVERT_KEPT_FIELDS and (
                "VM", k) not in _derived_fields()}


def _derived_fields():
    from .db import RELATIONS
    return RELATIONS


def vm_of_snapshot(ctx, snapshot):
    """snapshot.snapshot_of, rebuilt from snapshot_metadata (same uuid) if it was destroyed."""
    db = ctx.db
    vm = db.raw("VM", snapshot)["snapshot_of"]
    if db.exists("VM", vm):
        return vm
    rec = db.raw("VM", snapshot)
    try:
        old = json.loads(rec["snapshot_metadata"])["VM"]
    except (ValueError, KeyError, TypeError):
        raise XapiError("VM_REVERT_FAILED", snapshot, vm)
    fields = revert_fields(db, snapshot)
    fields.update(uuid=old["uuid"], name_label=old["name_label"], power_state="Halted",
                  is_a_snapshot=False, is_a_template=False, snapshot_of=NULL_REF,
                  snapshot_metadata="", snapshot_info={}, parent=NULL_REF, domid=-1)
    new_vm = db.create("VM", fields)
    for other in db.where("VM", snapshot_of=vm):
        db.set("VM", other, "snapshot_of", new_vm)
    return new_vm


@implements("VM.revert")
def vm_revert(ctx, snapshot):
    """The clone path of released XAPI versions (Xapi_vm_snapshot.revert): the VM's snapshotted
    disks are destroyed and the snapshot's disks cloned in their place, so the refs of the VM's
    disks change; every VDI whose snapshot_of was an old disk is re-pointed to its clone."""
    db = ctx.db
    assert_operation(db, snapshot, "revert")
    vm = vm_of_snapshot(ctx, snapshot)
    if db.raw("VM", vm)["power_state"] != "Halted":
        hard_shutdown(ctx, vm)
    for field, value in revert_fields(db, snapshot).items():
        if db.raw("VM", vm).get(field) != value:
            db.set("VM", vm, field, value)

    snap_disk_vbds = disk_vbds(db, snapshot)
    old_disks = {db.raw("VDI", db.raw("VBD", v)["VDI"])["snapshot_of"]
                 for v in snap_disk_vbds if db.exists("VDI", db.raw("VBD", v)["VDI"])}
    # every old VBD goes; the VM's disks that the snapshot has a copy of are destroyed, the
    # others (added after the snapshot) are only detached
    for vbd in db.where("VBD", VM=vm):
        db.destroy("VBD", vbd)
    for vdi in old_disks:
        if db.exists("VDI", vdi):
            ops_vdi.vdi_destroy(ctx, vdi)
    destroy_suspend_vdi(ctx, vm)

    for index, vbd in enumerate(db.where("VBD", VM=snapshot)):
        rec = db.raw("VBD", vbd)
        new_vdi = rec["VDI"]
        if vbd in snap_disk_vbds:
            new_vdi = ops_vdi.vdi_clone(ctx, rec["VDI"], {})
            old_disk = db.raw("VDI", rec["VDI"])["snapshot_of"]
            # a snapshot disk whose snapshot_of is NULL (e.g. after a SMAPIv3 scan) has no
            # siblings to move
            if old_disk != NULL_REF:
                for sibling in db.where("VDI", snapshot_of=old_disk):
                    db.set("VDI", sibling, "snapshot_of", new_vdi)
            ctx.progress(0.9 * (index + 1) / max(len(snap_disk_vbds), 1))
        copy_vbd(ctx, vbd, vm, new_vdi)
    for vif in db.where("VIF", VM=vm):
        db.destroy("VIF", vif)
    copy_vifs(ctx, snapshot, vm, keep_mac=True)

    snap_rec = db.raw("VM", snapshot)
    if snap_rec["suspend_VDI"] != NULL_REF and db.exists("VDI", snap_rec["suspend_VDI"]):
        db.set("VM", vm, "suspend_VDI", ops_vdi.vdi_clone(ctx, snap_rec["suspend_VDI"], {}))
    db.update("VM", vm, parent=snapshot, power_state=snap_rec["power_state"])
    refresh_vdis_of(db, vm)
    refresh_vdis_of(db, snapshot)
    update_allowed_operations(db, vm)
    update_allowed_operations(db, snapshot)


# ---- hidden, deprecated ---------------------------------------------------------------------

@implements("VM.update_snapshot_metadata")
def vm_update_snapshot_metadata(ctx, vm, snapshot_of, snapshot_time, transportable_snapshot_id):
    """message_forwarding.ml: sets the four fields, not parent."""
    ctx.db.update("VM", vm, is_a_snapshot=True, snapshot_of=snapshot_of,
                  snapshot_time=snapshot_time,
                  transportable_snapshot_id=transportable_snapshot_id)
    update_allowed_operations(ctx.db, vm)


# ---- simulator-only: writes of a running guest ----------------------------------------------

@route("POST", "/xapisim/guest_write")
def guest_write(pool, req):
    """POST /xapisim/guest_write?vm=<uuid>&userdevice=<n>&offset=<bytes>, body = the bytes:
    what the guest of a Running VM writes to one of its disks (tracked by CBT)."""
    db = pool.db
    body = req.rfile.read(req.content_length or 0)
    with db.lock:
        if pool.session_of_http(req.param("session_id")) is None:
            req.respond(401, b"invalid session\n")
            return
        try:
            vm = db.ref_of_uuid("VM", req.param("vm", ""))
            offset = int(req.param("offset", "0"))
        except (XapiError, ValueError):
            req.respond(400, b"bad vm or offset\n")
            return
        if db.raw("VM", vm)["power_state"] != "Running":
            req.respond(409, ("VM is %s, not Running: only a running guest writes to its "
                              "disks\n" % db.raw("VM", vm)["power_state"]).encode())
            return
        userdevice = req.param("userdevice", "0")
        vbds = [v for v in db.where("VBD", VM=vm, userdevice=userdevice)
                if db.raw("VBD", v)["VDI"] != NULL_REF]
        if not vbds:
            req.respond(404, b"no disk at that userdevice\n")
            return
        vdi = db.raw("VBD", vbds[0])["VDI"]
        rec = db.raw("VDI", vdi)
        if offset < 0 or offset + len(body) > rec["virtual_size"]:
            req.respond(416, b"write beyond the end of the disk\n")
            return
        pool.storage.write(rec["uuid"], offset, body)
        ctx = Context(pool, None)
        ops_vdi.refresh_vdi_usage(ctx, vdi)
        ops_vdi.refresh_sr_usage(ctx, rec["SR"])
        db.save()
    req.respond(200, b"")


@route("POST", "/xapisim/guest")
def guest_control(pool, req):
    """POST /xapisim/guest?vm=<uuid>, body = JSON {"tools": bool, "ack_timeout": seconds}
    (either key optional): what runs inside the VM (guests.py). Answers the guest's state."""
    db = pool.db
    body = req.rfile.read(req.content_length or 0)
    with db.lock:
        if pool.session_of_http(req.param("session_id")) is None:
            req.respond(401, b"invalid session\n")
            return
        try:
            vm = db.ref_of_uuid("VM", req.param("vm", ""))
            spec = json.loads(body or b"{}")
            tools, ack_timeout = spec.get("tools"), spec.get("ack_timeout")
            if tools is not None and not isinstance(tools, bool) or ack_timeout is not None \
                    and (isinstance(ack_timeout, bool) or float(ack_timeout) < 0):
                raise ValueError(spec)
        except (XapiError, ValueError, TypeError, AttributeError):
            req.respond(400, b"bad vm or body: {\"tools\": bool, \"ack_timeout\": seconds}\n")
            return
        guest = guests.set_guest(db, vm, tools, ack_timeout)
        update_allowed_operations(db, vm)
        db.save()
    req.respond(200, json.dumps(guest).encode(), content_type="application/json")

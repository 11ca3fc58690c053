"""The guest inside a simulated VM: whether it runs guest tools, what the tools report, and how
it answers the requests that need its cooperation.

A VM's guest is kept under a private key of its record (never on the wire, copied with the
record by clone and snapshot): ``tools`` (the guest runs PV drivers / guest tools; a VM made
by ``VM.create`` has none, as a VM with a fresh disk has no OS) and ``ack_timeout`` (how long
the simulated xenopsd waits for the guest to acknowledge a shutdown or suspend request:
``domain_shutdown_ack_timeout``, 60 s by default in xenopsd). Both are set through the
simulator-only ``POST /xapisim/guest`` (see ``set_guest``).

Rules, from ``Xapi_vm_lifecycle.check_op_for_feature`` (xen-api master): a running HVM guest
without PV drivers lacks every feature. ``allowed_operations`` (strict) then leaves out
``clean_shutdown``, ``clean_reboot``, ``suspend``, ``checkpoint``, ``pool_migrate``; calling
them anyway (not strict) is accepted, and xenopsd waits ``ack_timeout`` for an
acknowledgement that never comes: ``VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT`` or
``VM_FAILED_SUSPEND_ACKNOWLEDGMENT``. PV guests support everything implicitly. ``hard_*``
operations never need the guest.
"""

import time

from .errors import XapiError
from .model import NULL_REF, now_text

GUEST_KEY = "_xapisim_guest"
DEFAULT_ACK_TIMEOUT = 60.0
# what XCP-ng's guest tools (xe-guest-utilities) advertise in VM_guest_metrics.other
TOOLS_FEATURES = {"feature-shutdown": "1", "feature-poweroff": "1", "feature-reboot": "1",
                  "feature-suspend": "1", "feature-vcpu-hotplug": "1", "feature-balloon": "1",
                  "has-vendor-device": "0", "platform-feature-multiprocessor-suspend": "1"}
TOOLS_VERSION = {"major": "8", "minor": "4", "micro": "0", "build": "1"}
SHUTDOWN_OPS = ("clean_shutdown", "clean_reboot", "shutdown")
SUSPEND_OPS = ("suspend", "checkpoint", "pool_migrate", "migrate_send")


def guest_of(rec):
    return rec.get(GUEST_KEY) or {}


def has_tools(rec):
    return bool(guest_of(rec).get("tools", False))


def domain_type(rec):
    """Helpers.domain_type: the VM's domain_type, or from HVM_boot_policy when unspecified."""
    value = rec.get("domain_type") or "unspecified"
    if value != "unspecified":
        return value
    return "hvm" if rec.get("HVM_boot_policy") else "pv"


def is_live(rec):
    return rec["power_state"] in ("Running", "Paused")


def implicit_support(rec):
    """Not live, booted PV, or PV drivers present: every feature is there."""
    return not is_live(rec) or domain_type(rec) != "hvm" or has_tools(rec)


def feature_error(rec, vm, op, strict):
    """check_op_for_feature: the error an operation gets for a guest lacking a feature."""
    if implicit_support(rec):
        return None
    if op in SHUTDOWN_OPS + SUSPEND_OPS:
        return XapiError("VM_LACKS_FEATURE", vm) if strict else None
    if op == "changing_VCPUs_live":
        return XapiError("VM_LACKS_FEATURE", vm)
    return None


def cooperates(rec):
    """Whether the guest answers a shutdown/suspend request (PV kernels and tools do)."""
    return implicit_support(rec)


def wait_for_acknowledgement(ctx, vm, op):
    """xenopsd's request_shutdown: a guest that does not cooperate is given ``ack_timeout``
    seconds, then the call fails. The pool's lock is released while waiting (other calls go
    on; a hard_shutdown meanwhile ends the wait, the VM halted)."""
    db = ctx.db
    deadline = time.monotonic() + float(guest_of(db.raw("VM", vm)).get("ack_timeout", DEFAULT_ACK_TIMEOUT))
    while db.exists("VM", vm) and is_live(db.raw("VM", vm)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            code = "VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT" if op in SHUTDOWN_OPS \
                else "VM_FAILED_SUSPEND_ACKNOWLEDGMENT"
            raise XapiError(code, vm)
        db.changed.wait(min(remaining, 1.0))


# ---- what the tools report ---------------------------------------------------------------------

def delete_guest_metrics(db, vm):
    gm = db.raw("VM", vm).get("guest_metrics", NULL_REF)
    db.set("VM", vm, "guest_metrics", NULL_REF)
    if gm != NULL_REF and db.exists("VM_guest_metrics", gm):
        db.destroy("VM_guest_metrics", gm)


def report_guest_metrics(db, vm):
    """What running tools write: drivers, features, an address per VIF, the OS."""
    host_part = 2 + int(db.raw("VM", vm)["uuid"][:4], 16) % 250
    networks = {}
    for vif in db.where("VIF", VM=vm):
        device = db.raw("VIF", vif)["device"] or "0"
        networks["%s/ip" % device] = "10.0.%d.%d" % (int(device) % 256, host_part)
    gm = db.create("VM_guest_metrics", {
        "os_version": {"name": "Debian GNU/Linux 12 (bookworm)", "distro": "debian",
                       "major": "12", "minor": "0", "uname": "6.1.0-xapisim"},
        "PV_drivers_version": dict(TOOLS_VERSION), "PV_drivers_up_to_date": True,
        "PV_drivers_detected": True, "networks": networks, "other": dict(TOOLS_FEATURES),
        "memory": {}, "disks": {}, "last_updated": now_text(), "live": True,
        "can_use_hotplug_vbd": "yes", "can_use_hotplug_vif": "yes",
        "netbios_name": {}, "services": {}, "other_config": {}})
    db.set("VM", vm, "guest_metrics", gm)


def copy_guest_metrics(db, source_vm, new_vm):
    """Xapi_vm_helpers.copy_guest_metrics: a clone or snapshot gets its own copy."""
    gm = db.raw("VM", source_vm).get("guest_metrics", NULL_REF)
    if gm == NULL_REF or not db.exists("VM_guest_metrics", gm):
        db.set("VM", new_vm, "guest_metrics", NULL_REF)
        return
    fields = dict(db.raw("VM_guest_metrics", gm))
    fields.pop("uuid", None)
    db.set("VM", new_vm, "guest_metrics", db.create("VM_guest_metrics", fields))


def update_vm_metrics(db, vm, started=False):
    """VM_metrics follows the domain: type, VCPUs, memory, start time."""
    rec = db.raw("VM", vm)
    metrics = rec.get("metrics", NULL_REF)
    if metrics == NULL_REF or not db.exists("VM_metrics", metrics):
        return
    if is_live(rec):
        fields = {"current_domain_type": domain_type(rec), "hvm": domain_type(rec) == "hvm",
                  "VCPUs_number": int(rec["VCPUs_at_startup"]),
                  "memory_actual": int(rec["memory_dynamic_max"]),
                  "state": [rec["power_state"].lower()], "last_updated": now_text()}
        if started:
            fields["start_time"] = now_text()
    else:
        fields = {"current_domain_type": "unspecified", "VCPUs_number": 0, "memory_actual": 0,
                  "state": [], "last_updated": now_text()}
    db.update("VM_metrics", metrics, **fields)


def on_power_change(db, vm, old_state, new_state):
    """Called on every power-state change: a start clears the old guest metrics (xapi_vm.ml
    start) and running tools report new ones; a halted VM keeps its last report."""
    rec = db.raw("VM", vm)
    started = old_state in ("Halted", "Suspended") and new_state in ("Running", "Paused")
    if started:
        delete_guest_metrics(db, vm)
        if has_tools(rec) or domain_type(rec) != "hvm":
            report_guest_metrics(db, vm)
    update_vm_metrics(db, vm, started)


def set_guest(db, vm, tools=None, ack_timeout=None):
    """The simulator-only control of a VM's guest. Installing tools in a running guest makes
    them report at once; removing them removes the report."""
    rec = db.raw("VM", vm)
    guest = dict(guest_of(rec))
    if tools is not None:
        guest["tools"] = bool(tools)
    if ack_timeout is not None:
        guest["ack_timeout"] = float(ack_timeout)
    rec[GUEST_KEY] = guest
    if tools is not None and is_live(rec):
        delete_guest_metrics(db, vm)
        if tools or domain_type(rec) != "hvm":
            report_guest_metrics(db, vm)
    db.touch("VM", vm)
    return guest

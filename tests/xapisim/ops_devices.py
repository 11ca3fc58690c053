"""Hot-plug of devices: CD insert/eject, VIF plug/unplug, PBD plug/unplug.

From xen-api master: ``xapi_vbd.ml``/``xapi_vbd_helpers.ml`` (insert/eject only on CD drives:
``VBD_NOT_REMOVABLE_MEDIA``, ``VBD_NOT_EMPTY``, ``VBD_IS_EMPTY``), ``xapi_vif_helpers.ml``
(plug/unplug only on a running VM, ``DEVICE_ALREADY_ATTACHED``/``_DETACHED``; a running HVM
guest without PV drivers: ``VM_MISSING_PV_DRIVERS``), ``xapi_pbd.ml`` (plug and unplug are
idempotent; unplug refuses while a VDI of the SR is attached: ``VDI_IN_USE [vdis]``).
"""

from . import guests, ops_vm
from .api import implements
from .errors import XapiError
from .model import NULL_REF


# ---- CD drives ---------------------------------------------------------------------------------

def cd_drive(db, vbd):
    rec = db.raw("VBD", vbd)
    if rec["type"] != "CD":
        raise XapiError("VBD_NOT_REMOVABLE_MEDIA", vbd)
    return rec


@implements("VBD.insert")
def vbd_insert(ctx, vbd, vdi):
    db = ctx.db
    rec = cd_drive(db, vbd)
    if not rec["empty"]:
        raise XapiError("VBD_NOT_EMPTY", vbd)
    db.update("VBD", vbd, VDI=vdi, empty=False)
    ops_vm.update_vbd_allowed_operations(db, vbd)


@implements("VBD.eject")
def vbd_eject(ctx, vbd):
    db = ctx.db
    rec = cd_drive(db, vbd)
    if rec["empty"]:
        raise XapiError("VBD_IS_EMPTY", vbd)
    db.update("VBD", vbd, VDI=NULL_REF, empty=True)
    ops_vm.update_vbd_allowed_operations(db, vbd)


# ---- network interfaces ------------------------------------------------------------------------

def vif_plug_error(db, vif, op):
    rec = db.raw("VIF", vif)
    vm = rec["VM"]
    vm_rec = db.raw("VM", vm)
    if vm_rec["is_control_domain"] and op == "plug":
        return XapiError("OPERATION_NOT_ALLOWED", "Control domain does not support hotplug")
    if vm_rec["power_state"] != "Running":
        return XapiError("VM_BAD_POWER_STATE", vm, "running", vm_rec["power_state"].lower())
    if op == "plug" and rec["currently_attached"]:
        return XapiError("DEVICE_ALREADY_ATTACHED", vif)
    if op == "unplug" and not rec["currently_attached"]:
        return XapiError("DEVICE_ALREADY_DETACHED", vif)
    if guests.domain_type(vm_rec) == "hvm" and not guests.has_tools(vm_rec):
        return XapiError("VM_MISSING_PV_DRIVERS", vm)
    return None


@implements("VIF.plug")
def vif_plug(ctx, vif):
    error = vif_plug_error(ctx.db, vif, "plug")
    if error is not None:
        raise error
    ctx.db.set("VIF", vif, "currently_attached", True)


@implements("VIF.unplug", "VIF.unplug_force")
def vif_unplug(ctx, vif):
    error = vif_plug_error(ctx.db, vif, "unplug")
    if error is not None:
        raise error
    ctx.db.set("VIF", vif, "currently_attached", False)


# ---- storage attachment ------------------------------------------------------------------------

@implements("PBD.plug")
def pbd_plug(ctx, pbd):
    if not ctx.db.raw("PBD", pbd)["currently_attached"]:
        ctx.db.set("PBD", pbd, "currently_attached", True)


@implements("PBD.unplug")
def pbd_unplug(ctx, pbd):
    db = ctx.db
    rec = db.raw("PBD", pbd)
    if not rec["currently_attached"]:
        return
    active = sorted(vdi for vdi in db.where("VDI", SR=rec["SR"])
                    if any(db.raw("VBD", vbd)["currently_attached"]
                           for vbd in db.where("VBD", VDI=vdi)))
    if active:
        raise XapiError("VDI_IN_USE", *active)
    db.set("PBD", pbd, "currently_attached", False)


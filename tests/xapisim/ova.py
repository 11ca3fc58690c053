"""VM metadata export and import (``ova.xml``), after xen-api ``export.ml`` and ``import.ml``.

Export (``Export.vm_metadata`` with ``preserve_power_state=true``): a table maps every object
to take (the VM, its VIFs and their networks, its VBDs, their VDIs and SRs, with
``export_snapshots`` its snapshot VMs the same way, a suspended VM's suspend VDI, its
``resident_on``/``affinity`` hosts and its ``parent`` VM) to an export id ``Ref:N`` from one
counter that never restarts. ``Export.update_table`` adds refs without checking them, so
``OpaqueRef:NULL`` (a halted VM's ``resident_on``) gets an id too, and every NULL reference
rewritten through the table becomes that id: a VM without a parent is exported with
``parent = "Ref:N"`` naming no object, and so is ``snapshot_of`` of a VM that is no snapshot.
Rewritten: VM ``snapshot_of``, ``parent``, ``suspend_VDI``, ``resident_on``, ``affinity``,
``VIFs``/``VBDs`` (filtered); VBD/VIF ``VM``, ``VDI``, ``network``; VDI and network ``SR``/
``VBDs``/``VIFs``. Kept as they are: VM ``snapshots`` and ``children``, VDI ``snapshot_of``/
``snapshots`` (internal refs of the source pool). Objects are listed host, VM, VBD, VIF,
network, VDI, SR; ``ova.xml`` is rpclib's ``Xmlrpc.to_string`` of ``{version, objects:
[{class, id, snapshot}]}`` (strings and ints as bare ``<value>``), alone in a tar.

Import (``Import.metadata_handler``): see ``import_metadata``.
Not simulated: VM_metrics/guest metrics, VGPUs, VTPMs, PVS objects, ISO SRs, compressed
archives, ``live``'s memory check and ``check_cpu``'s CPUID check (both only look at running
VMs).
"""

import itertools
import re
import tarfile
import threading
import time
import uuid as uuidlib
import xmlrpc.client

from . import ops_vm
from .api import Context, create_from_record
from .errors import XapiError
from .model import NULL_REF, DecodeError, Type, datamodel, decode, encode, rpc_string

XAPI_MAJOR, XAPI_MINOR = 25, 6     # what this simulated host reports (software_version xapi)
EXPORT_VSN = 2                     # Xapi_globs.export_vsn
SYNC_KEYS = ("config-drive",)      # Xapi_globs.vdi_other_config_sync_keys
_ids = itertools.count()
_ids_lock = threading.Lock()


# ---- rpclib's XML-RPC text --------------------------------------------------------------------

def parse_rpc(text):
    """rpclib ``Xmlrpc.of_string``: any XML-RPC value (tagged or bare strings)."""
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    try:
        return xmlrpc.client.loads("<?xml version='1.0'?><methodResponse><params><param>%s"
                                   "</param></params></methodResponse>" % text,
                                   use_datetime=False)[0][0]
    except Exception as e:  # noqa: BLE001 - any parse failure is an import error
        raise XapiError("IMPORT_ERROR", "cannot parse ova.xml: %s" % e)


# ---- export -------------------------------------------------------------------------------------

def new_id():
    with _ids_lock:
        return "Ref:%d" % next(_ids)


class Table:
    """Export.create_table: internal ref -> export id."""

    def __init__(self):
        self.ids = {}

    def add(self, ref):
        if ref not in self.ids:
            self.ids[ref] = new_id()

    def lookup(self, ref):
        return self.ids.get(ref, NULL_REF)

    def filter(self, refs):
        return [self.ids[r] for r in refs if r in self.ids]


def bool_param(req, name, default):
    """Export.bool_from_request: the query only, OCaml bool_of_string."""
    value = req.query.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise XapiError("INTERNAL_ERROR", 'Invalid_argument("bool_of_string")')
    return value == "true"


def add_vm(db, table, vm, snapshots, excluded):
    """Export.update_table."""
    if not db.exists("VM", vm) or vm in table.ids:
        return
    table.add(vm)
    rec = db.record("VM", vm)
    if "vif" not in excluded:
        for vif in rec["VIFs"]:
            table.add(vif)
            table.add(db.raw("VIF", vif)["network"])
    if "vbd" not in excluded:
        for vbd in rec["VBDs"]:
            table.add(vbd)
            vbd_rec = db.raw("VBD", vbd)
            if not vbd_rec["empty"]:
                add_vdi(db, table, vbd_rec["VDI"])
    if snapshots:
        for snap in rec["snapshots"]:
            add_vm(db, table, snap, False, excluded)
    if rec["power_state"] == "Suspended" and db.exists("VDI", rec["suspend_VDI"]):
        add_vdi(db, table, rec["suspend_VDI"])
    table.add(rec["metrics"])
    table.add(rec["guest_metrics"])
    table.add(rec["resident_on"])
    table.add(rec["affinity"])
    if snapshots and db.exists("VM", rec["parent"]):
        add_vm(db, table, rec["parent"], False, excluded)


def add_vdi(db, table, vdi):
    table.add(vdi)
    if db.exists("VDI", vdi):
        table.add(db.raw("VDI", vdi)["SR"])


def export_record(cls, rec):
    return encode(rec, Type("record", cls))


def vm_object(db, table, vm, with_snapshot_metadata):
    """Export.make_vm with preserve_power_state=true."""
    rec = db.record("VM", vm)
    lookup = table.lookup
    rec.update(suspend_VDI=lookup(rec["suspend_VDI"]), current_operations={},
               allowed_operations=[], VIFs=table.filter(rec["VIFs"]),
               VBDs=table.filter(rec["VBDs"]), VGPUs=[], crash_dumps=[], VTPMs=[],
               resident_on=lookup(rec["resident_on"]), affinity=lookup(rec["affinity"]),
               consoles=[], metrics=lookup(rec["metrics"]),
               guest_metrics=lookup(rec["guest_metrics"]), protection_policy=NULL_REF,
               blobs={})
    if with_snapshot_metadata:
        rec.update(snapshot_of=lookup(rec["snapshot_of"]), parent=lookup(rec["parent"]))
    else:
        rec.update(is_a_snapshot=False, snapshot_of=NULL_REF, snapshots=[],
                   snapshot_time="19700101T00:00:00Z", transportable_snapshot_id="",
                   parent=NULL_REF)
    return rec


def objects_of(db, table, with_snapshot_metadata):
    """Export.make_all: one obj per table entry that exists, class by class."""
    lookup, out = table.lookup, []

    def take(cls):
        return [r for r in db.refs(cls) if r in table.ids]

    for host in take("host"):
        rec = db.record("host", host)
        rec.update(PIFs=[], PBDs=[], other_config={}, capabilities=[], software_version={},
                   crash_dump_sr=lookup(rec.get("crash_dump_sr", NULL_REF)),
                   suspend_image_sr=lookup(rec.get("suspend_image_sr", NULL_REF)),
                   resident_VMs=table.filter(rec["resident_VMs"]), tags=[])
        out.append(("host", host, rec))
    for vm in take("VM"):
        out.append(("VM", vm, vm_object(db, table, vm, with_snapshot_metadata)))
    for vbd in take("VBD"):
        rec = db.record("VBD", vbd)
        rec.update(VDI=lookup(rec["VDI"]), VM=lookup(rec["VM"]), metrics=NULL_REF,
                   current_operations={}, allowed_operations=[])
        out.append(("VBD", vbd, rec))
    for vif in take("VIF"):
        rec = db.record("VIF", vif)
        rec.update(network=lookup(rec["network"]), VM=lookup(rec["VM"]), metrics=NULL_REF,
                   current_operations={}, allowed_operations=[])
        out.append(("VIF", vif, rec))
    for net in take("network"):
        rec = db.record("network", net)
        rec.update(VIFs=table.filter(rec["VIFs"]), PIFs=[], current_operations={},
                   allowed_operations=[])
        out.append(("network", net, rec))
    for vdi in take("VDI"):
        rec = db.record("VDI", vdi)
        rec.update(VBDs=table.filter(rec["VBDs"]), crash_dumps=[], SR=lookup(rec["SR"]),
                   current_operations={}, allowed_operations=[])
        out.append(("VDI", vdi, rec))
    for sr in take("SR"):
        rec = db.record("SR", sr)
        rec.update(VDIs=table.filter(rec["VDIs"]), PBDs=[], current_operations={},
                   allowed_operations=[])
        out.append(("SR", sr, rec))
    return [{"class": cls, "id": table.ids[ref], "snapshot": export_record(cls, rec)}
            for cls, ref, rec in out]


def version_struct(db):
    host = db.raw("host", db.raw("pool", db.refs("pool")[0])["master"])
    soft = host["software_version"]
    return {"hostname": host["hostname"], "date": "2025-06-01",
            "product_version": soft.get("product_version", ""),
            "product_brand": soft.get("product_brand", ""), "build_number": "xapisim",
            "xapi_major": XAPI_MAJOR, "xapi_minor": XAPI_MINOR, "export_vsn": EXPORT_VSN}


def vms_to_export(db, req):
    """Export.metadata_handler: ``all`` (not default templates), else ``ref`` or ``uuid``."""
    if bool_param(req, "all", False):
        return [vm for vm, rec in db.tables["VM"].items()
                if not (rec["is_default_template"] or (rec["is_a_template"] and
                        rec["other_config"].get("default_template") == "true"))
                and not rec["is_control_domain"]]
    if "ref" in req.query:
        return [req.query["ref"]]
    if "uuid" not in req.query:
        raise XapiError("INTERNAL_ERROR", "Not_found")
    return [db.ref_of_uuid("VM", req.query["uuid"])]


def excluded_devices(req):
    value = req.query.get("excluded_device_types", "")
    kinds = [k.strip().lower() for k in value.split(",")] if value else []
    for kind in kinds:
        if kind not in ("vif", "vbd", "vgpu", "vtpm"):
            raise XapiError("INTERNAL_ERROR", "Type '%s' not one of [vif; vbd; vgpu; vtpm]" % kind)
    return kinds


def ova_xml(db, vms, with_snapshot_metadata, excluded):
    table = Table()
    for vm in vms:
        add_vm(db, table, vm, with_snapshot_metadata, excluded)
    header = {"version": version_struct(db),
              "objects": objects_of(db, table, with_snapshot_metadata)}
    return rpc_string(header)


def export_tar(pool, req, task):
    """The whole answer body of GET /export_metadata (metadata only, small)."""
    db = pool.db
    with_snapshots = bool_param(req, "export_snapshots", True)
    bool_param(req, "include_vhd_parents", False)   # our disks have no VHD parents
    bool_param(req, "include_dom0", True)
    excluded = excluded_devices(req)
    vms = vms_to_export(db, req)
    for vm in vms:
        if not db.exists("VM", vm):
            raise XapiError("HANDLE_INVALID", "VM", vm)
        ops_vm.assert_operation(db, vm, "metadata_export")
    data = ova_xml(db, vms, with_snapshots, excluded).encode("utf-8")
    return tar_of("ova.xml", data)


def tar_of(name, data):
    """One ustar member followed by two zero blocks (Tar_helpers.write_end), no record padding."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    head = info.tobuf(format=tarfile.USTAR_FORMAT)
    pad = (-len(data)) % 512
    return head + data + bytes(pad) + bytes(1024)


def read_ova_xml(rfile, length):
    """Import.with_open_archive (uncompressed only): the first member must be ova.xml; the rest
    of the body is drained."""
    head = rfile.read(512)
    if len(head) != 512:
        raise XapiError("IMPORT_ERROR_PREMATURE_EOF")
    try:
        info = tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.TarError:
        raise XapiError("INTERNAL_ERROR", "Tar.Header.Checksum_mismatch (compressed archives "
                        "are not simulated)")
    if info.name != "ova.xml":
        raise XapiError("IMPORT_ERROR_UNEXPECTED_FILE", "ova.xml", info.name)
    xml = rfile.read(info.size)
    if len(xml) != info.size:
        raise XapiError("IMPORT_ERROR_PREMATURE_EOF")
    consumed = 512 + info.size
    if length is not None:
        remaining = length - consumed
        while remaining > 0:
            piece = rfile.read(min(remaining, 1 << 16))
            if not piece:
                break
            remaining -= len(piece)
    return xml.decode("utf-8", "replace")


# ---- import ---------------------------------------------------------------------------------------

class ImportFailure(Exception):
    """Import.IFailure, turned into IMPORT_ERROR_* by with_error_handling."""

    def __init__(self, code, *params):
        super().__init__(code)
        self.error = XapiError(code, *params)


def record_of(cls, snapshot):
    """API.<cls>_t_of_rpc: native field values; missing or malformed fields get defaults."""
    spec = datamodel().classes[cls]
    rec = {}
    for name, field in spec.fields.items():
        if name in snapshot:
            try:
                rec[name] = decode(snapshot[name], field.type)
                continue
            except DecodeError:
                pass
        rec[name] = field.initial()
    return rec


def flag(query_list, key):
    """Import.find_query_flag: the query only (first value), "true" exactly."""
    for k, v in query_list:
        if k == key:
            return v == "true"
    return False


def vdi_map_of(query_list):
    """Import.read_map_params "vdi": keys ``vdi:<src>`` -> value."""
    out = {}
    for k, v in query_list:
        if k.startswith("vdi") and len(k) > 4:
            out.setdefault(k[4:], v)
    return out


class Importer:
    def __init__(self, pool, session_ref, task, query_list, objects):
        self.pool, self.db, self.task = pool, pool.db, task
        self.ctx = Context(pool, session_ref, task_ref=None, wire_name="VM.import")
        self.restore = flag(query_list, "restore")
        self.force = flag(query_list, "force")
        self.dry_run = flag(query_list, "dry_run")
        self.live = flag(query_list, "live")
        self.check_cpu = flag(query_list, "check_cpu")
        self.vdi_map = vdi_map_of(query_list)
        self.objects = objects
        self.table = {}          # export id -> local ref (Import.state.table, latest wins)
        self.table_cls = {}      # export id -> class
        self.created_vms = []
        self.cleanup = []

    # -- state table --
    def put(self, cls, xid, ref):
        self.table[xid] = ref
        self.table_cls[xid] = cls

    def exists(self, xid):
        return xid in self.table

    def lookup(self, xid):
        if xid not in self.table:
            raise ImportFailure("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", xid)
        return self.table[xid]

    def find_in_export(self, xid):
        for obj in self.objects:
            if obj.get("id") == xid:
                return obj.get("snapshot") or {}
        raise ImportFailure("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", xid)

    # -- class handlers, in Import.handlers order --
    def run(self):
        order = (("host", self.host), ("SR", self.sr), ("VDI", self.vdi), ("VM", self.vm),
                 ("network", self.network), ("VBD", self.vbd), ("VIF", self.vif))
        for cls, handler in order:
            for obj in self.objects:
                if obj.get("class") == cls:
                    handler(obj["id"], obj.get("snapshot") or {})
        if not self.dry_run:
            self.update_snapshot_and_parent_links()

    def host(self, xid, snap):
        rec = record_of("host", snap)
        entry = self.db.by_uuid.get(rec["uuid"])
        self.put("host", xid, entry[1] if entry and entry[0] == "host" else NULL_REF)

    def sr(self, xid, snap):
        rec = record_of("SR", snap)
        entry = self.db.by_uuid.get(rec["uuid"])
        if entry and entry[0] == "SR":
            self.put("SR", xid, entry[1])

    def vdi(self, xid, snap):
        """Import.VDI (metadata import): vdi: map (uuid, then SCSIid) -> same SR and location
        -> other_config maps_to -> skip with force -> VDI_LOCATION_MISSING / _CONTENT_ID_."""
        db = self.db
        rec = record_of("VDI", snap)
        original_sr = record_of("SR", self.find_in_export(rec["SR"]))
        if original_sr["content_type"] == "iso":
            return    # ISO SRs are not simulated: the CD is ejected
        found = self.by_vdi_map(rec)
        if found is None and self.exists(rec["SR"]):
            sr = self.lookup(rec["SR"])
            found = next((r for r, v in db.tables["VDI"].items()
                          if v["location"] == rec["location"] and v["SR"] == sr), None)
        if found is None and "maps_to" in rec["other_config"]:
            found = rec["other_config"]["maps_to"]
        if found is None:
            if self.force:
                return
            if self.exists(rec["SR"]):
                error = XapiError("VDI_LOCATION_MISSING", self.lookup(rec["SR"]), rec["location"])
            else:
                error = XapiError("VDI_CONTENT_ID_MISSING")
            if self.dry_run and self.live:
                self.put("VDI", xid, "OpaqueRef:" + str(uuidlib.uuid4()))
                return
            raise error
        self.put("VDI", xid, found)
        if not self.dry_run and db.exists("VDI", found):
            other = dict(db.raw("VDI", found)["other_config"])
            for key in SYNC_KEYS:
                other.pop(key, None)
                if key in rec["other_config"]:
                    other[key] = rec["other_config"][key]
            if other != db.raw("VDI", found)["other_config"]:
                db.set("VDI", found, "other_config", other)

    def by_vdi_map(self, rec):
        db = self.db
        scsiid = rec["sm_config"].get("SCSIid")
        wanted = self.vdi_map.get(rec["uuid"])
        if wanted is None and scsiid is not None:
            wanted = self.vdi_map.get(scsiid)
        if wanted is None:
            wanted = scsiid
            if wanted is None:
                return None
            return next((r for r, v in db.tables["VDI"].items()
                         if v["sm_config"].get("SCSIid") == wanted), None)
        entry = db.by_uuid.get(wanted)
        if entry and entry[0] == "VDI":
            return entry[1]
        return next((r for r, v in db.tables["VDI"].items()
                     if v["sm_config"].get("SCSIid") == wanted), None)

    def vm(self, xid, snap):
        """Import.VM: precheck then create (VM.create, then the DB writes XAPI does)."""
        db = self.db
        rec = record_of("VM", snap)
        default = rec["is_default_template"] or (
            rec["is_a_template"] and rec["other_config"].get("default_template") == "true")
        same_name = db.where("VM", name_label=rec["name_label"])
        if default and same_name:
            self.put("VM", xid, same_name[0])
            self.created_vms.append(same_name[0])
            return
        existing = db.by_uuid.get(rec["uuid"])
        replace = None
        if self.restore and existing and existing[0] == "VM":
            vm = existing[1]
            state = db.raw("VM", vm)["power_state"]
            if state != "Halted":
                if self.force:
                    return
                raise XapiError("VM_BAD_POWER_STATE", vm, "halted", state.lower())
            version = db.raw("VM", vm)["version"]
            if version >= rec["version"] and not self.force:
                raise XapiError("VM_TO_IMPORT_IS_NOT_NEWER_VERSION", vm, version, rec["version"])
            replace = vm
        elif not self.force:
            rec["is_default_template"] = False
            rec["other_config"].pop("default_template", None)
        if self.dry_run:
            self.put("VM", xid, "OpaqueRef:" + str(uuidlib.uuid4()))
            return
        if replace is not None:
            for vif in db.where("VIF", VM=replace):
                self.ctx.call("VIF.destroy", vif)
            for vbd in db.where("VBD", VM=replace):
                self.ctx.call("VBD.destroy", vbd)
            self.ctx.call("VM.destroy", replace)
        self.create_vm(xid, rec)

    def create_vm(self, xid, rec):
        db = self.db
        other = {k: v for k, v in rec["other_config"].items() if k != "grant_api_access"}
        if not self.restore:
            other["mac_seed"] = str(uuidlib.uuid4())
        values = dict(rec, other_config=other, appliance=NULL_REF, protection_policy=NULL_REF,
                      version=rec["version"] + 1 if self.restore else 0)
        if not (self.live or rec["is_a_template"]):
            values["generation_id"] = "%d:%d" % (uuidlib.uuid4().int >> 65, uuidlib.uuid4().int >> 65)
        for name, field in datamodel().classes["VM"].fields.items():
            # create_from_record takes refs as they come; the simulator's create checks them,
            # and the fields that matter are written below anyway
            target = field.type.name
            if field.type.kind == "ref" and target in db.tables and values.get(name, NULL_REF) \
                    != NULL_REF and not db.exists(target, values[name]):
                values[name] = NULL_REF
        vm = ops_vm.vm_create(self.ctx, values)
        if self.restore:
            db.set("VM", vm, "uuid", rec["uuid"])
        self.cleanup.append(lambda: self.destroy_vm(vm))
        db.update("VM", vm, last_booted_record=rec["last_booted_record"],
                  last_boot_CPU_flags=rec["last_boot_CPU_flags"])
        db.set("VM", vm, "other_config", dict(db.raw("VM", vm)["other_config"],
                                               import_task=self.task))
        if rec["power_state"] == "Suspended":
            try:
                db.update("VM", vm, power_state="Suspended",
                          suspend_VDI=self.lookup(rec["suspend_VDI"]))
            except ImportFailure:
                if not self.force:
                    raise
        else:
            db.set("VM", vm, "power_state", "Halted")
        db.update("VM", vm, is_control_domain=rec["is_control_domain"],
                  resident_on=self.table.get(rec["resident_on"], NULL_REF),
                  affinity=self.table.get(rec["affinity"], NULL_REF),
                  is_a_snapshot=rec["is_a_snapshot"], snapshot_info=rec["snapshot_info"],
                  snapshot_of=rec["snapshot_of"], snapshot_time=rec["snapshot_time"],
                  transportable_snapshot_id=rec["transportable_snapshot_id"])
        if not db.exists("SR", rec["suspend_SR"]):
            db.set("VM", vm, "suspend_SR", NULL_REF)
        db.update("VM", vm, parent=rec["parent"], bios_strings=rec["bios_strings"])
        if not self.force:
            db.set("VM", vm, "current_operations",
                   dict(db.raw("VM", vm)["current_operations"], **{self.task: "import"}))
        ops_vm.update_allowed_operations(db, vm)
        self.put("VM", xid, vm)
        self.created_vms.append(vm)

    def destroy_vm(self, vm):
        db = self.db
        if not db.exists("VM", vm):
            return
        ops = dict(db.raw("VM", vm)["current_operations"])
        ops.pop(self.task, None)
        db.update("VM", vm, current_operations=ops, power_state="Halted")
        self.ctx.call("VM.destroy", vm)

    def network(self, xid, snap):
        """Import.Net: by name_label, else by bridge, else a new network."""
        db = self.db
        rec = record_of("network", snap)
        found = db.where("network", name_label=rec["name_label"]) or \
            db.where("network", bridge=rec["bridge"])
        if found:
            self.put("network", xid, found[0])
            return
        if self.dry_run:
            self.put("network", xid, "OpaqueRef:" + str(uuidlib.uuid4()))
            return
        net = create_from_record(self.ctx, "network", {
            k: v for k, v in rec.items() if k not in ("uuid", "VIFs", "PIFs")})
        db.set("network", net, "other_config", dict(db.raw("network", net)["other_config"],
                                                     import_task=self.task))
        self.cleanup.append(lambda: db.exists("network", net) and db.destroy("network", net))
        self.put("network", xid, net)

    def vbd(self, xid, snap):
        """Import.VBD."""
        db = self.db
        rec = record_of("VBD", snap)
        if self.restore:
            entry = db.by_uuid.get(rec["uuid"])
            if entry and entry[0] == "VBD":
                self.put("VBD", xid, entry[1])
                return
        vm = self.lookup(rec["VM"])
        self.find_in_export(rec["VM"])   # Failed_to_find_object when the VM is missing
        has_vdi = self.exists(rec["VDI"])
        if rec["currently_attached"] and not has_vdi and rec["type"] != "CD":
            raise ImportFailure("IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND")
        if not has_vdi:
            if rec["type"] == "Disk":
                return    # "Cannot import VM's disk": skipped
            rec.update(VDI=NULL_REF, empty=True)
        else:
            rec["VDI"] = self.lookup(rec["VDI"])
        rec["VM"] = vm
        if self.dry_run:
            self.put("VBD", xid, "OpaqueRef:" + str(uuidlib.uuid4()))
            return
        fields = {k: v for k, v in rec.items() if k not in ("uuid", "metrics")}
        fields.update(device="", currently_attached=False, current_operations={},
                      allowed_operations=[])
        vbd = create_from_record(self.ctx, "VBD", fields, extra={
            "currently_attached": rec["currently_attached"], "device": "",
            "VDI": rec["VDI"], "empty": rec["empty"]})
        if self.restore:
            db.set("VBD", vbd, "uuid", rec["uuid"])
        ops_vm.update_vbd_allowed_operations(db, vbd)
        self.cleanup.append(lambda: db.exists("VBD", vbd) and db.destroy("VBD", vbd))
        self.put("VBD", xid, vbd)

    def vif(self, xid, snap):
        """Import.VIF: the network from other_config maps_to, else the table."""
        db = self.db
        rec = record_of("VIF", snap)
        if self.restore:
            entry = db.by_uuid.get(rec["uuid"])
            if entry and entry[0] == "VIF":
                self.put("VIF", xid, entry[1])
                return
        if not self.restore:
            rec["MAC"] = ""
        vm = self.lookup(rec["VM"])
        other = dict(rec["other_config"])
        net = other.pop("maps_to", None) or self.lookup(rec["network"])
        if self.dry_run:
            self.put("VIF", xid, "OpaqueRef:" + str(uuidlib.uuid4()))
            return
        fields = {k: v for k, v in rec.items() if k not in ("uuid", "metrics")}
        fields.update(VM=vm, network=net, other_config=other, currently_attached=False,
                      current_operations={}, allowed_operations=[])
        vif = ops_vm.vif_create(self.ctx, fields)
        if self.restore:
            db.set("VIF", vif, "uuid", rec["uuid"])
        self.cleanup.append(lambda: db.exists("VIF", vif) and db.destroy("VIF", vif))
        if db.raw("VM", vm)["power_state"] != "Halted":
            db.set("VIF", vif, "currently_attached", rec["currently_attached"])
        self.put("VIF", xid, vif)

    def update_snapshot_and_parent_links(self):
        """Export ids in snapshot_of (snapshots only; must resolve) and parent (left as they
        are when they do not resolve) become the new refs."""
        db = self.db
        for xid, cls in list(self.table_cls.items()):
            ref = self.table[xid]
            if cls != "VM" or not db.exists("VM", ref):
                continue
            rec = db.raw("VM", ref)
            if rec["is_a_snapshot"] and rec["snapshot_of"] != NULL_REF:
                db.set("VM", ref, "snapshot_of", self.lookup(rec["snapshot_of"]))
            if rec["parent"] in self.table:
                db.set("VM", ref, "parent", self.table[rec["parent"]])

    def complete(self):
        """Import.complete_import: the VM ref set (non-snapshots, unless only snapshots)."""
        db = self.db
        vms = list(dict.fromkeys(self.created_vms))
        for vm in vms:
            if db.exists("VM", vm):
                ops = dict(db.raw("VM", vm)["current_operations"])
                ops.pop(self.task, None)
                db.set("VM", vm, "current_operations", ops)
                ops_vm.update_allowed_operations(db, vm)
        keep = [vm for vm in vms if db.exists("VM", vm) and not db.raw("VM", vm)["is_a_snapshot"]]
        return rpc_string(keep or vms)

    def undo(self):
        for action in reversed(self.cleanup):
            try:
                action()
            except XapiError:
                pass


def assert_compatible(version):
    """Importexport.assert_compatible: an export from a newer xapi is refused."""
    try:
        major, minor = int(version.get("xapi_major", 0)), int(version.get("xapi_minor", 0))
    except (TypeError, ValueError, AttributeError):
        raise XapiError("IMPORT_ERROR", "version_of_rpc: malformed RPC")
    if (XAPI_MAJOR, XAPI_MINOR) < (major, minor):
        raise XapiError("IMPORT_INCOMPATIBLE_VERSION")


def assert_can_restore_backup(db, objects):
    """Import.assert_can_restore_backup: a mac_seed already used by an unrelated VM."""
    def source_uuid(rec):
        if not rec["is_a_snapshot"]:
            return rec["uuid"]
        of = rec["snapshot_of"]
        if of.startswith("Ref:"):
            for obj in objects:
                if obj.get("class") == "VM" and obj.get("id") == of:
                    return record_of("VM", obj.get("snapshot") or {})["uuid"]
            return None
        return db.raw("VM", of)["uuid"] if db.exists("VM", of) else None

    def compatible(a, b):
        if not a["is_a_snapshot"] and not b["is_a_snapshot"]:
            return a["uuid"] == b["uuid"]
        ua, ub = source_uuid(a), source_uuid(b)
        return ua is not None and ua == ub
    existing = [dict(rec) for rec in db.tables["VM"].values() if "mac_seed" in rec["other_config"]]
    for obj in objects:
        if obj.get("class") != "VM":
            continue
        rec = record_of("VM", obj.get("snapshot") or {})
        seed = rec["other_config"].get("mac_seed")
        if seed is None:
            continue
        for other in existing:
            if other["other_config"]["mac_seed"] == seed and not compatible(rec, other):
                raise XapiError("DUPLICATE_MAC_SEED", seed)


def import_metadata(pool, session_ref, task, query_list, xml):
    """Import.metadata_handler once ova.xml is read; returns the task result."""
    header = parse_rpc(xml)
    if not isinstance(header, dict) or not isinstance(header.get("objects"), list):
        raise XapiError("IMPORT_ERROR", "header_of_rpc: malformed ova.xml")
    assert_compatible(header.get("version") or {})
    importer = Importer(pool, session_ref, task, query_list, header["objects"])
    if importer.restore:
        assert_can_restore_backup(pool.db, header["objects"])
    try:
        importer.run()
        return importer.complete()
    except ImportFailure as failure:
        if not importer.force:
            importer.undo()
        raise failure.error
    except XapiError:
        if not importer.force:
            importer.undo()
        raise
    except Exception as e:  # noqa: BLE001 - with_error_handling: anything else is IMPORT_ERROR
        if not importer.force:
            importer.undo()
        raise XapiError("IMPORT_ERROR", repr(e))


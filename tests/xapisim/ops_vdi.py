"""VDI and SR messages: create, destroy, snapshot, clone, resize, copy, CBT, hidden setters, scan.

Two SR flavours (``SR.sm_config["xapisim-flavour"]``):
* ``smapiv1`` (type ext): the database is authoritative; ``SR.scan`` keeps the DB's snapshot
  fields (the SMAPIv1 scan reports the DB's own values back).
* ``smapiv3`` (type file-v3): the backend keeps per-volume keys ``is_a_snapshot``,
  ``snapshot_of`` (the source volume's uuid) and ``snapshot_time``, written when it creates a
  volume; ``SR.scan`` overwrites the DB fields from them (xapi-storage-script), so DB-only writes
  are undone by the next scan.
"""

import base64
import uuid as uuidlib

from .api import create_from_record, implements
from .errors import XapiError
from .model import EPOCH, NULL_REF, now_text
from .storage import CBT_BLOCK

VHD_BLOCK = 2 * 1024 * 1024
VDI_COPIED_FIELDS = ("name_label", "name_description", "type", "sharable", "other_config",
                     "xenstore_data", "on_boot", "allow_caching", "tags", "virtual_size")
CBT_TYPES = ("user", "system")
# SMAPIv1 CBT error (sm XE_SR_ERRORCODES.xml: CBTChangedBlocksError = 460)
CBT_CHANGED_BLOCKS_ERROR = "SR_BACKEND_FAILURE_460"
CBT_CHANGED_BLOCKS_TEXT = "Failed to calculate changed blocks for given VDIs. [opterr=%s]"


# ---- helpers ----------------------------------------------------------------------------------

def flavour(db, sr):
    return db.raw("SR", sr)["sm_config"].get("xapisim-flavour", "smapiv1")


def rounded_size(db, sr, size):
    """SMAPIv1 file SRs store VHDs, whose virtual size is a multiple of 2 MiB
    (vhdutil.validate_and_round_vhd_size); the SMAPIv3 file SR rounds to sectors."""
    unit = VHD_BLOCK if flavour(db, sr) == "smapiv1" else 512
    return -(-size // unit) * unit


def refresh_sr_usage(ctx, sr):
    """SR.virtual_allocation = sum of virtual sizes, physical_utilisation = sum of the VDIs'
    physical_utilisation (each refreshed when its data changes, and all of them by SR.scan:
    measuring every file at every operation made a pool with many VDIs slow)."""
    db = ctx.db
    virtual = physical = 0
    for vdi in db.where("VDI", SR=sr):
        rec = db.raw("VDI", vdi)
        virtual += rec["virtual_size"]
        physical += int(rec["physical_utilisation"])
    db.update("SR", sr, virtual_allocation=virtual, physical_utilisation=physical)


def refresh_vdi_usage(ctx, vdi):
    rec = ctx.db.raw("VDI", vdi)
    ctx.db.set("VDI", vdi, "physical_utilisation", ctx.pool.storage.allocated(rec["uuid"]))


def assert_sr_attached(db, sr):
    """An SR whose PBDs are all unplugged serves no VDI operation (choose_pbd_for_sr)."""
    if not any(db.raw("PBD", pbd)["currently_attached"] for pbd in db.where("PBD", SR=sr)):
        raise XapiError("SR_HAS_NO_PBDS", sr)


# sm XE_SR_ERRORCODES.xml: SRNoSpace = 44
NO_SPACE = ("SR_BACKEND_FAILURE_44", "", "There is insufficient space", "")


def physical_free(ctx, sr):
    """What a thin SR (both flavours here: sparse files, like sm's FileSR) has left: its
    physical size less the bytes its VDIs occupy. Virtual sizes are not charged."""
    refresh_sr_usage(ctx, sr)
    rec = ctx.db.raw("SR", sr)
    return rec["physical_size"] - rec["physical_utilisation"]


def assert_fits(ctx, new, free):
    """After a snapshot, clone or copy wrote the new VDI's data (a full sparse copy here): when
    it took more than the SR had free, the new VDI is removed and the call fails with
    SR_BACKEND_FAILURE_44, as a backend that ran out of space does. Creating or growing a VDI
    allocates nothing on a thin SR and is never refused for space."""
    rec = ctx.db.raw("VDI", new)
    if ctx.pool.storage.allocated(rec["uuid"]) > free:
        ctx.pool.storage.destroy(rec["uuid"])
        ctx.db.destroy("VDI", new)
        refresh_sr_usage(ctx, rec["SR"])
        raise XapiError(*NO_SPACE)


def attached_vbds(db, vdi):
    return [vbd for vbd in db.where("VBD", VDI=vdi) if db.raw("VBD", vbd)["currently_attached"]]


def used_by_running_vm(db, vdi, include_snapshots=True):
    for vbd in attached_vbds(db, vdi):
        vm = db.raw("VBD", vbd)["VM"]
        if db.exists("VM", vm) and (include_snapshots or not db.raw("VM", vm)["is_a_snapshot"]):
            return True
    return False


def assert_not_cbt_metadata(db, vdi):
    vtype = db.raw("VDI", vdi)["type"]
    if vtype == "cbt_metadata":
        raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, vtype)


def vdi_allowed_operations(db, vdi):
    rec = db.raw("VDI", vdi)
    if rec["type"] == "cbt_metadata":
        return ["destroy", "forget", "list_changed_blocks"]
    ops = ["clone", "copy", "destroy", "forget", "generate_config", "update", "force_unlock",
           "snapshot", "mirror", "list_changed_blocks", "set_on_boot"]
    if not used_by_running_vm(db, vdi):
        ops.append("resize")
    if not rec["is_a_snapshot"] and rec["type"] in CBT_TYPES:
        ops += ["enable_cbt", "disable_cbt"]
    if rec["is_a_snapshot"] and rec["cbt_enabled"]:
        ops.append("data_destroy")
    if used_by_running_vm(db, vdi):
        ops.remove("destroy")
    return sorted(ops)


def update_vdi_allowed_operations(db, vdi):
    if db.exists("VDI", vdi):
        db.set("VDI", vdi, "allowed_operations", vdi_allowed_operations(db, vdi))


def write_volume_keys(ctx, vdi, is_a_snapshot, snapshot_of_uuid, snapshot_time):
    """What a SMAPIv3 backend records for a volume it creates."""
    db = ctx.db
    rec = db.raw("VDI", vdi)
    if flavour(db, rec["SR"]) != "smapiv3":
        return
    ctx.pool.storage.set_volume_keys(db.raw("SR", rec["SR"])["uuid"], rec["uuid"], {
        "is_a_snapshot": is_a_snapshot, "snapshot_of": snapshot_of_uuid,
        "snapshot_time": snapshot_time})


def new_vdi(ctx, sr, fields):
    """A VDI record plus its disk file; ``fields`` are stored as given (uuid, location and
    accounting are filled here)."""
    vdi_uuid = str(uuidlib.uuid4())
    record = {"SR": sr, "uuid": vdi_uuid, "location": vdi_uuid, "managed": True,
              "missing": False, "on_boot": "persist", "snapshot_time": EPOCH,
              "storage_lock": False, "sm_config": {}, "xenstore_data": {}, "tags": [],
              "other_config": {}}
    record.update(fields)
    vdi = ctx.db.create("VDI", record)
    return vdi


# ---- create / destroy -------------------------------------------------------------------------

@implements("VDI.create")
def vdi_create(ctx, record):
    db = ctx.db
    sr = record.get("SR", NULL_REF)
    if not db.exists("SR", sr):
        raise XapiError("HANDLE_INVALID", "SR", sr)
    try:
        size = int(record.get("virtual_size", 0))
    except (TypeError, ValueError):
        raise XapiError("FIELD_TYPE_ERROR", "virtual_size")
    size = rounded_size(db, sr, size)
    assert_sr_attached(db, sr)
    vdi_uuid = str(uuidlib.uuid4())
    vdi = create_from_record(ctx, "VDI", record, extra={
        "uuid": vdi_uuid, "location": vdi_uuid, "virtual_size": size, "managed": True,
        "missing": False, "on_boot": "persist", "snapshot_time": EPOCH,
        "is_a_snapshot": False, "snapshot_of": NULL_REF})
    ctx.pool.storage.create(vdi_uuid, size)
    write_volume_keys(ctx, vdi, False, "", EPOCH)
    update_vdi_allowed_operations(db, vdi)
    refresh_vdi_usage(ctx, vdi)
    refresh_sr_usage(ctx, sr)
    return vdi


@implements("VDI.destroy")
def vdi_destroy(ctx, vdi):
    """XAPI refuses while a VBD is plugged, destroys the VDI's (unplugged) VBDs with it."""
    db, storage = ctx.db, ctx.pool.storage
    if attached_vbds(db, vdi):
        raise XapiError("VDI_IN_USE", vdi, "destroy")
    rec = db.raw("VDI", vdi)
    sr = rec["SR"]
    storage.cbt_drop_log(rec["uuid"])
    storage.destroy(rec["uuid"])
    if db.exists("SR", sr) and flavour(db, sr) == "smapiv3":
        storage.set_volume_keys(db.raw("SR", sr)["uuid"], rec["uuid"], None)
    for vbd in db.where("VBD", VDI=vdi):
        db.destroy("VBD", vbd)
    db.destroy("VDI", vdi)
    if db.exists("SR", sr):
        refresh_sr_usage(ctx, sr)


# ---- snapshot / clone / resize / copy ---------------------------------------------------------

def derived_vdi(ctx, vdi, is_snapshot):
    """The new VDI of VDI.snapshot / VDI.clone: the backend copies the content, xapi copies the
    metadata and sets the snapshot fields."""
    db, storage = ctx.db, ctx.pool.storage
    src = db.raw("VDI", vdi)
    assert_not_cbt_metadata(db, vdi)
    if is_snapshot and src["sharable"]:
        raise XapiError("VDI_IS_SHARABLE", vdi)
    sr = src["SR"]
    assert_sr_attached(db, sr)
    free = physical_free(ctx, sr)
    fields = {name: src[name] for name in VDI_COPIED_FIELDS}
    fields["other_config"] = dict(src["other_config"])
    smapiv3 = flavour(db, sr) == "smapiv3"
    now = now_text()
    if is_snapshot:
        # content_id (SMAPIv1: other_config) is the source's: the content is identical
        fields["other_config"]["content_id"] = src["other_config"].get("content_id") \
            or str(uuidlib.uuid4())
        fields.update(is_a_snapshot=True, snapshot_of=vdi, snapshot_time=now, read_only=False)
    else:
        fields["other_config"].pop("content_id", None)
        # SMAPIv1 snapshot_and_clone stamps snapshot_time on clones too; SMAPIv3 does not
        fields.update(is_a_snapshot=False, snapshot_of=NULL_REF,
                      snapshot_time=EPOCH if smapiv3 else now, read_only=False)
    fields["cbt_enabled"] = src["cbt_enabled"]
    new = new_vdi(ctx, sr, fields)
    new_uuid = db.raw("VDI", new)["uuid"]
    storage.copy(src["uuid"], new_uuid)
    assert_fits(ctx, new, free)
    if src["cbt_enabled"] and storage.has_cbt_log(src["uuid"]):
        if is_snapshot:
            # SMAPIv1: the snapshot takes the leaf's log so far, the leaf starts a new one
            storage.cbt_move_log(src["uuid"], new_uuid)
            storage.cbt_start_log(src["uuid"], new_uuid)
        else:
            parent = src["uuid"] if src["is_a_snapshot"] else storage.cbt_parent(src["uuid"])
            storage.cbt_start_log(new_uuid, parent)
    if is_snapshot:
        write_volume_keys(ctx, new, True, src["uuid"], now)
    else:
        write_volume_keys(ctx, new, False, "", EPOCH)
    update_vdi_allowed_operations(db, new)
    refresh_vdi_usage(ctx, new)
    refresh_sr_usage(ctx, sr)
    return new


@implements("VDI.snapshot")
def vdi_snapshot(ctx, vdi, driver_params):
    return derived_vdi(ctx, vdi, is_snapshot=True)


@implements("VDI.clone")
def vdi_clone(ctx, vdi, driver_params):
    return derived_vdi(ctx, vdi, is_snapshot=False)


@implements("VDI.resize", "VDI.resize_online")
def vdi_resize(ctx, vdi, size):
    db = ctx.db
    rec = db.raw("VDI", vdi)
    assert_not_cbt_metadata(db, vdi)
    if ctx.wire_name == "VDI.resize" and used_by_running_vm(db, vdi):
        raise XapiError("VDI_IN_USE", vdi, "resize")
    size = rounded_size(db, rec["SR"], size)
    if size < rec["virtual_size"]:
        # sm FileSR/VHD: XenError('VDISize', opterr='shrinking not allowed')
        raise XapiError("SR_BACKEND_FAILURE_79", "",
                        "VDI Invalid size [opterr=shrinking not allowed]", "")
    assert_sr_attached(db, rec["SR"])
    ctx.pool.storage.resize(rec["uuid"], size)
    db.set("VDI", vdi, "virtual_size", size)
    refresh_sr_usage(ctx, rec["SR"])


def copy_blocks(ctx, src_uuid, dst_uuid, base_uuid=None):
    """Copy the non-zero 64 KiB blocks of src (only those that differ from base, if given) into
    dst through Storage.write, so that CBT sees them. Zero blocks of a full copy stay holes."""
    storage = ctx.pool.storage
    size = storage.size(src_uuid)
    base_size = storage.size(base_uuid) if base_uuid else 0
    offset = 0
    while offset < size:
        data = storage.read(src_uuid, offset, CBT_BLOCK)
        if base_uuid:
            base = storage.read(base_uuid, offset, CBT_BLOCK) if offset < base_size else b""
            base = base + bytes(len(data) - len(base))
            if data != base:
                storage.write(dst_uuid, offset, data)
        elif data.count(0) != len(data):
            storage.write(dst_uuid, offset, data)
        offset += CBT_BLOCK


@implements("VDI.copy")
def vdi_copy(ctx, vdi, sr, base_vdi, into_vdi):
    db = ctx.db
    src = db.raw("VDI", vdi)
    assert_not_cbt_metadata(db, vdi)
    base_uuid = db.raw("VDI", base_vdi)["uuid"] if base_vdi != NULL_REF else None
    if into_vdi != NULL_REF:
        dst = db.raw("VDI", into_vdi)
        if dst["read_only"]:
            raise XapiError("VDI_READONLY", into_vdi)
        if dst["virtual_size"] < src["virtual_size"]:
            raise XapiError("VDI_TOO_SMALL", into_vdi, src["virtual_size"])
        copy_blocks(ctx, src["uuid"], dst["uuid"], base_uuid)
        refresh_vdi_usage(ctx, into_vdi)
        refresh_sr_usage(ctx, dst["SR"])
        return into_vdi
    if sr == NULL_REF:
        raise XapiError("HANDLE_INVALID", "SR", sr)
    size = rounded_size(db, sr, src["virtual_size"])
    assert_sr_attached(db, sr)
    free = physical_free(ctx, sr)
    fields = {name: src[name] for name in VDI_COPIED_FIELDS}
    fields.update(virtual_size=size, sharable=False, read_only=False, sm_config={},
                  is_a_snapshot=False, snapshot_of=NULL_REF, cbt_enabled=False)
    fields["other_config"] = {k: v for k, v in src["other_config"].items() if k != "content_id"}
    new = new_vdi(ctx, sr, fields)
    new_uuid = db.raw("VDI", new)["uuid"]
    ctx.pool.storage.create(new_uuid, size)
    copy_blocks(ctx, src["uuid"], new_uuid, base_uuid)
    assert_fits(ctx, new, free)
    write_volume_keys(ctx, new, False, "", EPOCH)
    update_vdi_allowed_operations(db, new)
    refresh_vdi_usage(ctx, new)
    refresh_sr_usage(ctx, sr)
    return new


@implements("VDI.revert")
def vdi_revert(ctx, snapshot):
    """Released XAPI versions lack VDI.revert (prototyped in 26.16.0); neither SR type here
    implements it, as an SM backend without the capability answers."""
    sr = ctx.db.raw("VDI", snapshot)["SR"]
    raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)


# ---- setters guarded for the SM backend -------------------------------------------------------

def assert_sm_session(ctx, vdi):
    """Sm.assert_session_has_internal_sr_access: the caller's session must carry
    other_config["_sm_session"] = the VDI's SR ref."""
    sr = ctx.db.raw("VDI", vdi)["SR"]
    if ctx.session.get("other_config", {}).get("_sm_session") != sr:
        raise XapiError("PERMISSION_DENIED", "")


def guarded_setter(field, convert=None):
    def setter(ctx, vdi, value):
        assert_sm_session(ctx, vdi)
        ctx.db.set("VDI", vdi, field, convert(value) if convert else value)
    return setter


for _field in ("is_a_snapshot", "snapshot_of", "snapshot_time", "metadata_of_pool", "managed",
               "missing", "virtual_size", "physical_utilisation", "cbt_enabled", "sharable",
               "read_only"):
    implements("VDI.set_" + _field)(guarded_setter(_field))


# ---- SR.scan ----------------------------------------------------------------------------------

@implements("SR.scan")
def sr_scan(ctx, sr):
    db = ctx.db
    if flavour(db, sr) == "smapiv3":
        resync_from_volume_keys(ctx, sr)
    for vdi in db.where("VDI", SR=sr):
        refresh_vdi_usage(ctx, vdi)
        update_vdi_allowed_operations(db, vdi)
    refresh_sr_usage(ctx, sr)


def resync_from_volume_keys(ctx, sr):
    """Xapi_sr.update_vdis with a SMAPIv3 backend: the volume keys win over the DB."""
    db = ctx.db
    volumes = ctx.pool.storage.volume_keys(db.raw("SR", sr)["uuid"])
    for vdi in db.where("VDI", SR=sr):
        keys = volumes.get(db.raw("VDI", vdi)["uuid"])
        if keys is None:
            continue
        snapshot_of = NULL_REF
        if keys["snapshot_of"]:
            try:
                snapshot_of = db.ref_of_uuid("VDI", keys["snapshot_of"])
            except XapiError:
                snapshot_of = NULL_REF
        rec = db.raw("VDI", vdi)
        wanted = {"is_a_snapshot": keys["is_a_snapshot"], "snapshot_of": snapshot_of,
                  "snapshot_time": keys["snapshot_time"]}
        for field, value in wanted.items():
            if rec[field] != value:
                db.set("VDI", vdi, field, value)


# ---- changed block tracking -------------------------------------------------------------------

def assert_cbt_toggle_allowed(db, vdi):
    rec = db.raw("VDI", vdi)
    if rec["is_a_snapshot"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "VDI is a snapshot: %s" % vdi)
    if rec["type"] not in CBT_TYPES:
        raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, rec["type"])


@implements("VDI.enable_cbt")
def vdi_enable_cbt(ctx, vdi):
    db, storage = ctx.db, ctx.pool.storage
    assert_cbt_toggle_allowed(db, vdi)
    rec = db.raw("VDI", vdi)
    if rec["cbt_enabled"] and storage.has_cbt_log(rec["uuid"]):
        return
    storage.cbt_start_log(rec["uuid"], "")
    db.set("VDI", vdi, "cbt_enabled", True)
    update_vdi_allowed_operations(db, vdi)


@implements("VDI.disable_cbt")
def vdi_disable_cbt(ctx, vdi):
    db, storage = ctx.db, ctx.pool.storage
    assert_cbt_toggle_allowed(db, vdi)
    rec = db.raw("VDI", vdi)
    if not rec["cbt_enabled"]:
        return
    # the leaf's log goes; the snapshots keep theirs, but the chain to the leaf is broken
    storage.cbt_drop_log(rec["uuid"], merge_into_children=False)
    db.set("VDI", vdi, "cbt_enabled", False)
    update_vdi_allowed_operations(db, vdi)


def cbt_failure(reason):
    return XapiError(CBT_CHANGED_BLOCKS_ERROR, "", CBT_CHANGED_BLOCKS_TEXT % reason, "")


@implements("VDI.list_changed_blocks")
def vdi_list_changed_blocks(ctx, vdi_from, vdi_to):
    """OR of the CBT logs on the chain from vdi_from (excluded) down to vdi_to (included):
    a base64 bitmap, bit i = 64 KiB block i, most significant bit of byte 0 first."""
    db, storage = ctx.db, ctx.pool.storage
    for vdi in (vdi_from, vdi_to):
        rec = db.raw("VDI", vdi)
        if not rec["cbt_enabled"] or not storage.has_cbt_log(rec["uuid"]):
            raise XapiError("VDI_NO_CBT_METADATA", vdi)
    if used_by_running_vm(db, vdi_to, include_snapshots=False):
        raise XapiError("VDI_IN_USE", vdi_to, "list_changed_blocks")
    from_uuid = db.raw("VDI", vdi_from)["uuid"]
    to_rec = db.raw("VDI", vdi_to)
    if from_uuid == to_rec["uuid"]:
        raise cbt_failure("Source and target VDI are same")
    chain, cursor = [], to_rec["uuid"]
    while cursor and cursor != from_uuid and cursor not in chain:
        chain.append(cursor)
        cursor = storage.cbt_parent(cursor)
    if cursor != from_uuid:
        raise cbt_failure("Source and target VDI are unrelated")
    nbits = -(-to_rec["virtual_size"] // CBT_BLOCK)
    bitmap = bytearray(-(-nbits // 8))
    for vdi_uuid in chain:
        for i, byte in enumerate(storage.cbt_bitmap(vdi_uuid)[:len(bitmap)]):
            bitmap[i] |= byte
    return base64.b64encode(bytes(bitmap)).decode()


@implements("VDI.data_destroy")
def vdi_data_destroy(ctx, vdi):
    db, storage = ctx.db, ctx.pool.storage
    rec = db.raw("VDI", vdi)
    if not rec["is_a_snapshot"]:
        raise XapiError("OPERATION_NOT_ALLOWED", "VDI is not a snapshot: %s" % vdi)
    if not rec["cbt_enabled"] or not storage.has_cbt_log(rec["uuid"]):
        raise XapiError("VDI_NO_CBT_METADATA", vdi)
    if attached_vbds(db, vdi):
        raise XapiError("VDI_IN_USE", vdi, "data_destroy")
    storage.drop_data(rec["uuid"])
    db.update("VDI", vdi, type="cbt_metadata", physical_utilisation=0)
    update_vdi_allowed_operations(db, vdi)
    refresh_sr_usage(ctx, rec["SR"])

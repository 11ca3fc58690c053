"""GET /export_metadata and PUT /import_metadata (XAPI-FACTS §1.4, §6, fact 10 and the addendum
on VIF networks), as xen-api's export.ml and import.ml do them."""

import io
import re
import tarfile
import xmlrpc.client

from xapisim import client, scenario

MiB = 1 << 20
NULL = "OpaqueRef:NULL"


def export_tar(pool, x, vm, **query):
    query = dict({"uuid": x.xenapi.VM.get_uuid(vm)}, **query)
    status, headers, body = client.http_request(pool, "GET", "/export_metadata", query, x)
    assert status == 200, body
    assert headers["Content-Disposition"] == 'attachment; filename="export.xva"'
    return body


def ova_of(tar_bytes):
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        assert tar.getnames() == ["ova.xml"]
        text = tar.extractfile("ova.xml").read().decode()
    return xmlrpc.client.loads("<?xml version='1.0'?><methodResponse><params><param>%s"
                               "</param></params></methodResponse>" % text)[0][0]


def tar_of(value):
    xml = xmlrpc.client.dumps((value,), methodresponse=True)
    data = re.search(r"<param>\s*(.*)\s*</param>", xml, re.S).group(1).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("ova.xml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def objects(value, cls):
    return [o for o in value["objects"] if o["class"] == cls]


def import_tar(pool, x, tar_bytes, **query):
    """PUT /import_metadata with a task of ours; returns the finished task record."""
    task = x.xenapi.task.create("import", "")
    query = dict(query, task_id=task)
    status, headers, _ = client.http_request(pool, "PUT", "/import_metadata", query, x, tar_bytes,
                                             {"Content-Length": str(len(tar_bytes))})
    assert status == 200 and headers["task-id"] == task
    rec = x.xenapi.task.get_record(task)
    x.xenapi.task.destroy(task)
    return rec


def map_vdis(x_src, x_dst, value):
    """A destination VDI of the same size for every exported VDI: {vdi:<src>: <dst uuid>}."""
    query = {}
    for obj in objects(value, "VDI"):
        rec = obj["snapshot"]
        dst = x_dst.xenapi.VDI.create({
            "name_label": "mirror of " + rec["name_label"], "name_description": "",
            "SR": scenario.default_sr(x_dst), "virtual_size": rec["virtual_size"],
            "type": "user", "sharable": False, "read_only": False, "other_config": {},
            "xenstore_data": {}, "sm_config": {}, "tags": []})
        query["vdi:" + rec["uuid"]] = x_dst.xenapi.VDI.get_uuid(dst)
    return query


def tree_of(x, vm):
    """{uuid: (name, parent uuid or the raw value, snapshot_of uuid, snapshot_time,
    {userdevice: VDI uuid}, [(MAC, network name)])} of a VM and its snapshots."""
    def uuid_or_raw(ref):
        try:
            return x.xenapi.VM.get_uuid(ref)
        except Exception:  # noqa: BLE001 - NULL or a dangling export id
            return ref
    out = {}
    for ref in [vm] + x.xenapi.VM.get_snapshots(vm):
        rec = x.xenapi.VM.get_record(ref)
        disks = {d: x.xenapi.VDI.get_uuid(v) for d, v in scenario.disks(x, ref).items()}
        vifs = sorted((x.xenapi.VIF.get_MAC(v),
                       x.xenapi.network.get_name_label(x.xenapi.VIF.get_network(v)))
                      for v in rec["VIFs"])
        out[rec["uuid"]] = (rec["name_label"], uuid_or_raw(rec["parent"]),
                            uuid_or_raw(rec["snapshot_of"]) if rec["is_a_snapshot"] else None,
                            rec["snapshot_time"].value, disks, vifs)
    return out


def counts(x):
    return {cls: len(getattr(x.xenapi, cls).get_all()) for cls in ("VM", "VBD", "VIF", "network")}


def test_export_shape(pools, xapi):
    """§1.4 / export.ml: one tar member ova.xml = {version, objects: [{class, id, snapshot}]};
    ids Ref:N; VM snapshot_of/parent rewritten to export ids, VM.snapshots and VDI
    snapshot_of kept as internal refs of the source pool."""
    vm = scenario.create_vm(xapi, "meta-shape", [MiB])
    xapi.xenapi.VM.snapshot(vm, "one")
    value = ova_of(export_tar(pools[0], xapi, vm))
    assert set(value["version"]) >= {"hostname", "xapi_major", "xapi_minor", "export_vsn"}
    assert all(re.fullmatch(r"Ref:\d+", o["id"]) for o in value["objects"])
    assert [o["class"] for o in value["objects"]] == sorted(
        (o["class"] for o in value["objects"]),
        key=["host", "VM", "VBD", "VIF", "network", "VDI", "SR"].index)
    vms = {o["snapshot"]["name_label"]: o for o in objects(value, "VM")}
    assert set(vms) == {"meta-shape", "one"}
    assert vms["one"]["snapshot"]["snapshot_of"] == vms["meta-shape"]["id"]
    assert vms["meta-shape"]["snapshot"]["parent"] == vms["one"]["id"]
    assert vms["meta-shape"]["snapshot"]["snapshots"] == xapi.xenapi.VM.get_snapshots(vm)
    snap_vdis = [o["snapshot"] for o in objects(value, "VDI") if o["snapshot"]["is_a_snapshot"]]
    assert [v["snapshot_of"] for v in snap_vdis] == list(scenario.disks(xapi, vm).values())
    no_snaps = ova_of(export_tar(pools[0], xapi, vm, export_snapshots="false"))
    assert [o["snapshot"]["name_label"] for o in objects(no_snaps, "VM")] == ["meta-shape"]


def test_round_trip_of_a_branched_tree_with_restore(pools, connect):
    """Fact 10 / §1.4: a branched snapshot tree exported with snapshots and imported with
    restore=true and vdi: maps keeps the uuids, parent and snapshot_of links, snapshot_time,
    MACs; VBDs point at the mapped VDIs (left unmodified); VIF networks resolve by name;
    snapshot_metadata is ""; version + 1; task result = the VM ref set (no snapshots).
    The oldest snapshot had no parent: the export gave it the export id of OpaqueRef:NULL,
    which names no object, and import leaves such a parent as it is (export.ml update_table,
    import.ml update_snapshot_and_parent_links)."""
    src, dst = connect(0), connect(1)
    vm = scenario.build_branched_tree(pools[0], src, "meta-tree", (2 * MiB, MiB))
    before = tree_of(src, vm)
    value = ova_of(tar_bytes := export_tar(pools[0], src, vm))
    vdi_query = map_vdis(src, dst, value)
    mirrors = {u: dst.xenapi.VDI.get_record(dst.xenapi.VDI.get_by_uuid(u))
               for u in vdi_query.values()}
    rec = import_tar(pools[1], dst, tar_bytes, restore="true", **vdi_query)
    assert rec["status"] == "success", rec["error_info"]
    imported = dst.xenapi.VM.get_by_uuid(src.xenapi.VM.get_uuid(vm))
    assert rec["result"] == "<value><array><data><value>%s</value></data></array></value>" % imported
    after = tree_of(dst, imported)
    assert set(after) == set(before)
    vdi_map = {k[len("vdi:"):]: v for k, v in vdi_query.items()}
    for uuid, (name, parent, snapshot_of, when, disks, vifs) in before.items():
        got = after[uuid]
        assert got[0] == name and got[3] == when and got[5] == vifs
        assert got[2] == snapshot_of
        assert got[4] == {d: vdi_map[v] for d, v in disks.items()}
        if parent.startswith("OpaqueRef:"):
            assert parent == NULL and re.fullmatch(r"Ref:\d+", got[1]), got[1]
        else:
            assert got[1] == parent
    for ref in [imported] + dst.xenapi.VM.get_snapshots(imported):
        assert dst.xenapi.VM.get_snapshot_metadata(ref) == ""
        assert dst.xenapi.VM.get_version(ref) == "1"
    for uuid, old in mirrors.items():
        new = dst.xenapi.VDI.get_record(dst.xenapi.VDI.get_by_uuid(uuid))
        assert (new["name_label"], new["is_a_snapshot"], new["snapshot_of"]) == \
            (old["name_label"], old["is_a_snapshot"], old["snapshot_of"])
    again = import_tar(pools[1], dst, tar_bytes, restore="true", **vdi_query)
    assert again["status"] == "failure"
    code, ref, existing, wanted = again["error_info"]
    assert (code, existing, wanted) == ("VM_TO_IMPORT_IS_NOT_NEWER_VERSION", "1", "0")


def test_dry_run_creates_nothing(pools, connect):
    """§1.4: dry_run=true runs the checks and creates no object; the result is an empty set."""
    src, dst = connect(0), connect(1)
    vm = scenario.create_vm(src, "meta-dry", [MiB])
    src.xenapi.VM.snapshot(vm, "s")
    tar_bytes = export_tar(pools[0], src, vm)
    vdi_query = map_vdis(src, dst, ova_of(tar_bytes))
    before = counts(dst)
    rec = import_tar(pools[1], dst, tar_bytes, restore="true", dry_run="true", **vdi_query)
    assert rec["status"] == "success", rec["error_info"]
    assert rec["result"] == "<value><array><data></data></array></value>"
    assert counts(dst) == before


def test_missing_vdis(pools, connect):
    """§1.4: an exported VDI found neither by vdi: map, nor by SR + location, nor by maps_to:
    VDI_CONTENT_ID_MISSING [] when its SR is unknown here, VDI_LOCATION_MISSING [sr,
    location] when the SR is known; the import leaves nothing behind; force=true skips it."""
    src, dst = connect(0), connect(1)
    vm = scenario.create_vm(src, "meta-missing", [MiB, MiB])
    tar_bytes = export_tar(pools[0], src, vm)
    value = ova_of(tar_bytes)
    vdi_query = map_vdis(src, dst, value)
    vdi_query.pop(sorted(vdi_query)[0])
    before = counts(dst)
    rec = import_tar(pools[1], dst, tar_bytes, restore="true", **vdi_query)
    assert rec["error_info"] == ["VDI_CONTENT_ID_MISSING"]
    assert counts(dst) == before
    forced = import_tar(pools[1], dst, tar_bytes, force="true", **vdi_query)
    assert forced["status"] == "success"
    copy = forced["result"][len("<value><array><data><value>"):-len("</value></data></array></value>")]
    assert len(scenario.disks(dst, copy)) == 1
    disk = scenario.disks(src, vm)["1"]
    location = src.xenapi.VDI.get_location(disk)
    sr = src.xenapi.VDI.get_SR(disk)
    src.xenapi.VDI.destroy(disk)
    rec = import_tar(pools[0], src, tar_bytes)
    assert rec["error_info"] == ["VDI_LOCATION_MISSING", sr, location]


def test_vif_networks(pools, connect):
    """Addendum on VIF networks: maps_to in the exported VIF's other_config picks the network
    (and is dropped from the new VIF); otherwise by name_label, then bridge, and an unmatched
    network silently becomes a new network tagged with the import task."""
    src, dst = connect(0), connect(1)
    lonely = src.xenapi.network.create({"name_label": "meta-only-on-pool0", "name_description": "",
                                        "MTU": "1500", "other_config": {}, "bridge": "xbrmeta",
                                        "managed": True, "tags": []})
    vm = scenario.create_vm(src, "meta-nets", [MiB], network=lonely)
    tar_bytes = export_tar(pools[0], src, vm)
    vdi_query = map_vdis(src, dst, ova_of(tar_bytes))
    nets_before = set(dst.xenapi.network.get_all())
    rec = import_tar(pools[1], dst, tar_bytes, **vdi_query)
    assert rec["status"] == "success", rec["error_info"]
    new = dst.xenapi.VM.get_by_name_label("meta-nets")[0]
    net = dst.xenapi.VIF.get_network(dst.xenapi.VM.get_VIFs(new)[0])
    assert net not in nets_before
    assert dst.xenapi.network.get_name_label(net) == "meta-only-on-pool0"
    assert "import_task" in dst.xenapi.network.get_other_config(net)
    value = ova_of(tar_bytes)
    target = scenario.nbd_network(dst)
    objects(value, "VIF")[0]["snapshot"]["other_config"]["maps_to"] = target
    rec = import_tar(pools[1], dst, tar_of(value), **vdi_query)
    assert rec["status"] == "success", rec["error_info"]
    newest = [v for v in dst.xenapi.VM.get_by_name_label("meta-nets") if v != new][0]
    vif = dst.xenapi.VM.get_VIFs(newest)[0]
    assert dst.xenapi.VIF.get_network(vif) == target
    assert "maps_to" not in dst.xenapi.VIF.get_other_config(vif)
    assert dst.xenapi.VIF.get_MAC(vif) != src.xenapi.VIF.get_MAC(src.xenapi.VM.get_VIFs(vm)[0])

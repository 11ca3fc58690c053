# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VM and its snapshot VMs on the destination (DESIGN.md step 6): the source's
``/export_metadata?export_snapshots=true`` imported with ``/import_metadata?restore=true``, the
disks mapped with ``vdi:<source uuid>=<destination uuid>`` and the networks mapped by setting
``maps_to`` on the exported VIFs. Then the VDI-level ``snapshot_time`` fix-up, checked after an
``SR.scan`` because SMAPIv3 SRs overwrite database values from their backend on a scan.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import re
import tarfile
import xmlrpc.client

from ansible_collections.xapi.sxm.plugins.module_utils import markers
from ansible_collections.xapi.sxm.plugins.module_utils.errors import MetadataError, XapiFailure
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import parse_task_result, remove_stale_tasks


def export_metadata(src, vm_uuid):
    """The tar stream of /export_metadata as bytes (metadata only: small)."""
    response = src.http("GET", "/export_metadata", {"uuid": vm_uuid, "export_snapshots": "true"})
    data = response.read()
    response.connection.close()
    if response.status != 200:
        raise MetadataError("the source refused to export the metadata of VM %s (HTTP %s)"
                            % (vm_uuid, response.status))
    return data


def read_ova(tar_bytes):
    """(ova.xml value, the tar's other members) from an export."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    xml = members.pop("ova.xml", None)
    if xml is None:
        raise MetadataError("the metadata export has no ova.xml")
    text = re.sub(r"^<\?xml[^>]*\?>", "", xml.decode("utf-8").strip())
    value = xmlrpc.client.loads("<?xml version='1.0'?><methodResponse><params><param>%s"
                                "</param></params></methodResponse>" % text,
                                use_datetime=False)[0][0]
    return value, members


def write_ova(value, members):
    xml = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=False)
    body = re.search(r"<param>\s*(.*)\s*</param>", xml, re.S).group(1)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in [("ova.xml", body.encode("utf-8"))] + sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def objects_of(value, cls):
    return [o for o in value["objects"] if o["class"] == cls]


def map_networks(value, network_map, dst_networks):
    """Point every exported VIF at a destination network (``maps_to``, as XAPI's own migration
    does): ``network_map`` (source network uuid or name -> destination network uuid or name),
    else the network of the same name.
    XAPI itself would silently create a new, unconnected network for an unmatched one, so an
    unmatched network is an error here. ``dst_networks``: {ref: record} of the destination.
    Returns {source network name: destination network name}."""
    by_uuid = {rec["uuid"]: ref for ref, rec in dst_networks.items()}
    by_name = {}
    for ref, rec in dst_networks.items():
        by_name.setdefault(rec["name_label"], []).append(ref)
    exported = {o["id"]: o["snapshot"] for o in objects_of(value, "network")}
    chosen = {}
    for vif in objects_of(value, "VIF"):
        net = exported.get(vif["snapshot"]["network"])
        if net is None:
            continue
        wanted = network_map.get(net["uuid"], network_map.get(net["name_label"]))
        if wanted is not None:
            ref = by_uuid.get(wanted) or (by_name.get(wanted) or [None])[0]
            if ref is None:
                raise MetadataError("sxm_network_map sends network %r to %r, which the destination "
                                    "pool does not have" % (net["name_label"], wanted))
        else:
            candidates = by_name.get(net["name_label"], [])
            if len(candidates) != 1:
                raise MetadataError(
                    "network %r of the VM has %s on the destination pool: map it with "
                    "sxm_network_map (source network name or uuid -> destination network)"
                    % (net["name_label"], "no namesake" if not candidates else "several namesakes"))
            ref = candidates[0]
        vif["snapshot"].setdefault("other_config", {})["maps_to"] = ref
        chosen[net["name_label"]] = dst_networks[ref]["name_label"]
    # Every VIF now names its destination network; an exported network object left in would
    # be created on the destination by the import when no namesake exists there.
    value["objects"] = [o for o in value["objects"] if o["class"] != "network"]
    return chosen


IMPORT_TASK = "xapi.sxm metadata import"


def import_description(job):
    """Names the job, so that a re-run holding the job's lock can remove the pending task of a
    run killed between creating it and sending the import: XAPI keeps a pending task for 24 h."""
    return "VM metadata import for xapi.sxm job %s" % job


def import_metadata(dst, tar_bytes, vdi_map, job, dry_run=False):
    """PUT /import_metadata?restore=true with ``vdi:`` maps; returns the VM refs imported.
    A dry run (check mode) precedes the copy of any disk, so it is forced past the disks that
    do not exist yet; everything else (networks, versions, uuids) is checked by the pool."""
    flag = "true" if dry_run else "false"
    query = {"restore": "true", "force": flag, "dry_run": flag}
    for src_uuid, dst_uuid in sorted(vdi_map.items()):
        query["vdi:%s" % src_uuid] = dst_uuid
    task = dst.call("task.create", IMPORT_TASK, import_description(job))
    response = dst.http("PUT", "/import_metadata", query, body=tar_bytes, task=task)
    body = response.read()
    response.connection.close()
    if response.status in (401, 403):
        dst.call("task.destroy", task)
        raise MetadataError("the destination refused the metadata import (HTTP %s): the account "
                            "lacks the permission to import VMs" % response.status)
    if response.status != 200:
        try:
            dst.wait_task(task, timeout=60)
        except XapiFailure as e:
            raise MetadataError("the destination refused the VM metadata: %s" % e.message)
        raise MetadataError("the destination refused the VM metadata (HTTP %s: %s)"
                            % (response.status, body[:200].decode("utf-8", "replace")))
    result = dst.wait_task(task)
    if isinstance(result, str):
        result = parse_task_result(result) if result.startswith("<") else [result] if result else []
    return list(result or [])


def fix_snapshot_times(dst, pairs_times, sr_refs):
    """Give destination snapshot VDIs the source's ``snapshot_time``: through the hidden
    setter, which XAPI allows only to a local root session that names the VDI's SR in its
    ``_sm_session`` key; then ``SR.scan`` and read back. Returns ([(vdi uuid, wanted, got,
    reason)] for every VDI that does not end with the source's time, whether any was set)."""
    can = dst.is_local_superuser
    before = {ref: snapshot_time_of(dst, ref) for ref, dummy in pairs_times}
    tried = False
    for vdi_ref, wanted in pairs_times:
        if before[vdi_ref] != wanted and can:
            tried = set_snapshot_time(dst, vdi_ref, wanted) or tried
    if tried:
        for sr in sorted(set(sr_refs)):
            dst.call("SR.scan", sr)
    pending, changed = [], False
    for vdi_ref, wanted in pairs_times:
        got = snapshot_time_of(dst, vdi_ref) if tried else before[vdi_ref]
        # changed only where a value really moved: an SMAPIv3 scan puts its own time back
        changed = changed or got != before[vdi_ref]
        if got != wanted:
            reason = ("the destination session is not local root, so XAPI refuses to set it"
                      if not can else "the SR keeps the time of its own snapshot (SMAPIv3 "
                      "overwrites it on every scan)")
            pending.append((dst.call("VDI.get_uuid", vdi_ref), wanted, got, reason))
    return pending, changed


def snapshot_time_of(dst, vdi_ref):
    return str(getattr(dst.call("VDI.get_snapshot_time", vdi_ref), "value", ""))


def set_snapshot_time(dst, vdi_ref, wanted):
    sr = dst.call("VDI.get_SR", vdi_ref)
    try:
        dst.call("session.add_to_other_config", dst.session_ref, "_sm_session", sr)
    except XapiFailure:
        dst.call("session.remove_from_other_config", dst.session_ref, "_sm_session")
        dst.call("session.add_to_other_config", dst.session_ref, "_sm_session", sr)
    try:
        dst.call("VDI.set_snapshot_time", vdi_ref, xmlrpc.client.DateTime(wanted))
        return True
    except XapiFailure:
        return False
    finally:
        dst.call("session.remove_from_other_config", dst.session_ref, "_sm_session")


# ---- the destination VM ----------------------------------------------------------------------

def born_marked(value, job):
    """Mark the exported live VM before the import, so that the destination VM exists only
    already marked as this job's, in state ``imported``, with ``start`` blocked: no moment
    where it is unmarked or startable. It also records what the source looked like before the
    job changed anything on it, for a rollback (cleanup.restore_source)."""
    for obj in objects_of(value, "VM"):
        rec = obj["snapshot"]
        if rec.get("uuid") != job:
            continue
        before = {"blocked_operations": dict(rec.get("blocked_operations", {})),
                  "tags": list(rec.get("tags", [])), "power_state": rec.get("power_state")}
        rec.setdefault("other_config", {}).update({markers.JOB: job, markers.STATE: "imported",
                                                   markers.SOURCE_BEFORE: json.dumps(before, sort_keys=True)})
        for op in markers.STARTS:
            rec.setdefault("blocked_operations", {})[op] = markers.BLOCK_REASON
    return value


HOST_DEVICE_CLASSES = ("VGPU", "VUSB", "PCI")


def without_host_devices(value):
    """The export without the devices bound to the source host (plan.unmovable_devices):
    PCI passthrough in other_config, vGPU, USB and PCI objects and the VMs' links to them.
    Only a VM the user let through (unmovable_devices: warn) has any."""
    value["objects"] = [o for o in value["objects"] if o["class"] not in HOST_DEVICE_CLASSES]
    for obj in objects_of(value, "VM"):
        rec = obj["snapshot"]
        rec.get("other_config", {}).pop("pci", None)
        for field in ("VGPUs", "VUSBs", "attached_PCIs"):
            if field in rec:
                rec[field] = []
    return value


def exported_metadata(src, dst, vm_uuid, network_map):
    """The source's metadata export, every VIF pointed at its destination network and the VM
    born marked. Returns (tar bytes, {source network: destination network})."""
    value, members = read_ova(export_metadata(src, vm_uuid))
    mapping = map_networks(value, network_map, dst.call("network.get_all_records"))
    return write_ova(born_marked(without_host_devices(value), vm_uuid), members), mapping


def import_vm(dst, tar_bytes, pairs, job):
    """Import the VM and its snapshots (a VM left by an earlier run is replaced, and so is the
    pending task of a run killed before its import); make sure of its markers. Runs under the
    job's lock. Returns the destination VM's ref."""
    old_ref, old_rec = markers.destination_vm(dst, job)
    if old_rec is not None:
        for snap in old_rec["snapshots"]:
            dst.call("VM.destroy", snap)
        dst.call("VM.destroy", old_ref)
    remove_stale_tasks(dst, IMPORT_TASK, import_description(job))
    import_metadata(dst, tar_bytes, pairs, job)
    dst_ref = dst.call("VM.get_by_uuid", job)
    # a pool that dropped the exported markers still gets them, before anything else happens
    markers.block_starts(dst, dst_ref, markers.BLOCK_REASON)
    oc = dst.call("VM.get_other_config", dst_ref)
    if oc.get(markers.JOB) != job or oc.get(markers.STATE) != "imported":
        markers.set_key(dst, "VM", dst_ref, markers.JOB, job)
        markers.set_key(dst, "VM", dst_ref, markers.STATE, "imported")
    return dst_ref


def snapshot_time_fixups(dst, tree, pairs):
    """Restore the source's snapshot_time on the destination's snapshot disks where the
    session may. Returns (rows of what could not be kept, whether anything was set)."""
    wanted, srs = [], set()
    for node in tree.carried_snapshots():
        for disk in node.disks.values():
            dst_uuid = pairs.get(disk.uuid)
            if dst_uuid is None:
                continue
            ref = dst.call("VDI.get_by_uuid", dst_uuid)
            wanted.append((ref, disk.snapshot_time))
            srs.add(dst.call("VDI.get_SR", ref))
    not_kept, changed = fix_snapshot_times(dst, wanted, srs)
    rows = [{"vdi_uuid": u, "source_time": w, "destination_time": g, "reason": r} for u, w, g, r in not_kept]
    return rows, changed


def cbt_fixups(dst, tree, pairs):
    """CBT enabled on each destination disk of the VM whose source disk has it (a backup tool
    that used it on the source finds it on the destination; its next backup is a full one, the
    change log being new). Returns (warnings for the disks where XAPI refused it, whether
    anything was enabled)."""
    warnings, changed = [], False
    for device, disk in sorted(tree.vm.disks.items()):
        if not disk.cbt_enabled or disk.uuid not in pairs:
            continue
        ref = dst.call("VDI.get_by_uuid", pairs[disk.uuid])
        if dst.call("VDI.get_cbt_enabled", ref):
            continue
        try:
            dst.call("VDI.enable_cbt", ref)
            changed = True
        except XapiFailure as e:
            warnings.append("CBT could not be enabled on the destination's disk %s (%s): enable it there "
                            "(VDI.enable_cbt) where the SR and licence allow it" % (device, e.code))
    return warnings, changed

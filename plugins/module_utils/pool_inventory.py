# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VMs of one pool as an Ansible inventory (the inventory plugin ``xapi.sxm.pool``): one
dict of facts per VM, read with six batched calls whatever the pool's size (a pool holds
hundreds of VMs: one call per object would take minutes), and the names the plugin gives to
hosts and groups.

Never the control domains, templates or snapshots: only what an evacuation could move. Facts
carry uuids and names, never OpaqueRefs (they mean nothing outside one pool's database and would
end up in caches and reports).

Plain Python: no Ansible imports, so it is unit-testable.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

NULL = "OpaqueRef:NULL"
UUID_PREFIX = 8          # characters of a uuid that tell two objects of the same name apart
UNNAMED = "unnamed"      # the group suffix of a name with no letter or digit at all


class PoolRecords:
    """Every record the facts are made of, read once: VMs (snapshots included), disk VBDs,
    VDIs, SRs, PBDs, hosts; indexes built once, so each VM costs no further call."""

    def __init__(self, vms, vbds, vdis, srs, pbds, hosts):
        self.vms, self.vbds, self.vdis = vms, vbds, vdis
        self.srs, self.pbds, self.hosts = srs, pbds, hosts
        self.disks_of = {}                 # VM ref -> [VDI ref] of its Disk VBDs
        for rec in vbds.values():
            if rec.get("type") == "Disk" and rec.get("VDI", NULL) in vdis:
                self.disks_of.setdefault(rec["VM"], []).append(rec["VDI"])
        self.snapshots_of = {}             # VM ref -> [snapshot VM ref]
        for ref, rec in vms.items():
            if rec.get("is_a_snapshot"):
                self.snapshots_of.setdefault(rec.get("snapshot_of", NULL), []).append(ref)
        self.vdi_snapshots_of = {}         # VDI ref -> [VDI refs whose snapshot_of is it]
        for ref, rec in vdis.items():
            if rec.get("is_a_snapshot"):
                self.vdi_snapshots_of.setdefault(rec.get("snapshot_of", NULL), []).append(ref)
        self.hosts_of_sr = {}              # SR ref -> {host ref} where its PBD is attached
        for rec in pbds.values():
            if rec.get("currently_attached") and rec.get("host") in hosts:
                self.hosts_of_sr.setdefault(rec["SR"], set()).add(rec["host"])


def read_records(conn):
    """The pool's records, six calls. ``conn`` is a logged-in ``xapi.Connection`` (or
    anything with its ``call``)."""
    return PoolRecords(
        vms=conn.call("VM.get_all_records"),
        vbds=conn.call("VBD.get_all_records_where", 'field "type"="Disk"'),
        vdis=conn.call("VDI.get_all_records"),
        srs=conn.call("SR.get_all_records"),
        pbds=conn.call("PBD.get_all_records"),
        hosts=conn.call("host.get_all_records"))


def is_vm(rec):
    """A VM an evacuation could move: not a control domain, a template or a snapshot."""
    return not (rec.get("is_control_domain") or rec.get("is_a_template") or rec.get("is_a_snapshot"))


def home_host(records, rec, disk_srs):
    """The host a VM belongs to, whose NBD server serves its disks (a ref, or None):
    - the host it runs on (``resident_on``);
    - else its ``affinity`` host, when that host sees the SR of every disk (VM.start puts it
      there only then; otherwise XAPI starts it elsewhere);
    - else, when every disk's SR is attached to one host and it is the same host for all (local
      storage), that host;
    - else None (shared storage, no disk, or disks on SRs of different hosts)."""
    if rec.get("resident_on") in records.hosts:
        return rec["resident_on"]
    affinity = rec.get("affinity")
    if affinity in records.hosts and all(affinity in records.hosts_of_sr.get(sr, ()) for sr in disk_srs):
        return affinity
    attached = {frozenset(records.hosts_of_sr.get(sr, ())) for sr in disk_srs}
    if len(attached) == 1:
        only = next(iter(attached))
        if len(only) == 1:
            return next(iter(only))
    return None


def moved_vdis(records, ref):
    """Every distinct VDI a migration of the VM may read: the disks of the VM and of all its
    snapshots, the VDI snapshots of those disks that belong to no snapshot VM, and the suspend
    images of the VM and of its checkpoints."""
    owners = [ref] + records.snapshots_of.get(ref, [])
    found = set()
    for owner in owners:
        found.update(records.disks_of.get(owner, []))
        suspend = records.vms[owner].get("suspend_VDI", NULL)
        if suspend in records.vdis:
            found.add(suspend)
    for disk in list(found):
        found.update(records.vdi_snapshots_of.get(disk, []))
    return found


def stored_bytes(vdi):
    """What a VDI occupies on its SR; its virtual size where the SR does not say (negative)."""
    used = int(vdi.get("physical_utilisation", 0) or 0)
    return used if used >= 0 else int(vdi.get("virtual_size", 0) or 0)


def vm_facts(records, ref):
    """The host variables of one VM (names prefixed ``sxm_``)."""
    rec = records.vms[ref]
    disks = records.disks_of.get(ref, [])
    srs = sorted({records.vdis[vdi]["SR"] for vdi in disks if records.vdis[vdi].get("SR") in records.srs},
                 key=lambda sr: records.srs[sr]["uuid"])
    home = home_host(records, rec, srs)
    resident = rec.get("resident_on")
    return {
        "sxm_uuid": rec["uuid"],
        "sxm_name": rec.get("name_label", ""),
        "sxm_power_state": str(rec.get("power_state", "")).lower(),
        "sxm_resident_host": records.hosts[resident]["name_label"] if resident in records.hosts else None,
        "sxm_home_host": records.hosts[home]["name_label"] if home else None,
        "sxm_home_host_uuid": records.hosts[home]["uuid"] if home else None,
        "sxm_tags": list(rec.get("tags", [])),
        "sxm_srs": [records.srs[sr]["uuid"] for sr in srs],
        "sxm_sr_names": [records.srs[sr]["name_label"] for sr in srs],
        "sxm_snapshot_count": len(records.snapshots_of.get(ref, [])),
        "sxm_disk_bytes": sum(int(records.vdis[vdi].get("virtual_size", 0) or 0) for vdi in disks),
        "sxm_bytes_to_move": sum(stored_bytes(records.vdis[vdi]) for vdi in moved_vdis(records, ref)),
    }


def read_inventory(conn):
    """``{"vms": [facts per VM, by name then uuid], "hosts": {uuid: name_label},
    "srs": {uuid: name_label}}``: the VMs, and every host and SR of the pool (group names are
    made unique over all of them, not only over those that hold a VM today). Data only: it can
    be cached."""
    records = read_records(conn)
    vms = [vm_facts(records, ref) for ref, rec in records.vms.items() if is_vm(rec)]
    vms.sort(key=lambda f: (f["sxm_name"], f["sxm_uuid"]))
    return {"vms": vms,
            "hosts": {rec["uuid"]: rec.get("name_label", "") for rec in records.hosts.values()},
            "srs": {rec["uuid"]: rec.get("name_label", "") for rec in records.srs.values()}}


def list_vms(conn):
    """One dict of facts per VM of the pool (see ``vm_facts``)."""
    return read_inventory(conn)["vms"]


def safe_group_name(name):
    """``name`` as the tail of a group name: lower case, every run of characters other than
    ASCII letters, digits and ``_`` replaced by one ``_``, none at either end
    (``Local storage (SMAPIv3)`` -> ``local_storage_smapiv3``); ``unnamed`` when nothing is
    left."""
    text = re.sub(r"[^a-z0-9_]+", "_", str(name).lower()).strip("_")
    return text or UNNAMED


def unique_names(names_by_uuid, safe=False):
    """``{uuid: name}`` -> ``{uuid: unique name}``: a name (made safe first with ``safe``) that
    two objects share gets ``_`` and the first characters of each one's uuid; an empty name is
    replaced by the uuid."""
    shown = {}
    for uuid, name in names_by_uuid.items():
        label = name or uuid
        shown[uuid] = safe_group_name(label) if safe else label
    count = {}
    for name in shown.values():
        count[name] = count.get(name, 0) + 1
    tell = safe_group_name if safe else str
    return {uuid: ("%s_%s" % (name, tell(uuid[:UUID_PREFIX])) if count[name] > 1 else name)
            for uuid, name in shown.items()}


def inventory_names(vms):
    """The inventory hostname of each VM, by uuid: its name_label when no other VM of the pool
    has it, else ``<name_label>_<first 8 characters of the uuid>``; the uuid when it has no
    name."""
    return unique_names({vm["sxm_uuid"]: vm["sxm_name"] for vm in vms})


def groups_of(vm, host_groups, sr_groups):
    """The built-in groups of one VM: ``xapi_host_<home host>``, ``xapi_tag_<tag>`` per tag,
    ``xapi_sr_<SR>`` per SR of its disks, ``xapi_power_<state>``. ``host_groups`` and
    ``sr_groups`` are ``unique_names(..., safe=True)`` of the pool's hosts and SRs."""
    groups = []
    if vm.get("sxm_home_host_uuid") in host_groups:
        groups.append("xapi_host_" + host_groups[vm["sxm_home_host_uuid"]])
    groups += ["xapi_tag_" + safe_group_name(tag) for tag in vm.get("sxm_tags", [])]
    groups += ["xapi_sr_" + sr_groups[sr] for sr in vm.get("sxm_srs", []) if sr in sr_groups]
    if vm.get("sxm_power_state"):
        groups.append("xapi_power_" + safe_group_name(vm["sxm_power_state"]))
    seen = set()
    return [g for g in groups if not (g in seen or seen.add(g))]

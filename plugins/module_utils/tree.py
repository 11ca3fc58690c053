# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot tree of a VM, discovered with a few batched calls, and the order in which the
tree of each disk is mirrored (DESIGN.md, steps 2 and 3).

The VM-level tree comes from the snapshot VMs' ``parent`` links and the live VM's ``parent``
chain (the active path). Each node carries its disks matched by VBD ``userdevice``; a snapshot
taken before a disk was added simply lacks that disk. CD drives and empty VBDs are ignored.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.xapi.sxm.plugins.module_utils.markers import TRANSIENT

NULL = "OpaqueRef:NULL"
MEMORY = "memory"           # the userdevice of a memory image's Disk: it has no VBD


class Disk:
    def __init__(self, userdevice, vdi_ref, vdi):
        self.userdevice = userdevice
        self.vdi_ref = vdi_ref
        self.uuid = vdi["uuid"]
        self.name_label = vdi["name_label"]
        self.virtual_size = int(vdi["virtual_size"])
        self.physical_utilisation = int(vdi.get("physical_utilisation", 0))
        self.sr_ref = vdi["SR"]
        self.cbt_enabled = bool(vdi.get("cbt_enabled", False))
        self.snapshot_time = str(getattr(vdi.get("snapshot_time", ""), "value", vdi.get("snapshot_time", "")))
        self.snapshot_of = vdi.get("snapshot_of", NULL)
        self.metadata_only = vdi.get("type") == "cbt_metadata"

    def to_dict(self):
        return {"userdevice": self.userdevice, "vdi_uuid": self.uuid, "name_label": self.name_label,
                "virtual_size": self.virtual_size, "physical_utilisation": self.physical_utilisation,
                "cbt_enabled": self.cbt_enabled}


class Node:
    """A snapshot VM, or the live VM itself (``is_vm``), with its disks."""

    def __init__(self, ref, rec, is_vm=False):
        self.ref = ref
        self.uuid = rec["uuid"]
        self.name_label = rec["name_label"]
        self.name_description = rec["name_description"]
        self.snapshot_time = str(getattr(rec["snapshot_time"], "value", rec["snapshot_time"]))
        self.parent_ref = rec["parent"]
        self.is_vm = is_vm
        suspend_vdi = rec.get("suspend_VDI", NULL)
        self.suspend_vdi_ref = suspend_vdi if suspend_vdi not in (NULL, "") else None
        self.is_checkpoint = not is_vm and self.suspend_vdi_ref is not None
        self.power_state = rec["power_state"]
        self.memory = None          # a Disk: the memory image (suspend VDI), see memory.py
        self.parent = None
        self.children = []
        self.active = False
        self.disks = {}

    def sort_key(self):
        # the live VM is always the newest node under its parent
        return (1 if self.is_vm else 0, self.snapshot_time, self.name_label, self.uuid)

    def to_dict(self):
        return {"uuid": self.uuid, "name_label": self.name_label,
                "name_description": self.name_description,
                "snapshot_time": self.snapshot_time, "is_vm": self.is_vm, "active": self.active,
                "is_checkpoint": self.is_checkpoint,
                "memory_image": self.memory.to_dict() if self.memory else None,
                "parent": self.parent.uuid if self.parent else None,
                "children": [c.uuid for c in self.children],
                "disks": [self.disks[k].to_dict() for k in sorted(self.disks, key=int)]}


class LooseSnapshot:
    """A snapshot VDI of one of the VM's disks that no snapshot VM holds (``VDI.snapshot``
    called alone, or a VM snapshot destroyed without its disks). It is mirrored like a node,
    after the snapshot VMs' nodes of its disk, and arrives as a VDI snapshot of the
    destination's disk (dangling where the source's dangles)."""

    is_vm = False
    active = False
    parent = None
    children = ()

    def __init__(self, disk):
        self.disk = disk
        self.uuid = disk.uuid
        self.name_label = "VDI snapshot %s" % disk.name_label
        self.snapshot_time = disk.snapshot_time
        self.disks = {disk.userdevice: disk}


class Tree:
    def __init__(self, vm, nodes, loose=None, dangling=()):
        self.vm = vm
        self.nodes = nodes                      # ref -> Node, the VM included
        self.roots = sorted([n for n in nodes.values() if n.parent is None], key=Node.sort_key)
        self.loose = loose or {}                # userdevice -> [Disk], by snapshot time
        self.dangling = set(dangling)           # snapshot_of refs that name no VDI

    @property
    def snapshots(self):
        return [n for n in self.nodes.values() if not n.is_vm]

    def userdevices(self):
        found = set()
        for node in self.nodes.values():
            found.update(node.disks)
        return sorted(found, key=int)

    def walk(self, userdevice):
        """The snapshots holding disk ``userdevice`` in mirror order: depth first, at each
        node its inactive (reverted) children first and the active child last. Nodes without
        the disk are transparent (their children are visited in their place). The live VM is
        not part of the walk: its disk is the leaf synced at the end."""
        order = []

        def visit(node):
            if not node.is_vm and userdevice in node.disks:
                order.append(node)
            kids = sorted(node.children, key=lambda n: (n.active,) + n.sort_key())
            for kid in kids:
                visit(kid)

        for root in sorted(self.roots, key=lambda n: (n.active,) + n.sort_key()):
            visit(root)
        return order

    def mirror_walk(self, userdevice):
        """Every snapshot of disk ``userdevice`` the mirror carries, in order: the walk, then
        the loose VDI snapshots that hold data."""
        return self.walk(userdevice) + self.loose_nodes(userdevice)

    def carried_snapshots(self):
        """Every snapshot node the mirror carries: the snapshot VMs, then the loose VDI
        snapshots that hold data."""
        return list(self.snapshots) + [n for device in sorted(self.loose, key=int) for n in self.loose_nodes(device)]

    def loose_nodes(self, userdevice):
        """The loose VDI snapshots of disk ``userdevice`` that hold data, as walk nodes."""
        return [LooseSnapshot(d) for d in self.loose.get(userdevice, []) if not d.metadata_only]

    def metadata_only(self):
        """Snapshot disks whose data a backup tool destroyed (``VDI.data_destroy``): only CBT
        metadata is left, nothing to copy. (snapshot VM or None, Disk) pairs."""
        found = [(n, d) for n in self.snapshots for d in n.disks.values() if d.metadata_only]
        return found + [(None, d) for ds in self.loose.values() for d in ds if d.metadata_only]

    def memory_images(self):
        """(node, Disk) of every memory image the tree holds: the checkpoints', oldest first,
        then a suspended VM's own."""
        found = [n for n in self.snapshots if n.memory is not None]
        found.sort(key=Node.sort_key)
        if self.vm.memory is not None:
            found.append(self.vm)
        return [(n, n.memory) for n in found]

    def layouts(self):
        """The tree's unusual layouts, by name, for the report: what others refuse and how it
        is carried."""
        found = []
        for device in self.userdevices():
            if device not in self.vm.disks:
                found.append({"layout": "disk only in snapshots", "userdevice": device,
                              "carried": "its snapshots arrive; the VM has no such disk, as on the source"})
            dangling = sorted(d.uuid for n in self.snapshots for d in n.disks.values()
                              if d.userdevice == device and d.snapshot_of in self.dangling)
            dangling += sorted(d.uuid for d in self.loose.get(device, []) if d.snapshot_of in self.dangling)
            if dangling:
                found.append({"layout": "snapshot_of dangles", "userdevice": device, "vdi_uuids": dangling,
                              "carried": "as snapshots whose snapshot_of dangles on the destination too"})
            for disk in self.loose.get(device, []):
                if disk.metadata_only:
                    continue
                found.append({"layout": "VDI snapshot without a VM snapshot", "userdevice": device,
                              "vdi_uuid": disk.uuid, "name_label": disk.name_label,
                              "carried": "as a VDI snapshot of the destination disk, in no VM snapshot"})
        for node, disk in self.metadata_only():
            if node is None:
                found.append({"layout": "CBT metadata only", "userdevice": disk.userdevice,
                              "vdi_uuid": disk.uuid, "name_label": disk.name_label,
                              "carried": "not carried: it holds no data, and CBT does not cross pools"})
        return found

    def to_dict(self):
        return {"vm": self.vm.to_dict(),
                "nodes": [n.to_dict() for n in self.ordered()],
                "active_path": [n.uuid for n in self.active_path()],
                "loose_snapshots": [d.to_dict() for device in sorted(self.loose, key=int)
                                    for d in self.loose[device]]}

    def ordered(self):
        out = []

        def visit(node):
            out.append(node)
            for kid in sorted(node.children, key=Node.sort_key):
                visit(kid)
        for root in self.roots:
            visit(root)
        return out

    def active_path(self):
        path, node = [], self.vm.parent
        while node is not None:
            path.append(node)
            node = node.parent
        return list(reversed(path))


def _or(field, values):
    return " or ".join('field "%s"="%s"' % (field, v) for v in values) or "false"


def discover(conn, vm_ref):
    """The tree of ``vm_ref`` with a handful of batched calls: the VM, its snapshots, their
    VBDs, and the VDIs of the SRs those disks live on."""
    vm_rec = conn.call("VM.get_record", vm_ref)
    snaps = conn.call("VM.get_all_records_where", 'field "snapshot_of"="%s"' % vm_ref)
    nodes = {vm_ref: Node(vm_ref, vm_rec, is_vm=True)}
    for ref, rec in snaps.items():
        if rec.get("is_a_snapshot"):
            nodes[ref] = Node(ref, rec)
    vbds = conn.call("VBD.get_all_records_where", _or("VM", sorted(nodes))) if nodes else {}
    disk_vbds = [(rec["VM"], rec["userdevice"], rec["VDI"]) for rec in vbds.values()
                 if rec["type"] == "Disk" and not rec["empty"] and rec["VDI"] != NULL]
    images = [n for n in nodes.values() if n.suspend_vdi_ref is not None]
    vdis = _fetch_sr_vdis(conn, [vbd[2] for vbd in disk_vbds] + [n.suspend_vdi_ref for n in images])
    for vm, userdevice, vdi in disk_vbds:
        if vm in nodes and vdi in vdis:
            nodes[vm].disks[userdevice] = Disk(userdevice, vdi, vdis[vdi])
    for node in images:
        if node.suspend_vdi_ref in vdis:
            node.memory = Disk(MEMORY, node.suspend_vdi_ref, vdis[node.suspend_vdi_ref])
    for node in nodes.values():
        parent = nodes.get(node.parent_ref)
        if parent is not None and parent is not node:
            node.parent = parent
            parent.children.append(node)
    vm = nodes[vm_ref]
    cursor = vm.parent
    while cursor is not None:
        cursor.active = True
        cursor = cursor.parent
    vm.active = True
    loose, dangling = _loose_snapshots(vdis, nodes, {vbd[2] for vbd in disk_vbds})
    return Tree(vm, nodes, loose, dangling)


def _loose_snapshots(vdis, nodes, attached):
    """Snapshot VDIs of the tree's disks that no VM holds (no VBD), by userdevice, found
    through ``snapshot_of`` among the VDIs of the tree's SRs (a snapshot lives beside its
    disk): snapshots of the VM's disks, and of the VDIs the snapshots' disks are snapshots of
    (a disk reverted or removed since: that ``snapshot_of`` dangles). Returns
    ({userdevice: [Disk]}, dangling snapshot_of refs)."""
    identities = {}
    for node in nodes.values():
        for device, disk in node.disks.items():
            if node.is_vm:
                identities[disk.vdi_ref] = device
    for node in nodes.values():
        for device, disk in node.disks.items():
            if not node.is_vm and disk.snapshot_of not in (NULL, ""):
                identities.setdefault(disk.snapshot_of, device)
    loose = {}
    for ref, rec in vdis.items():
        # a snapshot another VM holds (of a disk both VMs share) is that VM's
        held = ref in attached or rec.get("VBDs")
        # a warm migration's transient snapshot is the job's, not the user's: never carried
        ours = TRANSIENT in rec.get("other_config", {})
        if not held and not ours and rec.get("is_a_snapshot") and rec.get("snapshot_of") in identities:
            device = identities[rec["snapshot_of"]]
            loose.setdefault(device, []).append(Disk(device, ref, rec))
    for disks in loose.values():
        disks.sort(key=lambda d: (d.snapshot_time, d.uuid))
    return loose, {ref for ref in identities if ref not in vdis}


def _fetch_sr_vdis(conn, refs):
    """Every VDI record of the SRs the given VDIs live on: one VDI first to learn its SR,
    then every VDI of that SR in one call (snapshots live beside their disk), and so on for
    a VDI on another SR."""
    wanted = sorted(set(refs))
    found = {}
    missing = wanted
    while missing:
        rec = conn.call("VDI.get_record", missing[0])
        found.update(conn.call("VDI.get_all_records_where", 'field "SR"="%s"' % rec["SR"]))
        found[missing[0]] = rec
        missing = [ref for ref in wanted if ref not in found]
    return found

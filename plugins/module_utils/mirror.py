# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirroring the snapshot tree of one disk (DESIGN.md step 4) and syncing its leaf (step 5).

One *working VDI* W on the destination walks the tree in depth-first order, inactive children
first, the active child last. At each node W is brought to the node's content by writing only
the blocks where the previous node of the walk and this node differ, then ``VDI.snapshot(W)``
becomes the node's destination VDI. Every such snapshot is natively ``snapshot_of`` W, the
destination leaf, on both SR flavours (see DESIGN.md for why not the seed's temporary clones).

Idempotency: W and every node VDI carry ``sxm:*`` markers in ``other_config``; a re-run skips
the nodes that were completed and writes the next one from the last completed node, which also
rewrites any block a crash left half written (those blocks differ between the two nodes).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.xapi.sxm.plugins.module_utils import datapath
from ansible_collections.xapi.sxm.plugins.module_utils.progress import Progress

MARK_JOB = "sxm:job"
MARK_ROLE = "sxm:role"            # working | node
MARK_SOURCE = "sxm:source"        # uuid of the source VDI this destination VDI mirrors
MARK_DEVICE = "sxm:userdevice"
MARK_STATE = "sxm:state"          # on W: walking | synced


class DiskResult:
    def __init__(self, userdevice):
        self.userdevice = userdevice
        self.working_vdi = None        # destination ref of W
        self.working_uuid = None
        self.pairs = {}                # source VDI uuid -> destination VDI uuid
        self.bytes_read = 0
        self.bytes_written = 0
        self.walk_minimum = 0          # bytes: first node's data + blocks differing along the walk
        self.edge_minimum = 0          # bytes: first node's data + blocks differing on tree edges
        self.nodes_done = 0
        self.nodes_skipped = 0
        self.changed = False

    def to_dict(self):
        return {"userdevice": self.userdevice, "working_vdi_uuid": self.working_uuid,
                "pairs": dict(self.pairs), "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written, "walk_minimum_bytes": self.walk_minimum,
                "edge_minimum_bytes": self.edge_minimum, "nodes_mirrored": self.nodes_done,
                "nodes_already_done": self.nodes_skipped}


def find_marked(conn, sr, job, userdevice):
    """Destination VDIs this job made for this disk: (W or None, {source uuid: (ref, rec)},
    [half-made refs])."""
    vdis = conn.call("VDI.get_all_records_where", 'field "SR"="%s"' % sr)
    working, nodes, half = None, {}, []
    for ref, rec in vdis.items():
        oc = rec["other_config"]
        if oc.get(MARK_JOB) != job or oc.get(MARK_DEVICE) != str(userdevice):
            continue
        role = oc.get(MARK_ROLE)
        if role == "working" and not rec["is_a_snapshot"]:
            working = (ref, rec)
        elif role == "node" and oc.get(MARK_SOURCE):
            nodes[oc[MARK_SOURCE]] = (ref, rec)
        else:
            # a snapshot of W that crashed before it was marked as a node
            half.append(ref)
    return working, nodes, half


class DiskMirror:
    """Mirrors disk ``userdevice`` of a discovered tree from ``src`` to SR ``dst_sr`` of
    ``dst``. ``tls``: whether the source NBD network requires TLS."""

    def __init__(self, src, dst, tree, userdevice, dst_sr, job, tls=True, use_cbt=True,
                 progress=None, limiter=None, connections=datapath.NBD_CONNECTIONS):
        self.src, self.dst, self.tree = src, dst, tree
        self.userdevice = userdevice
        self.dst_sr = dst_sr
        self.job = job
        self.tls = tls
        self.use_cbt = use_cbt
        self.progress = progress or Progress([], "", 1)
        self.limiter = limiter
        self.connections = connections
        self.result = DiskResult(userdevice)
        self.frames = datapath.FramePool()    # write buffers, reused from node to node

    # ---- the walk -------------------------------------------------------------------------
    def run(self, sync_leaf=True):
        walk = self.tree.walk(self.userdevice)
        leaf = self.tree.vm.disks.get(self.userdevice)
        working, done, half = find_marked(self.dst, self.dst_sr, self.job, self.userdevice)
        for ref in half:
            self.dst.call("VDI.destroy", ref)
            self.result.changed = True
        w_ref = working[0] if working else self._create_working(walk, leaf)
        w_rec = self.dst.call("VDI.get_record", w_ref)
        self.result.working_vdi, self.result.working_uuid = w_ref, w_rec["uuid"]
        steps = len(walk) + (1 if leaf is not None and sync_leaf else 0)
        previous = None            # (node, disk, digests) W holds, or None when W is blank
        digests_by_node = {}       # node uuid -> digests, kept while children may need them
        last_use = {}              # node uuid -> index of its last child in the walk (leaf: len)
        for index, node in enumerate(walk + [self.tree.vm]):
            parent = self._disk_parent(node)
            if parent is not None:
                last_use[parent.uuid] = index
        for index, node in enumerate(walk):
            disk = node.disks[self.userdevice]
            self.progress.set_node(self.userdevice, index + 1, steps, node.name_label)
            if disk.uuid in done:
                self.result.pairs[disk.uuid] = done[disk.uuid][1]["uuid"]
                self.result.nodes_skipped += 1
                previous = (node, disk, None)
                continue
            prev_digests = self._digests_of(previous)
            digests, dummy = self._bring_working_to(w_rec, disk, previous, prev_digests)
            self._account(node, disk, prev_digests, digests, digests_by_node)
            digests_by_node[node.uuid] = digests
            for uuid in [u for u in digests_by_node if last_use.get(u, -1) <= index]:
                del digests_by_node[uuid]   # bounded memory: no later node compares with it
            dest = self._snapshot_working(w_ref, disk)
            self.result.pairs[disk.uuid] = dest
            self.result.nodes_done += 1
            self.result.changed = True
            previous = (node, disk, digests)
        if sync_leaf and leaf is not None:
            self.progress.set_node(self.userdevice, steps, steps, "%s (the VM's disk)" % self.tree.vm.name_label)
            self._sync_leaf(w_ref, w_rec, leaf, previous, digests_by_node)
        self.frames.close()
        if leaf is not None:
            self.result.pairs[leaf.uuid] = w_rec["uuid"]
        return self.result

    def _create_working(self, walk, leaf):
        first = walk[0].disks[self.userdevice] if walk else leaf
        model = leaf or first
        ref = self.dst.call("VDI.create", {
            "name_label": model.name_label, "name_description": "mirror of %s" % model.uuid,
            "SR": self.dst_sr, "virtual_size": str(first.virtual_size), "type": "user",
            "sharable": False, "read_only": False, "xenstore_data": {}, "sm_config": {},
            "tags": [], "other_config": {MARK_JOB: self.job, MARK_ROLE: "working",
                                         MARK_DEVICE: str(self.userdevice),
                                         MARK_SOURCE: model.uuid, MARK_STATE: "walking"}})
        self.result.changed = True
        return ref

    def _digests_of(self, previous):
        """Digests of what W holds; re-read from the source after a resume."""
        if previous is None:
            return None
        node, disk, digests = previous
        if digests is not None:
            return digests
        with self._source(disk) as source:
            digests, read = datapath.copy_node(source, disk.virtual_size, datapath.NullWriter())
        self.result.bytes_read += read
        return digests

    def _source(self, disk):
        records = self.src.call("VDI.get_nbd_info", disk.vdi_ref)
        return datapath.NbdSource(datapath.pick_nbd_record(records), tls=self.tls, limiter=self.limiter,
                                  connections=self.connections)

    def _bring_working_to(self, w_rec, disk, previous, prev_digests, want_digests=True):
        """Write into W what differs between the node it holds and ``disk``. Returns the
        digests of ``disk`` (None when not wanted and W was blank) and the blocks written."""
        if int(w_rec["virtual_size"]) != disk.virtual_size:
            self.dst.call("VDI.resize", self.result.working_vdi, str(disk.virtual_size))
            w_rec["virtual_size"] = str(disk.virtual_size)
        candidates = self._cbt_candidates(previous, disk) if prev_digests is not None else None
        writer = datapath.BatchWriter(self.dst, w_rec["uuid"], self.frames)
        with self._source(disk) as source:
            digests, read = datapath.copy_node(source, disk.virtual_size, writer, prev_digests,
                                               candidates, progress=self.progress.add,
                                               want_digests=want_digests)
        self.result.bytes_read += read
        self.result.bytes_written += writer.written
        return digests, writer.blocks

    def _cbt_candidates(self, previous, disk):
        """Blocks that may differ between the node W holds and ``disk``, from CBT: the union
        of the changed blocks along the tree path between them. None: read everything."""
        if not self.use_cbt or previous is None:
            return None
        prev_disk = previous[1]
        if not (prev_disk.cbt_enabled and disk.cbt_enabled):
            return None
        nblocks = (disk.virtual_size + datapath.BLOCK - 1) // datapath.BLOCK
        try:
            ancestor = self._common_ancestor_disk(prev_disk, disk)
            if ancestor is None:
                return None
            blocks = set()
            for target in (prev_disk, disk):
                if target.uuid != ancestor.uuid:
                    bitmap = self.src.call("VDI.list_changed_blocks", ancestor.vdi_ref, target.vdi_ref)
                    blocks.update(datapath.changed_blocks_from_bitmap(bitmap, nblocks))
            return sorted(blocks)
        except Exception:  # noqa: BLE001 - CBT is an optimisation; content comparison is exact
            return None

    def _common_ancestor_disk(self, a, b):
        """The nearest node holding this disk that is an ancestor of (or equal to) both."""
        def chain(disk):
            for node in self.tree.nodes.values():
                if self.userdevice in node.disks and node.disks[self.userdevice].uuid == disk.uuid:
                    out = []
                    while node is not None:
                        if self.userdevice in node.disks:
                            out.append(node.disks[self.userdevice])
                        node = node.parent
                    return out
            return [disk]
        b_uuids = {d.uuid for d in chain(b)}
        for d in chain(a):
            if d.uuid in b_uuids:
                return d
        return None

    def _account(self, node, disk, prev_digests, digests, digests_by_node):
        block = datapath.BLOCK
        if prev_digests is None:
            first = sum(1 for d in digests if d != datapath.ZERO_DIGEST) * block
            self.result.walk_minimum += first
        else:
            self.result.walk_minimum += count_differences(prev_digests, digests) * block
        parent = self._disk_parent(node)
        if parent is None or parent.uuid not in digests_by_node:
            self.result.edge_minimum += sum(1 for d in digests if d != datapath.ZERO_DIGEST) * block
        else:
            self.result.edge_minimum += count_differences(digests_by_node[parent.uuid], digests) * block

    def _disk_parent(self, node):
        """The nearest ancestor that holds this disk (nodes without it are transparent)."""
        parent = node.parent
        while parent is not None and self.userdevice not in parent.disks:
            parent = parent.parent
        return parent

    def _snapshot_working(self, w_ref, disk):
        snap = self.dst.call("VDI.snapshot", w_ref, {})
        oc = self.dst.call("VDI.get_other_config", snap)
        oc.update({MARK_JOB: self.job, MARK_ROLE: "node", MARK_DEVICE: str(self.userdevice),
                   MARK_SOURCE: disk.uuid})
        oc.pop(MARK_STATE, None)
        self.dst.call("VDI.set_other_config", snap, oc)
        return self.dst.call("VDI.get_uuid", snap)

    def _sync_leaf(self, w_ref, w_rec, leaf, previous, digests_by_node):
        """Cold sync: bring W to the halted VM's own disk."""
        oc = self.dst.call("VDI.get_other_config", w_ref)
        if oc.get(MARK_STATE) == "synced":
            return
        prev_digests = self._digests_of(previous)
        if prev_digests is None:
            # a disk without snapshots: nothing compares with it, so its blocks are only
            # tested for zeroes, and what was written is both minimums
            dummy, blocks = self._bring_working_to(w_rec, leaf, previous, None, want_digests=False)
            self.result.walk_minimum += blocks * datapath.BLOCK
            self.result.edge_minimum += blocks * datapath.BLOCK
        else:
            digests, dummy = self._bring_working_to(w_rec, leaf, previous, prev_digests)
            self._account(self.tree.vm, leaf, prev_digests, digests, digests_by_node)
        oc[MARK_STATE] = "synced"
        self.dst.call("VDI.set_other_config", w_ref, oc)
        self.result.changed = True


def count_differences(a, b):
    n = max(len(a), len(b))
    zero = datapath.ZERO_DIGEST
    return sum(1 for i in range(n)
               if (a[i] if i < len(a) else zero) != (b[i] if i < len(b) else zero))

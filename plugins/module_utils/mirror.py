# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirroring the snapshot tree of one disk (DESIGN.md step 4) and syncing its leaf (step 5).

One *working VDI* W on the destination walks the tree in depth-first order, inactive children
first, the active child last. At each node W is brought to the node's content by writing only
the blocks where what W holds and the node differ, then ``VDI.snapshot(W)`` becomes the node's
destination VDI. Every such snapshot is natively ``snapshot_of`` W, the destination leaf, on
both SR flavours (see DESIGN.md for why not the seed's temporary clones).

Resume: W's ``sxm:holds`` marker records exactly what it holds, written before and after
every change to it:

- ``blank``; ``node:<source VDI uuid>`` (a snapshot's content: snapshots never change);
- ``leaf:<source VDI uuid>:<fingerprint>``: the VM's own disk as it was when synced. The
  fingerprint is a digest of the leaf's per-64 KiB block digests, so it covers the disk's
  *content*: a write to the halted disk (``import_raw_vdi``) changes it, which no fingerprint
  of VM or VDI records would show;
- ``transient:<source VDI uuid>``: a warm migration's transient snapshot of the running VM's
  disk (warm.py): trusted while the job's snapshot exists;
- ``writing:<target uuid>:from:<what it held>``: a write was under way. Every block written
  lies where the two differ, so writing that difference again from what W held is exact.

A re-run checks the marker against the source as it is now. What still exists and matches
(a snapshot, a leaf with the same fingerprint) is trusted; anything else (a reverted leaf, a
deleted snapshot, a written disk) makes W's content unknown, and then W itself is read back
from the destination over NBD and brought to the next node from its real content. Node VDIs
whose source snapshot no longer exists are removed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.xapi.sxm.plugins.module_utils import datapath, delta, xapi
from ansible_collections.xapi.sxm.plugins.module_utils.digests import DigestStore
from ansible_collections.xapi.sxm.plugins.module_utils.errors import DataPathError, XapiFailure
from ansible_collections.xapi.sxm.plugins.module_utils.markers import (
    DEVICE, HOLDS, JOB, ROLE, SOURCE, TRANSIENT, set_key)
from ansible_collections.xapi.sxm.plugins.module_utils.tree import Disk
from ansible_collections.xapi.sxm.plugins.module_utils.verify import PARTIAL
from ansible_collections.xapi.sxm.plugins.module_utils.progress import Progress

# names kept for the code that imported them from here
MARK_JOB, MARK_ROLE, MARK_SOURCE, MARK_DEVICE = JOB, ROLE, SOURCE, DEVICE


class Held:
    """What W holds: a source disk (its digests read when first needed), or content known
    only by its digests (read back from W), or nothing (``disk`` and ``digests`` None)."""

    def __init__(self, marker, disk=None, digests=None):
        self.marker = marker
        self.disk = disk
        self.digests = digests

    @property
    def blank(self):
        return self.disk is None and self.digests is None


BLANK = "blank"


def node_marker(disk):
    return "node:%s" % disk.uuid


def leaf_marker(disk, digests):
    # W known only where written (a warm re-run's CBT passes): no fingerprint a re-run could match
    fingerprint = PARTIAL if digests.partial else datapath.content_fingerprint(digests)
    return "leaf:%s:%s" % (disk.uuid, fingerprint)


def transient_marker(disk, digests):
    return "transient:%s" % disk.uuid


def writing_marker(target, held):
    return "writing:%s:from:%s" % (target.uuid, held.marker)


class DiskResult:
    def __init__(self, userdevice):
        self.userdevice = userdevice
        self.working_vdi = None        # destination ref of W
        self.working_uuid = None
        self.pairs = {}                # source VDI uuid -> destination VDI uuid
        self.bytes_read = 0
        self.bytes_written = 0
        self.walk_minimum = 0          # bytes: first node's data + blocks differing along the walk
        self.walk_minimum_2m = 0       # the same counted in 2 MiB blocks (a VHD map's unit)
        self.edge_minimum = 0          # bytes: first node's data + blocks differing on tree edges
        self.nodes_done = 0
        self.nodes_skipped = 0
        self.stale_nodes_removed = []  # source uuids whose snapshot no longer exists
        self.read_back = 0             # bytes of W read from the destination to learn its content
        self.written_read_back = 0     # bytes written and read back to check them
        self.written_read_back_s = 0.0  # seconds of that read-back: verification, not data movement
        self.written_read_back_cpu_s = 0.0  # and the CPU it spent, every thread of it
        self.delta_sources = {}        # "cbt" / "vhd" / "content" -> nodes whose reads it chose
        self.nodes = {}                # source VDI uuid -> bytes read and written, seconds (the report's)
        self.changed = False

    def node_figures(self, disk):
        """Count what follows against node ``disk`` (a context: its bytes and seconds add up)."""
        return NodeFigures(self, disk.uuid)

    def to_dict(self):
        return {"userdevice": self.userdevice, "working_vdi_uuid": self.working_uuid,
                "pairs": dict(self.pairs), "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written, "walk_minimum_bytes": self.walk_minimum,
                "walk_minimum_2m_bytes": self.walk_minimum_2m,
                "edge_minimum_bytes": self.edge_minimum, "nodes_mirrored": self.nodes_done,
                "nodes_already_done": self.nodes_skipped, "stale_nodes_removed": self.stale_nodes_removed,
                "working_vdi_read_back_bytes": self.read_back,
                "written_read_back_bytes": self.written_read_back,
                "written_read_back_s": round(self.written_read_back_s, 3),
                "written_read_back_cpu_s": round(self.written_read_back_cpu_s, 3),
                "delta_sources": dict(self.delta_sources), "nodes": dict(self.nodes)}


class NodeFigures:
    def __init__(self, result, uuid):
        self.result, self.uuid = result, uuid

    def __enter__(self):
        self.started = time.monotonic()
        self.read, self.written = self.result.bytes_read, self.result.bytes_written
        return self

    def __exit__(self, *exc):
        row = self.result.nodes.setdefault(self.uuid, {"bytes_read": 0, "bytes_written": 0, "seconds": 0.0})
        row["bytes_read"] += self.result.bytes_read - self.read
        row["bytes_written"] += self.result.bytes_written - self.written
        row["seconds"] = round(row["seconds"] + time.monotonic() - self.started, 3)
        return False


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
    ``dst``. ``tls``: whether the source NBD network requires TLS; ``dst_tls`` the same for
    the destination's (read only when W's content must be read back). ``cancel`` (a
    cancel.Cancel) is checked between nodes and, through ``progress``, while data moves."""

    VDI_TYPE = "user"         # of W

    def __init__(self, src, dst, tree, userdevice, dst_sr, job, tls=True, use_cbt=True,
                 progress=None, limiter=None, connections=datapath.NBD_CONNECTIONS, dst_tls=True,
                 cancel=None, use_vhd_maps=True):
        self.src, self.dst, self.tree = src, dst, tree
        self.userdevice = userdevice
        self.dst_sr = dst_sr
        self.job = job
        self.tls = tls
        self.dst_tls = dst_tls
        self.deltas = delta.DeltaFinder(src, tree, userdevice, use_cbt=use_cbt, use_vhd=use_vhd_maps, job=job)
        self.progress = progress or Progress([], "", 1)
        self.limiter = limiter
        self.connections = connections
        self.cancel = cancel
        self.result = DiskResult(userdevice)
        self.frames = datapath.FramePool()    # write buffers, reused from node to node
        self.w_ref = self.w_rec = None
        self.held = None                      # what W holds once run() returned

    # ---- the walk -------------------------------------------------------------------------
    def run(self, sync_leaf=True):
        walk = self.tree.mirror_walk(self.userdevice)
        leaf = self.tree.vm.disks.get(self.userdevice)
        done = self._prepare(walk, leaf)
        if self.w_ref is None:
            # a disk the VM no longer has, every snapshot of it already mirrored
            self.result.pairs.update(done)
            self.result.nodes_skipped = len(walk)
            return self.result
        held = self._resolve_held(walk, leaf, done)
        steps = len(walk) + (1 if leaf is not None and sync_leaf else 0)
        digests_by_node = {}       # node uuid -> digests, kept while children may need them
        last_use = {}              # node uuid -> index of its last child in the walk (leaf: len)
        for index, node in enumerate(walk + [self.tree.vm]):
            parent = self._disk_parent(node)
            if parent is not None:
                last_use[parent.uuid] = index
        try:
            for index, node in enumerate(walk):
                disk = node.disks[self.userdevice]
                self.progress.set_node(self.userdevice, index + 1, steps, node.name_label)
                if disk.uuid in done:
                    self.result.pairs[disk.uuid] = done[disk.uuid]
                    self.result.nodes_skipped += 1
                    continue
                self._check_cancel()
                with self.result.node_figures(disk):
                    prev_digests = self._digests_of(held)
                    digests, written = self._write(disk, held, prev_digests)
                    self._account(node, disk, prev_digests, digests, digests_by_node)
                    digests_by_node[node.uuid] = digests
                    for uuid in [u for u in digests_by_node if last_use.get(u, -1) <= index]:
                        # no later node compares with it (a store also held by W lives on in held)
                        stale = digests_by_node.pop(uuid)
                        if stale is not digests:
                            stale.close()
                    held = self._node_done(disk, digests, written)
            # W may have held the leaf and then been brought to a node mirrored again
            if sync_leaf and leaf is not None and held.disk is not leaf:
                self._check_cancel()
                self.progress.set_node(self.userdevice, steps, steps, "%s (the VM's disk)" % self.tree.vm.name_label)
                with self.result.node_figures(leaf):
                    prev_digests = self._digests_of(held)
                    digests, written = self._write(leaf, held, prev_digests)
                    self._account(self.tree.vm, leaf, prev_digests, digests, digests_by_node)
                    self._check_written(self.w_ref, leaf, digests, written)
                    held = Held(leaf_marker(leaf, digests), leaf, digests)
                    set_key(self.dst, "VDI", self.w_ref, HOLDS, held.marker)
            self.held = held
        finally:
            self.frames.close()
        if leaf is not None:
            self.result.pairs[leaf.uuid] = self.w_rec["uuid"]
        else:
            # the VM no longer has this disk (only its snapshots do): W, which no VM uses, goes,
            # and the destination snapshots' snapshot_of dangles as the source's does
            self.dst.call("VDI.destroy", self.w_ref)
            self.w_ref = None
            self.result.changed = True
        return self.result

    def _check_cancel(self):
        if self.cancel is not None:
            self.cancel.check()

    def _prepare(self, walk, leaf):
        """Find or create W; remove what a crash half made and the nodes of snapshots that no
        longer exist. Returns {source uuid: destination uuid} of the nodes already done."""
        self._remove_from_other_srs()
        working, done, half = find_marked(self.dst, self.dst_sr, self.job, self.userdevice)
        in_tree = {n.disks[self.userdevice].uuid for n in walk}
        for source_uuid in sorted(done):
            if source_uuid not in in_tree:
                half.append(done[source_uuid][0])
                self.result.stale_nodes_removed.append(source_uuid)
                del done[source_uuid]
        for ref in half:
            self.dst.call("VDI.destroy", ref)
            self.result.changed = True
        done = dict((uuid, found[1]["uuid"]) for uuid, found in done.items())
        if working:
            self.w_ref = working[0]
        elif leaf is None and in_tree <= set(done):
            self.w_ref = None
            return done
        else:
            self.w_ref = self._create_working(walk, leaf)
        self.w_rec = self.dst.call("VDI.get_record", self.w_ref)
        self.result.working_vdi, self.result.working_uuid = self.w_ref, self.w_rec["uuid"]
        self._remove_killed_runs_tasks()
        return done

    def _remove_killed_runs_tasks(self):
        """A run killed between creating a handler's task and sending its request left the
        task pending, which XAPI keeps for 24 h; this disk's (we hold the job's lock) go."""
        xapi.remove_stale_tasks(self.src, delta.ALLOCATION_MAP_TASK, self.deltas.task_description)
        xapi.remove_stale_tasks(self.dst, datapath.IMPORT_TASK, datapath.import_description(self.w_rec["uuid"]))

    def _remove_from_other_srs(self):
        """What an earlier run made for this disk on another SR (the destination SR was
        changed between runs) is not reused: it is removed, snapshots first."""
        for sr in self.dst.call("SR.get_all"):
            if sr == self.dst_sr:
                continue
            working, done, half = find_marked(self.dst, sr, self.job, self.userdevice)
            for ref in half + [found[0] for found in done.values()] + ([working[0]] if working else []):
                self.dst.call("VDI.destroy", ref)
                self.result.changed = True

    def _resolve_held(self, walk, leaf, done):
        """What W holds now, checked against the source as it is (see the module's
        docstring). Returns a Held."""
        marker = self.w_rec["other_config"].get(HOLDS, "")
        held = self._trusted(marker, walk, leaf)
        if held is None and marker.startswith("writing:"):
            held = self._finish_interrupted_write(marker, walk, leaf, done)
        if held is None:
            held = self._read_back_working()
        return held

    def _trusted(self, marker, walk, leaf):
        """A Held for ``marker`` if the source still holds that content, else None."""
        if marker == BLANK:
            return Held(BLANK)
        kind, dummy, rest = marker.partition(":")
        if kind == "node":
            disk = self._snapshot_disk(rest, walk)
            return Held(marker, disk) if disk is not None else None
        if kind == "transient":
            disk = self._transient(rest)
            return Held(marker, disk) if disk is not None else None
        # a running VM's disk changes under any fingerprint of it
        if kind == "leaf" and leaf is not None and self.tree.vm.power_state == "Halted":
            uuid, dummy, fingerprint = rest.partition(":")
            if uuid == leaf.uuid:
                digests = self._read_digests(leaf)
                if datapath.content_fingerprint(digests) == fingerprint:
                    return Held(marker, leaf, digests)
        return None

    def _finish_interrupted_write(self, marker, walk, leaf, done):
        """W was being brought from F to snapshot T: if both still exist, writing the
        difference again from F makes W exactly T (and T's node, if it was not made yet)."""
        target_uuid, dummy, from_marker = marker[len("writing:"):].partition(":from:")
        target = self._snapshot_disk(target_uuid, walk)
        origin = self._trusted(from_marker, walk, leaf)
        if target is None or origin is None:
            return None
        digests, written = self._write(target, origin, self._digests_of(origin))
        if target.uuid in done:
            self._check_written(self.w_ref, target, digests, written)
            set_key(self.dst, "VDI", self.w_ref, HOLDS, node_marker(target))
            return Held(node_marker(target), target, digests)
        held = self._node_done(target, digests, written)
        done[target.uuid] = self.result.pairs[target.uuid]
        return held

    def _read_back_working(self):
        """W's real content, read from the destination: what it holds is not known."""
        size = int(self.w_rec["virtual_size"])
        records = self.dst.call("VDI.get_nbd_info", self.w_ref)
        with datapath.NbdSource(datapath.pick_nbd_record(records), tls=self.dst_tls) as source:
            digests, read = datapath.copy_node(source, size, datapath.NullWriter())
        datapath.wait_dom0_detached(self.dst, self.w_ref)
        self.result.read_back += read
        set_key(self.dst, "VDI", self.w_ref, HOLDS, "unknown")
        return Held("unknown", None, digests)

    def _transient(self, uuid):
        """This job's transient snapshot ``uuid`` of the disk on the source, or None."""
        try:
            ref = self.src.call("VDI.get_by_uuid", uuid)
            rec = self.src.call("VDI.get_record", ref)
        except XapiFailure:
            return None
        if rec["other_config"].get(TRANSIENT) != self.job:
            return None
        return Disk(self.userdevice, ref, rec)

    # ---- a running VM's leaf (warm.py) ---------------------------------------------------

    def sync_to(self, disk, marker):
        """Bring W from what it holds to ``disk`` (a transient snapshot of the running leaf,
        or the halted leaf), the difference found by ``DeltaFinder.since``; every block
        written is read back. W's marker becomes ``marker`` (a function of the new digests).
        Returns the BlockMap of the blocks written.

        On a re-run, what W holds (the job's last transient snapshot) is known by its marker
        but not by digests. Where CBT names the blocks changed since, W's other blocks are left
        unknown (DigestStore.unknown) and every changed block is written: reading the base
        whole to learn them would cost the whole disk for a day's few changed blocks."""
        with self.result.node_figures(self.tree.vm.disks[self.userdevice]):
            return self._sync_to(disk, marker)

    def _sync_to(self, disk, marker):
        held = self.held
        found = None
        if held.digests is None and held.disk is not None:
            found = self.deltas.since(held.disk, disk)
            if found[1] == "cbt":
                held.digests = DigestStore.unknown(self._nblocks(held.disk))
        prev_digests = self._digests_of(held)
        try:
            digests, written = self._write(disk, held, prev_digests, since=True, found=found)
            self._check_written(self.w_ref, disk, digests, written)
        finally:
            self.frames.close()
        self.held = Held(marker(disk, digests), disk, digests)
        set_key(self.dst, "VDI", self.w_ref, HOLDS, self.held.marker)
        if prev_digests is not None and prev_digests is not digests:
            prev_digests.close()
        return written

    def _snapshot_disk(self, uuid, walk):
        for node in walk:
            if node.disks[self.userdevice].uuid == uuid:
                return node.disks[self.userdevice]
        return None

    def _create_working(self, walk, leaf):
        first = walk[0].disks[self.userdevice] if walk else leaf
        model = leaf or first
        ref = self.dst.call("VDI.create", {
            "name_label": model.name_label, "name_description": "mirror of %s" % model.uuid,
            "SR": self.dst_sr, "virtual_size": str(first.virtual_size), "type": self.VDI_TYPE,
            "sharable": False, "read_only": False, "xenstore_data": {}, "sm_config": {},
            "tags": [], "other_config": {JOB: self.job, ROLE: "working", DEVICE: str(self.userdevice),
                                         SOURCE: model.uuid, HOLDS: BLANK}})
        self.result.changed = True
        return ref

    def _node_done(self, disk, digests, written):
        """W holds ``disk``'s content: snapshot it as the node's destination VDI, read back
        from the snapshot what was written (it is never written again: no read-only attach
        stays in the way of W's next import), then mark it as the node."""
        snap = self.dst.call("VDI.snapshot", self.w_ref, {})
        try:
            self._check_written(snap, disk, digests, written)
        except Exception:
            self.dst.call("VDI.destroy", snap)
            raise
        self.result.pairs[disk.uuid] = self._mark_node(snap, disk)
        self.result.nodes_done += 1
        self.result.changed = True
        set_key(self.dst, "VDI", self.w_ref, HOLDS, node_marker(disk))
        return Held(node_marker(disk), disk, digests)

    def _check_written(self, vdi_ref, disk, digests, written):
        """Every block written is read back from ``vdi_ref`` on the destination and compared
        with the source's digests (the default verification relies on it)."""
        if not written:
            return
        started, cpu_started = time.monotonic(), time.thread_time()
        records = self.dst.call("VDI.get_nbd_info", vdi_ref)
        with datapath.NbdSource(datapath.pick_nbd_record(records), tls=self.dst_tls) as source:
            back, read = datapath.digests_of_blocks(source, disk.virtual_size, written)
        if vdi_ref == self.w_ref:
            datapath.wait_dom0_detached(self.dst, vdi_ref)
        self.result.written_read_back += read
        bad = datapath.differing_blocks(digests, back, written)
        back.close()
        self.result.written_read_back_s += time.monotonic() - started
        self.result.written_read_back_cpu_s += time.thread_time() - cpu_started + source.worker_cpu_s
        if bad:
            # what W holds is no longer known: the next run reads it back whole
            set_key(self.dst, "VDI", self.w_ref, HOLDS, "unknown")
            raise DataPathError(
                "%d block(s) written for disk %s of %s read back different from the destination "
                "(the first at offset %d): its SR did not keep what was written. The source is "
                "untouched: run again to write them again, and check the destination SR if this "
                "repeats" % (len(bad), self.userdevice, disk.name_label, bad[0] * datapath.BLOCK))

    def _write(self, disk, held, prev_digests, since=False, found=None):
        """Bring W from ``held`` to ``disk``'s content; the marker says so first. Returns
        (the digests of ``disk``, the BlockMap of the blocks written)."""
        set_key(self.dst, "VDI", self.w_ref, HOLDS, writing_marker(disk, held))
        self.result.changed = True
        return self._bring_working_to(self.w_rec, disk, held, prev_digests, since, found)

    @staticmethod
    def _nblocks(disk):
        return (disk.virtual_size + datapath.BLOCK - 1) // datapath.BLOCK

    def _digests_of(self, held):
        """Digests of what W holds (None when blank); a source disk is read when needed."""
        if held.digests is None and held.disk is not None:
            held.digests = self._read_digests(held.disk)
        return held.digests

    def _read_digests(self, disk):
        with self._source(disk) as source:
            digests, read = datapath.copy_node(source, disk.virtual_size, datapath.NullWriter())
        self.result.bytes_read += read
        return digests

    def _source(self, disk):
        records = self.src.call("VDI.get_nbd_info", disk.vdi_ref)
        return datapath.NbdSource(datapath.pick_nbd_record(records), tls=self.tls, limiter=self.limiter,
                                  connections=self.connections)

    def _bring_working_to(self, w_rec, disk, held, prev_digests, since=False, found=None):
        """Write into W what differs between what it holds and ``disk`` (``since``: ``disk``
        is later in the history of what W holds, see sync_to; ``found``: the delta's
        (candidates, source) already asked for). Returns the digests of ``disk``."""
        if int(w_rec["virtual_size"]) != disk.virtual_size:
            self.dst.call("VDI.resize", self.w_ref, str(disk.virtual_size))
            w_rec["virtual_size"] = str(disk.virtual_size)
        candidates = allocated = None
        if prev_digests is None:
            allocated, chosen_by = self.deltas.allocated(disk)
        elif found is not None:
            candidates, chosen_by = found
        elif held.disk is not None:
            find = self.deltas.since if since else self.deltas.between
            candidates, chosen_by = find(held.disk, disk)
        else:
            chosen_by = "content"     # W's content was read back: no source knows its history
        self.result.delta_sources[chosen_by] = self.result.delta_sources.get(chosen_by, 0) + 1
        # a node that will most likely write: its import's attach overlaps the source's
        expected = candidates if prev_digests is not None else allocated
        writer = datapath.BatchWriter(self.dst, w_rec["uuid"], self.frames, nblocks=self._nblocks(disk),
                                      eager=expected is None or len(expected) > 0, sr=w_rec["SR"])
        try:
            with self._source(disk) as source:
                digests, read = datapath.copy_node(source, disk.virtual_size, writer, prev_digests,
                                                   candidates, progress=self.progress.add,
                                                   allocated_blocks=allocated)
        except BaseException:
            writer.abandon()         # the source could not be opened: end the open import
            raise
        self.result.bytes_read += read
        self.result.bytes_written += writer.written
        return digests, writer.written_blocks

    def _account(self, node, disk, prev_digests, digests, digests_by_node):
        block, group = datapath.BLOCK, delta.PER_VHD_BLOCK
        if prev_digests is None:
            self.result.walk_minimum += digests.nonzero_blocks() * block
            self.result.walk_minimum_2m += digests.nonzero_blocks(group) * block * group
        else:
            self.result.walk_minimum += prev_digests.differences(digests) * block
            self.result.walk_minimum_2m += prev_digests.differences(digests, group) * block * group
        parent = self._disk_parent(node)
        if parent is None or parent.uuid not in digests_by_node:
            self.result.edge_minimum += digests.nonzero_blocks() * block
        else:
            self.result.edge_minimum += digests_by_node[parent.uuid].differences(digests) * block

    def _disk_parent(self, node):
        """The nearest ancestor that holds this disk (nodes without it are transparent)."""
        parent = node.parent
        while parent is not None and self.userdevice not in parent.disks:
            parent = parent.parent
        return parent

    def _mark_node(self, snap, disk):
        oc = self.dst.call("VDI.get_other_config", snap)
        oc.update({MARK_JOB: self.job, MARK_ROLE: "node", MARK_DEVICE: str(self.userdevice),
                   MARK_SOURCE: disk.uuid})
        oc.pop(HOLDS, None)
        self.dst.call("VDI.set_other_config", snap, oc)
        return self.dst.call("VDI.get_uuid", snap)


def mirrored_pairs(dst, the_plan):
    """{source VDI uuid: destination VDI uuid} of every node and leaf the destination holds
    for this job, from the markers, and the list of what is not mirrored yet."""
    pairs, missing = {}, []
    tree = the_plan["tree"]
    for disk in the_plan["disks"]:
        device = disk["userdevice"]
        working, done, dummy = find_marked(dst, disk["destination_sr_ref"], the_plan["job"], device)
        for node in tree.mirror_walk(device):
            uuid = node.disks[device].uuid
            if uuid in done:
                pairs[uuid] = done[uuid][1]["uuid"]
            else:
                missing.append("disk %s of %s" % (device, node.name_label))
        leaf = tree.vm.disks.get(device)
        if leaf is None:
            continue
        holds = working[1]["other_config"].get(HOLDS, "") if working else ""
        if holds.startswith("leaf:%s:" % leaf.uuid):
            pairs[leaf.uuid] = working[1]["uuid"]
        else:
            missing.append("disk %s of the VM itself" % device)
    return pairs, missing

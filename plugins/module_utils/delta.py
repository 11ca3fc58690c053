# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which blocks may differ between two nodes of a disk, from the best source the pool offers.
The answer only narrows what is read: whatever chose the candidates, a block is written only
where its content differs from what the destination holds (datapath.copy_node compares
digests), so every source gives the same destination bytes.

The ladder, best first:

- ``cbt``: ``VDI.list_changed_blocks`` along the tree path between the two (64 KiB blocks);
  needs CBT on both VDIs.
- ``vhd``: the block allocation table (BAT) of ``GET /export_raw_vdi?format=vhd&base=<A>`` for
  B, read and the stream dropped, as Xen Orchestra does (the BAT comes before any data and is
  computed without reading any): the 2 MiB blocks allocated in the VHD files between the two
  chains. Without a base, the blocks allocated anywhere in B's chain: the others read zero.
  Needs a VHD SR (SMAPIv1); XAPI refuses a base elsewhere ("Cannot compute differences on
  non-VHD images"), then the ladder goes on. qcow2 VDIs (XCP-ng 8.3's ``format=qcow2``) are
  not asked: XAPI's qcow2 delta compares content itself, reading both disks whole on the host,
  which costs what reading them costs us; they fall back to content.
- ``content``: every block is read (block status, where the NBD server offers it, still
  skips the zero ones; XAPI's does not).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct
import time

from ansible_collections.xapi.sxm.plugins.module_utils.blockmap import BlockMap

BLOCK = 64 * 1024
VHD_BLOCK = 2 << 20
PER_VHD_BLOCK = VHD_BLOCK // BLOCK
FOOTER_AND_HEADER = 512 + 1024
EXPORT_END_TIMEOUT = 60     # seconds a dropped export may take to end its task (dom0 detach)


class NoAllocationMap(Exception):
    """The pool cannot give a VHD allocation map for this VDI (not a VHD SR, not a VHD)."""


def read_exactly(response, n):
    data = b""
    while len(data) < n:
        piece = response.read(n - len(data))
        if not piece:
            raise NoAllocationMap("the export ended after %d of %d bytes" % (len(data), n))
        data += piece
    return data


def parse_vhd_table(read, nblocks):
    """The BlockMap (64 KiB blocks) of a VHD stream's used BAT entries; ``read(n)`` gives the
    stream's next ``n`` bytes. Reads footer, header and table only."""
    head = read(FOOTER_AND_HEADER)
    if head[:8] != b"conectix" or head[512:520] != b"cxsparse":
        # XAPI sends 200 before any check: a failure is an empty or foreign body
        raise NoAllocationMap("the export is not a VHD stream")
    table_offset, dummy, entries, block_size = struct.unpack(">QIII", head[512 + 16:512 + 36])
    if block_size != VHD_BLOCK or table_offset < FOOTER_AND_HEADER:
        raise NoAllocationMap("unexpected VHD layout (block size %d, table at %d)" % (block_size, table_offset))
    read(table_offset - FOOTER_AND_HEADER)
    table = read(-(-4 * entries // 512) * 512)
    blocks = BlockMap(nblocks)
    for index, (entry,) in enumerate(struct.iter_unpack(">I", table[:4 * entries])):
        if entry != 0xFFFFFFFF:
            blocks.add_range(index * PER_VHD_BLOCK, PER_VHD_BLOCK)
    return blocks


ALLOCATION_MAP_TASK = "xapi.sxm allocation map"


def allocation_map_description(job, userdevice):
    """Names the job and disk, so that a re-run (holding the job's lock) can remove the
    pending task of a run killed between creating it and sending its request: XAPI keeps a
    pending task for 24 h."""
    return "VHD block allocation of disk %s for xapi.sxm job %s" % (userdevice, job)


def vhd_allocation(conn, vdi_ref, base_ref, nblocks, description="", sr=None):
    """The blocks a VHD export of ``vdi_ref`` (relative to ``base_ref``, or None) includes.
    The stream is dropped after the table; XAPI then fails the export's task (vhd-tool cannot
    write), which is waited for, so that its read-only dom0 attach is gone before anything
    attaches the VDI again, and destroyed."""
    task = conn.call("task.create", ALLOCATION_MAP_TASK, description)
    try:
        query = {"vdi": vdi_ref, "format": "vhd"}
        if base_ref:
            query["base"] = base_ref
        response = conn.http("GET", "/export_raw_vdi", query, task=task, sr=sr)
        try:
            if response.status != 200:
                raise NoAllocationMap("HTTP %s" % response.status)
            return parse_vhd_table(lambda n: read_exactly(response, n), nblocks)
        finally:
            # both: the response's file keeps the socket open after the connection's close,
            # and XAPI then writes on until its buffers fill, its task pending
            response.close()
            response.connection.close()
    finally:
        deadline = time.monotonic() + EXPORT_END_TIMEOUT
        while time.monotonic() < deadline and conn.call("task.get_status", task) == "pending":
            time.sleep(0.05)
        conn.call("task.destroy", task)


class DeltaFinder:
    """The delta sources of one disk's tree. ``tree``: the discovered source tree;
    ``use_cbt``: whether CBT may be used; ``use_vhd``: whether VHD maps may be asked for."""

    def __init__(self, conn, tree, userdevice, use_cbt=True, use_vhd=True, job=""):
        self.conn = conn
        self.tree = tree
        self.userdevice = userdevice
        self.task_description = allocation_map_description(job, userdevice)
        self.use_cbt = use_cbt
        self.use_vhd = use_vhd
        self.base_refused = False     # the SR cannot diff (not VHD): asking again costs an attach

    def between(self, held, disk):
        """(BlockMap of blocks that may differ between ``held`` and ``disk``, or None for
        all, the source's name)."""
        nblocks = (disk.virtual_size + BLOCK - 1) // BLOCK
        for name, ask in (("cbt", self._cbt), ("vhd", self._vhd)):
            blocks = ask(held, disk, nblocks)
            if blocks is not None:
                return blocks, name
        return None, "content"

    def since(self, older, newer):
        """Like ``between``, for ``newer`` taken later in ``older``'s own history (a warm
        migration's transient snapshot, or the halted leaf, after the snapshot ``older``):
        CBT is asked for the two directly, which the tree's nodes alone cannot name."""
        nblocks = (newer.virtual_size + BLOCK - 1) // BLOCK
        if self.use_cbt and older.cbt_enabled and newer.cbt_enabled:
            try:
                bitmap = self.conn.call("VDI.list_changed_blocks", older.vdi_ref, newer.vdi_ref)
                return BlockMap.from_cbt(bitmap, nblocks), "cbt"
            except Exception:  # noqa: BLE001 - CBT is an optimisation; content comparison is exact
                pass
        return self.between(older, newer)

    def allocated(self, disk):
        """(BlockMap of blocks that may hold data, or None when unknown, the source's name)
        for a first node: what is outside reads zero."""
        nblocks = (disk.virtual_size + BLOCK - 1) // BLOCK
        blocks = self._vhd(None, disk, nblocks)
        if blocks is not None:
            return blocks, "vhd"
        return None, "content"

    def _vhd(self, held, disk, nblocks):
        if not self.use_vhd or (held is not None and self.base_refused):
            return None
        try:
            return vhd_allocation(self.conn, disk.vdi_ref, held.vdi_ref if held else None, nblocks,
                                  self.task_description, sr=disk.sr_ref)
        except NoAllocationMap:
            self.base_refused = self.base_refused or held is not None
            return None
        except Exception:  # noqa: BLE001 - a map is an optimisation; content comparison is exact
            return None

    def _cbt(self, held, disk, nblocks):
        """The union of the changed blocks along the tree path between the two."""
        if not self.use_cbt or not (held.cbt_enabled and disk.cbt_enabled):
            return None
        try:
            ancestor = self._common_ancestor_disk(held, disk)
            if ancestor is None:
                return None
            blocks = BlockMap(nblocks)
            for target in (held, disk):
                if target.uuid != ancestor.uuid:
                    bitmap = self.conn.call("VDI.list_changed_blocks", ancestor.vdi_ref, target.vdi_ref)
                    blocks = blocks.union(BlockMap.from_cbt(bitmap, nblocks))
            return blocks
        except Exception:  # noqa: BLE001 - CBT is an optimisation; content comparison is exact
            return None

    def _common_ancestor_disk(self, a, b):
        """The nearest node holding this disk that is an ancestor of (or equal to) both."""
        device = self.userdevice

        def chain(disk):
            for node in self.tree.nodes.values():
                if device in node.disks and node.disks[device].uuid == disk.uuid:
                    out = []
                    while node is not None:
                        if device in node.disks:
                            out.append(node.disks[device])
                        node = node.parent
                    return out
            return [disk]
        b_uuids = {d.uuid for d in chain(b)}
        for d in chain(a):
            if d.uuid in b_uuids:
                return d
        return None

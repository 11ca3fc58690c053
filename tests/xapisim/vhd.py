"""What a SMAPIv1 (VHD) SR knows about a VDI's blocks, and the VHD stream XAPI exports.

Real VHD SRs keep each VDI as a chain of VHD files: a leaf, written by the VM, over hidden
parents shared with its snapshots (``VDI.snapshot`` turns the old leaf into a hidden parent
and gives the VDI and the snapshot a new empty leaf each). Our disks are flat raw files, so
the chain is bookkept beside them: per VDI the list of its VHD "files" (ids), per file the
2 MiB blocks its block allocation table (BAT) holds. Every write (``Storage.mark_changed``)
allocates in the VDI's leaf.

``GET /export_raw_vdi?format=vhd[&base=]`` streams what vhd-tool streams (mirage/ocaml-vhd
``vhd_format/f.ml`` ``Vhd_input.vhd_common``, xen-api ``vhd_tool_wrapper.ml``; the layout is
in shared/research/vhd-export-and-host-costs.md 1.2): footer, dynamic header, one zero sector
where the parent locator would be, the BAT at 2048, each included block as a 0xFF sector
bitmap and 2 MiB of the VDI's current content in ascending order, the footer again. Without
base a block is included if any file of the chain allocates it; with base, if any file of the
symmetric difference of the two chains does (allocation only, never content).
"""

import json
import os
import struct
import threading
import uuid as uuidlib

VHD_BLOCK = 2 << 20
SECTOR = 512
TABLE_OFFSET = 2048
UNUSED = 0xFFFFFFFF
DYNAMIC, DIFFERENCING = 3, 4
FOOTER = struct.Struct(">8sIIQI4sI4sQQIII16sB427x")
HEADER = struct.Struct(">8sQQIIII16sII512s192s256x")
LOCATOR = struct.Struct(">4sIIIQ")


def blocks_of(size):
    return -(-size // VHD_BLOCK)


def data_blocks(path, size):
    """2 MiB blocks of a sparse file that hold data (SEEK_DATA), for a VDI with no chain yet
    and for non-VHD sources (vhd-tool's raw input scans them the same way)."""
    out = set()
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return out
    try:
        offset, end = 0, min(size, os.fstat(fd).st_size)
        while offset < end:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break
            stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
            out.update(range(start // VHD_BLOCK, blocks_of(stop)))
            offset = stop
    finally:
        os.close(fd)
    return out


class Chains:
    """VHD chains of the VDIs of one pool, kept in ``<disks>/vhd-chains.json`` and one
    allocation bitmap per VHD file (``vhd-<id>.bat``, bit i = 2 MiB block i)."""

    def __init__(self, directory, raw_path):
        self.dir = directory
        self.raw_path = raw_path          # vdi uuid -> path of its raw file
        self.lock = threading.RLock()

    def _index_path(self):
        return os.path.join(self.dir, "vhd-chains.json")

    def _load(self):
        try:
            with open(self._index_path()) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _save(self, chains):
        tmp = self._index_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(chains, f)
        os.replace(tmp, self._index_path())

    def _bat_path(self, file_id):
        return os.path.join(self.dir, "vhd-%s.bat" % file_id)

    def _read_bat(self, file_id):
        try:
            with open(self._bat_path(file_id), "rb") as f:
                return bytearray(f.read())
        except FileNotFoundError:
            return bytearray()

    def _write_bat(self, file_id, bitmap):
        with open(self._bat_path(file_id), "wb") as f:
            f.write(bitmap)

    def _new_file(self, blocks=()):
        file_id = uuidlib.uuid4().hex
        bitmap = bytearray()
        for block in blocks:
            if len(bitmap) <= block // 8:
                bitmap.extend(bytes(block // 8 + 1 - len(bitmap)))
            bitmap[block // 8] |= 0x80 >> (block % 8)
        self._write_bat(file_id, bitmap)
        return file_id

    def chain(self, vdi_uuid):
        """The VDI's VHD files, leaf first. A VDI seen for the first time becomes one file
        holding the blocks its raw file has data in (a new VDI: none; the benchmarks fill
        disk files directly before anything else looks at them)."""
        with self.lock:
            chains = self._load()
            if vdi_uuid not in chains:
                path = self.raw_path(vdi_uuid)
                size = os.path.getsize(path) if os.path.exists(path) else 0
                chains[vdi_uuid] = [self._new_file(data_blocks(path, size))]
                self._save(chains)
            return list(chains[vdi_uuid])

    def fork(self, src_uuid, new_uuid):
        """VDI.snapshot / VDI.clone: the source's leaf becomes a hidden parent; the source
        and the new VDI each get an empty leaf over it."""
        with self.lock:
            old = self.chain(src_uuid)
            chains = self._load()
            chains[src_uuid] = [self._new_file()] + old
            chains[new_uuid] = [self._new_file()] + old
            self._save(chains)

    def forget(self, vdi_uuid):
        """The VDI is gone; files no chain uses any more go too (the SR's garbage collector)."""
        with self.lock:
            chains = self._load()
            if chains.pop(vdi_uuid, None) is None:
                return
            self._save(chains)
            used = {file_id for files in chains.values() for file_id in files}
            for name in os.listdir(self.dir):
                if name.startswith("vhd-") and name.endswith(".bat") and name[4:-4] not in used:
                    os.unlink(os.path.join(self.dir, name))

    def mark(self, vdi_uuid, offset, length):
        """A write allocates its 2 MiB blocks in the VDI's leaf."""
        if length <= 0:
            return
        with self.lock:
            leaf = self.chain(vdi_uuid)[0]
            bitmap = self._read_bat(leaf)
            first, last = offset // VHD_BLOCK, (offset + length - 1) // VHD_BLOCK
            if len(bitmap) <= last // 8:
                bitmap.extend(bytes(last // 8 + 1 - len(bitmap)))
            for block in range(first, last + 1):
                bitmap[block // 8] |= 0x80 >> (block % 8)
            self._write_bat(leaf, bitmap)

    def _allocated_in(self, files):
        out = set()
        for file_id in files:
            for i, byte in enumerate(self._read_bat(file_id)):
                if byte:
                    out.update(i * 8 + bit for bit in range(8) if byte & (0x80 >> bit))
        return out

    def included(self, vdi_uuid, base_uuid=None):
        """Blocks the export of ``vdi_uuid`` relative to ``base_uuid`` (or to nothing)
        includes: vhd-tool's ``include_block``."""
        with self.lock:
            mine = self.chain(vdi_uuid)
            if base_uuid is None:
                return self._allocated_in(mine)
            theirs = self.chain(base_uuid)
            return self._allocated_in(set(mine) ^ set(theirs))


# ---- the stream ----------------------------------------------------------------------------

def checksum(data):
    return ~sum(data) & 0xFFFFFFFF


def geometry(size):
    """CHS geometry of the VHD specification (appendix: CHS calculation), packed."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max(4, (cth + 1023) // 1024)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return (cth // heads) << 16 | heads << 8 | spt


def footer(size, disk_type, uid):
    fields = [b"conectix", 2, 0x00010000, SECTOR, 0, b"caml", 0x00000001, b"Wi2k", size, size,
              geometry(size), disk_type, 0, uid, 0]
    fields[12] = checksum(FOOTER.pack(*fields))
    return FOOTER.pack(*fields)


def header(entries, parent_uid=bytes(16), parent_name=""):
    locators = bytes(LOCATOR.size * 8)
    if parent_name:
        url = ("file://%s" % parent_name).encode()
        locators = LOCATOR.pack(b"MacX", 1, len(url), 0, 1536) + bytes(LOCATOR.size * 7)
    fields = [b"cxsparse", 0xFFFFFFFFFFFFFFFF, TABLE_OFFSET, 0x00010000, entries, VHD_BLOCK, 0,
              parent_uid, 0, 0, parent_name.encode("utf-16-be")[:512], locators]
    fields[6] = checksum(HEADER.pack(*fields))
    return HEADER.pack(*fields)


def bat_bytes(entries):
    return -(-4 * entries // SECTOR) * SECTOR


def stream(size, included, read, base_name=None):
    """The export, piece by piece: ``included`` the 2 MiB block numbers, ``read(offset,
    length)`` the VDI's current bytes (short at the end of the file: zeroes follow)."""
    entries = blocks_of(size)
    blocks = sorted(b for b in included if b < entries)
    uid = uuidlib.uuid4().bytes
    disk_type = DIFFERENCING if base_name else DYNAMIC
    yield footer(size, disk_type, uid)
    yield header(entries, uuidlib.uuid4().bytes if base_name else bytes(16), base_name or "")
    yield bytes(SECTOR)                        # where the locator would be: zeroes (see above)
    table = bytearray(b"\xff" * bat_bytes(entries))
    sector = (TABLE_OFFSET + len(table)) // SECTOR
    for block in blocks:
        struct.pack_into(">I", table, 4 * block, sector)
        sector += (SECTOR + VHD_BLOCK) // SECTOR
    yield bytes(table)
    bitmap = b"\xff" * SECTOR
    for block in blocks:
        data = read(block * VHD_BLOCK, VHD_BLOCK)
        yield bitmap
        yield data + bytes(VHD_BLOCK - len(data))
    yield footer(size, disk_type, uid)

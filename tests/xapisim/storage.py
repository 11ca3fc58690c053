"""Disk content: one sparse raw file per VDI under ``<pool dir>/disks/``, plus the changed-block
tracking (CBT) logs of VDIs that have it enabled.

Snapshots and clones copy the file with ``cp --sparse=always --reflink=auto``: copy-on-write on
file systems that offer reflinks, a copy of the allocated extents elsewhere.
"""

import json
import os
import subprocess
import threading

from . import vhd

CBT_BLOCK = 64 * 1024


FS_BLOCK = 4096


def data_bytes(fd):
    size = os.fstat(fd).st_size
    total = offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:   # ENXIO: no data after offset
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        first, last = start // FS_BLOCK * FS_BLOCK, -(-end // FS_BLOCK) * FS_BLOCK
        total += last - first
        offset = end
    return total


class Storage:
    def __init__(self, pool):
        self.pool = pool
        self.dir = os.path.join(pool.dir, "disks")
        os.makedirs(self.dir, exist_ok=True)
        self.lock = threading.Lock()
        self.chains = vhd.Chains(self.dir, self.path)

    # ---- content ----------------------------------------------------------------------------
    def path(self, vdi_uuid):
        return os.path.join(self.dir, vdi_uuid + ".raw")

    def exists(self, vdi_uuid):
        return os.path.exists(self.path(vdi_uuid))

    def create(self, vdi_uuid, size):
        with open(self.path(vdi_uuid), "wb") as f:
            f.truncate(size)

    def destroy(self, vdi_uuid):
        for path in (self.path(vdi_uuid), self.cbt_path(vdi_uuid)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.chains.forget(vdi_uuid)

    def copy(self, src_uuid, dst_uuid):
        """The whole content of one VDI into a new one (snapshot, clone, copy)."""
        subprocess.run(["cp", "--sparse=always", "--reflink=auto", self.path(src_uuid),
                        self.path(dst_uuid)], check=True)
        self.chains.fork(src_uuid, dst_uuid)

    def resize(self, vdi_uuid, size):
        with open(self.path(vdi_uuid), "r+b") as f:
            f.truncate(size)

    def size(self, vdi_uuid):
        return os.path.getsize(self.path(vdi_uuid))

    def allocated(self, vdi_uuid):
        """Bytes the file's data occupies (its physical utilisation): the sum of its data
        extents, rounded to 4 KiB. Not st_blocks, which also counts the filesystem's own
        extent-tree blocks and delayed-allocation reservations, and so differs between two
        files holding the same data."""
        try:
            fd = os.open(self.path(vdi_uuid), os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            return data_bytes(fd)
        finally:
            os.close(fd)

    def open_write(self, vdi_uuid):
        """A file object for writing at offsets; call ``mark_changed`` for what is written."""
        return open(self.path(vdi_uuid), "r+b")

    def write(self, vdi_uuid, offset, data):
        """Write ``data`` at ``offset``, as a guest or an import would; tracked by CBT."""
        with open(self.path(vdi_uuid), "r+b") as f:
            f.seek(offset)
            f.write(data)
        self.mark_changed(vdi_uuid, offset, len(data))

    def read(self, vdi_uuid, offset, length):
        with open(self.path(vdi_uuid), "rb") as f:
            f.seek(offset)
            return f.read(length)

    # ---- changed block tracking ---------------------------------------------------------------
    def cbt_path(self, vdi_uuid):
        return os.path.join(self.dir, vdi_uuid + ".cbt")

    def mark_changed(self, vdi_uuid, offset, length):
        """Allocate what a write touched in the VDI's VHD leaf, and record in its CBT log (if
        it has one) the 64 KiB blocks it touched."""
        self.chains.mark(vdi_uuid, offset, length)
        path = self.cbt_path(vdi_uuid)
        if length <= 0 or not os.path.exists(path):
            return
        first, last = offset // CBT_BLOCK, (offset + length - 1) // CBT_BLOCK
        with self.lock:
            with open(path, "r+b") as f:
                bitmap = bytearray(f.read())
                need = last // 8 + 1
                if len(bitmap) < need:
                    bitmap.extend(bytes(need - len(bitmap)))
                for block in range(first, last + 1):
                    bitmap[block // 8] |= 0x80 >> (block % 8)
                f.seek(0)
                f.write(bitmap)

    # CBT logs are chained like SMAPIv1's: each log names its parent log (the snapshot taken
    # just before it started); the chain is kept in one JSON file {vdi uuid: parent uuid}.
    def _cbt_parents_path(self):
        return os.path.join(self.dir, "cbt-parents.json")

    def _cbt_parents(self):
        try:
            with open(self._cbt_parents_path()) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _save_cbt_parents(self, parents):
        tmp = self._cbt_parents_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(parents, f)
        os.replace(tmp, self._cbt_parents_path())

    def has_cbt_log(self, vdi_uuid):
        return os.path.exists(self.cbt_path(vdi_uuid))

    def cbt_start_log(self, vdi_uuid, parent_uuid=""):
        """An empty log for ``vdi_uuid`` whose parent log is ``parent_uuid`` ("" for none)."""
        with self.lock:
            with open(self.cbt_path(vdi_uuid), "wb"):
                pass
            parents = self._cbt_parents()
            parents[vdi_uuid] = parent_uuid
            self._save_cbt_parents(parents)

    def cbt_move_log(self, src_uuid, dst_uuid):
        """Give the log of ``src_uuid`` (bitmap and parent) to ``dst_uuid``; ``src_uuid`` then
        has none (SMAPIv1 snapshot: the snapshot takes the leaf's log so far)."""
        with self.lock:
            os.replace(self.cbt_path(src_uuid), self.cbt_path(dst_uuid))
            parents = self._cbt_parents()
            parents[dst_uuid] = parents.pop(src_uuid, "")
            for child, parent in parents.items():
                if parent == src_uuid:
                    parents[child] = dst_uuid
            self._save_cbt_parents(parents)

    def cbt_parent(self, vdi_uuid):
        return self._cbt_parents().get(vdi_uuid, "")

    def cbt_bitmap(self, vdi_uuid):
        with self.lock:
            with open(self.cbt_path(vdi_uuid), "rb") as f:
                return f.read()

    def cbt_drop_log(self, vdi_uuid, merge_into_children=True):
        """Delete a VDI's log. Its changes are ORed into the logs whose parent it was, and
        those are re-parented to its parent, so that the chain keeps covering the same
        changes (as SMAPIv1 coalesces the log of a deleted snapshot into its child)."""
        with self.lock:
            parents = self._cbt_parents()
            if not os.path.exists(self.cbt_path(vdi_uuid)):
                parents.pop(vdi_uuid, None)
                self._save_cbt_parents(parents)
                return
            with open(self.cbt_path(vdi_uuid), "rb") as f:
                mine = f.read()
            grand = parents.pop(vdi_uuid, "")
            for child, parent in list(parents.items()):
                if parent != vdi_uuid:
                    continue
                parents[child] = grand
                if merge_into_children and os.path.exists(self.cbt_path(child)):
                    with open(self.cbt_path(child), "r+b") as f:
                        theirs = bytearray(f.read())
                        if len(theirs) < len(mine):
                            theirs.extend(bytes(len(mine) - len(theirs)))
                        for i, byte in enumerate(mine):
                            theirs[i] |= byte
                        f.seek(0)
                        f.write(theirs)
            os.unlink(self.cbt_path(vdi_uuid))
            self._save_cbt_parents(parents)

    def drop_data(self, vdi_uuid):
        """VDI.data_destroy: the content goes, the CBT log stays."""
        try:
            os.unlink(self.path(vdi_uuid))
        except FileNotFoundError:
            pass

    # ---- SMAPIv3 volume keys ------------------------------------------------------------------
    # A SMAPIv3 backend keeps its own per-volume keys (is_a_snapshot, snapshot_of, snapshot_time)
    # and SR.scan copies them into the database; they live in one JSON file per SR.
    def _volume_keys_path(self, sr_uuid):
        return os.path.join(self.dir, "volumes-%s.json" % sr_uuid)

    def volume_keys(self, sr_uuid):
        try:
            with open(self._volume_keys_path(sr_uuid)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def set_volume_keys(self, sr_uuid, vdi_uuid, keys):
        """Replace the keys of one volume (``keys=None`` forgets the volume)."""
        with self.lock:
            volumes = self.volume_keys(sr_uuid)
            if keys is None:
                volumes.pop(vdi_uuid, None)
            else:
                volumes[vdi_uuid] = keys
            tmp = self._volume_keys_path(sr_uuid) + ".tmp"
            with open(tmp, "w") as f:
                json.dump(volumes, f)
            os.replace(tmp, self._volume_keys_path(sr_uuid))

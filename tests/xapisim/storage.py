"""Disk content: one sparse raw file per VDI under ``<pool dir>/disks/``, plus the changed-block
tracking (CBT) logs of VDIs that have it enabled.

Snapshots and clones copy the file with ``cp --sparse=always --reflink=auto``: copy-on-write on
file systems that offer reflinks, a copy of the allocated extents elsewhere.
"""

import os
import subprocess
import threading

CBT_BLOCK = 64 * 1024


class Storage:
    def __init__(self, pool):
        self.pool = pool
        self.dir = os.path.join(pool.dir, "disks")
        os.makedirs(self.dir, exist_ok=True)
        self.lock = threading.Lock()

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

    def copy(self, src_uuid, dst_uuid):
        """The whole content of one VDI into a new one (snapshot, clone, copy)."""
        subprocess.run(["cp", "--sparse=always", "--reflink=auto", self.path(src_uuid),
                        self.path(dst_uuid)], check=True)

    def resize(self, vdi_uuid, size):
        with open(self.path(vdi_uuid), "r+b") as f:
            f.truncate(size)

    def size(self, vdi_uuid):
        return os.path.getsize(self.path(vdi_uuid))

    def allocated(self, vdi_uuid):
        """Bytes the file really occupies (its physical utilisation)."""
        try:
            return os.stat(self.path(vdi_uuid)).st_blocks * 512
        except FileNotFoundError:
            return 0

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
        """Record in the VDI's CBT log (if it has one) the 64 KiB blocks a write touched."""
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

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving disk content: read a source VDI over NBD (TLS pinned to the certificate that
``VDI.get_nbd_info`` returns), decide which 64 KiB blocks must travel, and write them into a
destination VDI with ``PUT /import_raw_vdi?format=raw&chunked=true``.

Plain Python; libnbd's bindings (``import nbd``) come from Debian's python3-libnbd.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import os
import shutil
import socket
import struct
import tempfile

try:
    import nbd
    HAS_NBD = True
except ImportError:  # pragma: no cover - reported by the modules
    nbd = None
    HAS_NBD = False

BLOCK = 64 * 1024                 # XAPI's CBT granularity; our unit of comparison
READ_SIZE = 4 << 20               # one NBD read covers this many bytes
BATCH_LIMIT = 64 << 20            # bytes of block data per import request (bounded memory)
ZERO_BLOCK = bytes(BLOCK)
ZERO_DIGEST = hashlib.blake2b(ZERO_BLOCK, digest_size=16).digest()


class DataPathError(Exception):
    pass


def block_digest(data):
    if data == ZERO_BLOCK[:len(data)]:
        return ZERO_DIGEST
    return hashlib.blake2b(data, digest_size=16).digest()


def changed_blocks_from_bitmap(bitmap_b64, nblocks):
    """Block numbers set in a ``VDI.list_changed_blocks`` bitmap (base64; block 0 is the most
    significant bit of byte 0)."""
    bitmap = base64.b64decode(bitmap_b64)
    out = []
    for byte_index, byte in enumerate(bitmap):
        if not byte:
            continue
        for bit in range(8):
            if byte & (0x80 >> bit):
                block = byte_index * 8 + bit
                if block < nblocks:
                    out.append(block)
    return out


def runs(blocks):
    """Sorted block numbers -> [(first, count)] of consecutive runs."""
    out = []
    for b in blocks:
        if out and out[-1][0] + out[-1][1] == b:
            out[-1][1] += 1
        else:
            out.append([b, 1])
    return [tuple(run) for run in out]


# ---- source: NBD ---------------------------------------------------------------------------

def pick_nbd_record(records):
    """One record of get_nbd_info; XAPI lists IPv4 before IPv6 per host."""
    if not records:
        raise DataPathError(
            "the source pool offers no NBD export for this disk: give a network that reaches "
            "the SR the purpose 'nbd' (network.add_purpose), then run again")
    return records[0]


def connect_hostname(record):
    """The name to connect to so that libnbd checks the certificate: the certificate's
    ``subject`` when it resolves to ``address`` (libnbd 1.14 has no set_tls_hostname)."""
    subject, address = record.get("subject"), record["address"]
    if not subject:
        return address
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(subject, None)}
    except socket.gaierror:
        resolved = set()
    if address in resolved or subject == address:
        return subject
    raise DataPathError(
        "the NBD certificate names %s, which does not resolve to %s here: add it to DNS or "
        "/etc/hosts on the host that moves the data, so that the certificate can be verified"
        % (subject, address))


class NbdSource:
    """A read-only NBD connection to one source VDI. ``tls`` is False only for networks with
    the ``insecure_nbd`` purpose."""

    def __init__(self, record, tls=True):
        if not HAS_NBD:
            raise DataPathError("libnbd's Python bindings are missing: install the Debian "
                                "package python3-libnbd (not the PyPI project 'nbd')")
        self.record = record
        self.tls = tls
        self.handle = None
        self.certdir = None

    def open(self):
        h = nbd.NBD()
        h.set_export_name(self.record["exportname"])
        host = self.record["address"]
        if self.tls:
            self.certdir = tempfile.mkdtemp(prefix="sxm-nbd-")
            os.chmod(self.certdir, 0o700)
            with open(os.path.join(self.certdir, "ca-cert.pem"), "w") as f:
                f.write(self.record["cert"])
            h.set_tls(nbd.TLS_REQUIRE)
            h.set_tls_certificates(self.certdir)
            h.set_tls_verify_peer(True)
            if hasattr(h, "set_tls_hostname") and self.record.get("subject"):
                h.set_tls_hostname(self.record["subject"])
            else:
                host = connect_hostname(self.record)
        else:
            h.set_tls(nbd.TLS_DISABLE)
        try:
            h.connect_tcp(host, str(self.record["port"]))
        except nbd.Error as e:
            self.close()
            raise DataPathError("cannot open the NBD export at %s:%s (%s)"
                                % (self.record["address"], self.record["port"], e.string))
        self.handle = h
        return self

    def size(self):
        return self.handle.get_size()

    def read(self, offset, length):
        try:
            return bytes(self.handle.pread(length, offset))
        except nbd.Error as e:
            raise DataPathError("NBD read of %d bytes at %d failed: %s" % (length, offset, e.string))

    def close(self):
        if self.handle is not None:
            try:
                self.handle.shutdown()
            except nbd.Error:
                pass
            self.handle = None
        if self.certdir:
            shutil.rmtree(self.certdir, ignore_errors=True)
            self.certdir = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False


def read_blocks(source, size, blocks=None):
    """Yield (block number, data) for every block (or the given sorted ones), reading
    consecutive blocks in one NBD request."""
    nblocks = (size + BLOCK - 1) // BLOCK
    wanted = range(nblocks) if blocks is None else blocks
    per_read = READ_SIZE // BLOCK
    for first, count in runs(wanted):
        done = 0
        while done < count:
            n = min(per_read, count - done)
            offset = (first + done) * BLOCK
            length = min(n * BLOCK, size - offset)
            data = source.read(offset, length)
            for i in range(n):
                yield first + done + i, data[i * BLOCK:(i + 1) * BLOCK]
            done += n


# ---- destination: chunked raw import --------------------------------------------------------

def chunked_frames(extents):
    """The body of ``import_raw_vdi?chunked``: {u64 LE offset, u32 LE length} then data, per
    extent, ended by a zero header. ``extents``: [(offset, bytes)] with adjacent ones merged."""
    for offset, data in extents:
        yield struct.pack("<QI", offset, len(data))
        yield data
    yield struct.pack("<QI", 0, 0)


def merge_extents(blocks_with_data):
    """[(block, data)] sorted -> [(offset, bytes)] with adjacent blocks joined."""
    out = []
    for block, data in blocks_with_data:
        offset = block * BLOCK
        if out and out[-1][0] + len(out[-1][1]) == offset:
            out[-1][1].extend(data)
        else:
            out.append((offset, bytearray(data)))
    return [(o, bytes(d)) for o, d in out]


def import_extents(conn, vdi_uuid, extents):
    """Write extents into a destination VDI in one chunked import request."""
    if not extents:
        return 0
    length = sum(12 + len(data) for dummy, data in extents) + 12
    task = conn.call("task.create", "xapi.sxm import", "mirror write into %s" % vdi_uuid)
    response = conn.http("PUT", "/import_raw_vdi",
                         {"vdi": vdi_uuid, "format": "raw", "chunked": "true"},
                         body=chunked_frames(extents), length=length, task=task)
    body = response.read()
    response.connection.close()
    try:
        if response.status != 200:
            raise DataPathError("the destination refused the disk write (HTTP %s: %s)"
                                % (response.status, body[:200].decode("utf-8", "replace")))
        conn.wait_task(task)
    finally:
        pass
    return sum(len(data) for dummy, data in extents)


class BatchWriter:
    """Collects changed blocks and sends them in import requests of bounded size."""

    def __init__(self, conn, vdi_uuid, limit=BATCH_LIMIT):
        self.conn = conn
        self.vdi_uuid = vdi_uuid
        self.limit = limit
        self.pending = []
        self.pending_bytes = 0
        self.written = 0

    def add(self, block, data):
        self.pending.append((block, data))
        self.pending_bytes += len(data)
        if self.pending_bytes >= self.limit:
            self.flush()

    def flush(self):
        if self.pending:
            self.written += import_extents(self.conn, self.vdi_uuid, merge_extents(self.pending))
        self.pending, self.pending_bytes = [], 0


def copy_node(source, size, writer, previous_digests=None, candidate_blocks=None):
    """Bring the destination (holding the previous node, described by ``previous_digests``,
    or nothing) to this node's content. Returns (digests of this node, bytes read).

    Without ``previous_digests`` every non-zero block is written (the first node of a walk).
    With them, exactly the blocks whose digest differs travel — a block that became zero
    included. ``candidate_blocks`` (from CBT) limits what is read; blocks outside it keep the
    previous digest."""
    nblocks = (size + BLOCK - 1) // BLOCK
    digests = list(previous_digests) if previous_digests is not None else [ZERO_DIGEST] * nblocks
    if len(digests) < nblocks:
        digests.extend([ZERO_DIGEST] * (nblocks - len(digests)))
    digests = digests[:nblocks]
    read_bytes = 0
    for block, data in read_blocks(source, size, candidate_blocks):
        read_bytes += len(data)
        digest = block_digest(data)
        if previous_digests is None:
            if digest != ZERO_DIGEST:
                writer.add(block, data)
        elif digest != digests[block]:
            writer.add(block, data)
        digests[block] = digest
    writer.flush()
    return digests, read_bytes

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

import http.client as http_client
import hashlib
import mmap
import os
import shutil
import socket
import struct
import threading
import time

from ansible_collections.xapi.sxm.plugins.module_utils.blockmap import BlockMap
from ansible_collections.xapi.sxm.plugins.module_utils.digests import DIGEST, ZERO_DIGEST, DigestStore
from ansible_collections.xapi.sxm.plugins.module_utils.errors import DataPathError
from ansible_collections.xapi.sxm.plugins.module_utils.session_guard import private_folder

try:
    import nbd
    HAS_NBD = True
except ImportError:  # pragma: no cover - reported by the modules
    nbd = None
    HAS_NBD = False

BLOCK = 64 * 1024                 # XAPI's CBT granularity; our unit of comparison
REQUEST_SIZE = 1 << 20            # bytes per NBD read request
IN_FLIGHT = 16                    # NBD read requests outstanding, over all connections
NBD_CONNECTIONS = 1               # per disk being read, unless the job asks for more
NBD_CONNECTIONS_MAX = 16          # XAPI's xapi-nbd serves 16 connections per host
MULTI_CONN_BYTES = 256 << 20     # a read plan this large per connection earns one more
BATCH_LIMIT = 32 << 20            # bytes of block data per buffer handed to the writer (bounded memory)
BATCH_MIN = 8 << 20               # the writer waits for this much, unless it is the last or idle
IMPORT_TASK_TIMEOUT = 600         # seconds an import may take once its body was sent
# XAPI's NBD server drops connections that race at start-up (Xen Orchestra opens its
# connections one after another for that reason, @vates/nbd-client multi.mjs): one at a time
_OPENING = threading.Lock()
PIECE_BLOCKS = 1 << 16            # blocks whose digests a comparison holds at once (1 MiB)
ZERO_BLOCK = bytes(BLOCK)
ZERO_REQUEST = bytes(REQUEST_SIZE)


def block_digest(data):
    """A block's digest: sha256 (OpenSSL, with the CPU's SHA instructions, measured 5x faster
    than blake2b here) cut to 16 bytes; every all-zero block (a short last one too) gets
    ZERO_DIGEST without being hashed (the zero test stops at the first non-zero byte)."""
    if is_zero(data):
        return ZERO_DIGEST
    return hashlib.sha256(data).digest()[:DIGEST]


def content_fingerprint(digests):
    """One digest of a whole disk's content, from its DigestStore (32 hex digits)."""
    return digests.fingerprint()


def is_zero(data):
    """Whether a bytes-like object holds only zeroes (a C comparison, no copy)."""
    if len(data) <= len(ZERO_REQUEST):
        return ZERO_REQUEST.startswith(data)
    return all(ZERO_REQUEST.startswith(data[i:i + len(ZERO_REQUEST)])
               for i in range(0, len(data), len(ZERO_REQUEST)))


# ---- source: NBD ---------------------------------------------------------------------------

def pick_nbd_record(records):
    """One record of get_nbd_info; XAPI lists IPv4 before IPv6 per host."""
    if not records:
        raise DataPathError(
            "the source pool offers no NBD export for this disk: give a network that reaches "
            "the SR the purpose 'nbd' (network.add_purpose), then run again")
    return records[0]


def certificate_ips(pem):
    """The IP addresses a PEM certificate names (its subjectAltName), as text; empty when it
    cannot be read here."""
    try:
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    except Exception:  # noqa: BLE001 - no cryptography, no SAN, an unreadable certificate
        return set()


def connect_hostname(record):
    """The name to connect to so that libnbd checks the certificate: the certificate's
    ``subject`` when it resolves to ``address`` (libnbd 1.14 has no set_tls_hostname), else
    the address itself when the certificate names it (an IP subjectAltName, which GnuTLS
    checks): a pool whose hosts' certificates name their addresses needs no DNS entry."""
    subject, address = record.get("subject"), record["address"]
    if not subject:
        return address
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(subject, None)}
    except socket.gaierror:
        resolved = set()
    if address in resolved or subject == address:
        return subject
    if address in certificate_ips(record.get("cert") or ""):
        return address
    raise DataPathError(
        "the NBD certificate names %s, which does not resolve to %s here: add it to DNS or "
        "/etc/hosts on the host that moves the data, so that the certificate can be verified"
        % (subject, address))


class RateLimiter:
    """A token bucket shared by every connection of a job: ``bandwidth_limit`` bytes/s."""

    def __init__(self, bytes_per_second):
        self.rate = float(bytes_per_second)
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def consume(self, nbytes):
        with self.lock:
            now = time.monotonic()
            # a short burst at most, so that any 10 s window holds the rate within a few percent
            start = max(self.next_free, now - 0.2)
            self.next_free = start + nbytes / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


class NbdSource:
    """A read-only NBD source: one VDI's export. ``tls`` is False only for networks with the
    ``insecure_nbd`` purpose. Reads are pipelined: several requests in flight per connection
    (libnbd's asynchronous calls) into a fixed set of buffers; a large read plan also opens
    up to ``connections`` connections (XAPI serves 16 per host), read by threads of their own:
    libnbd releases the GIL while it waits, decrypts and copies."""

    def __init__(self, record, tls=True, in_flight=IN_FLIGHT, request_size=REQUEST_SIZE, limiter=None,
                 connections=1):
        if not HAS_NBD:
            raise DataPathError("libnbd's Python bindings are missing: install the Debian "
                                "package python3-libnbd (not the PyPI project 'nbd')")
        self.record = record
        self.tls = tls
        if limiter is not None:
            # requests are paid for before they are sent: keep about half a second's worth in
            # flight, so a limited job does not stall while a large pipeline fills
            in_flight = max(1, min(in_flight, int(limiter.rate * 0.5) // request_size))
        self.in_flight = in_flight
        self.request_size = request_size
        self.limiter = limiter
        self.connections = max(1, connections)
        self.multi_conn_bytes = MULTI_CONN_BYTES
        self.handle = None
        self.extra = []               # further connections, opened for a large read plan
        self.worker_cpu_s = 0.0       # CPU the further connections' threads spent (not the caller's)
        self.certdir = None
        self.host = record["address"]

    def open(self):
        if self.tls:
            self.certdir = private_folder("sxm-nbd-")
            with open(os.path.join(self.certdir, "ca-cert.pem"), "w") as f:
                f.write(self.record["cert"])
            if not hasattr(nbd.NBD, "set_tls_hostname") or not self.record.get("subject"):
                self.host = connect_hostname(self.record)
        try:
            self.handle = self._connect()
        except DataPathError:
            self.close()
            raise
        return self

    def _connect(self):
        h = nbd.NBD()
        h.set_export_name(self.record["exportname"])
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        h.set_pread_initialize(False)
        if self.tls:
            h.set_tls(nbd.TLS_REQUIRE)
            h.set_tls_certificates(self.certdir)
            h.set_tls_verify_peer(True)
            if hasattr(h, "set_tls_hostname") and self.record.get("subject"):
                h.set_tls_hostname(self.record["subject"])
        else:
            h.set_tls(nbd.TLS_DISABLE)
        try:
            with _OPENING:
                h.connect_tcp(self.host, str(self.record["port"]))
        except nbd.Error as e:
            raise DataPathError("cannot open the NBD export at %s:%s (%s)"
                                % (self.record["address"], self.record["port"], e.string))
        return h

    def size(self):
        return self.handle.get_size()

    def zero_blocks(self, size):
        """A BlockMap of the blocks the server reports as reading zero (base:allocation),
        when it offers block status; XAPI's own NBD server does not, and then it is None."""
        h = self.handle
        if not h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION):
            return None
        zero, cursor = BlockMap((size + BLOCK - 1) // BLOCK), [0]

        def on_extents(metacontext, offset, entries, err):
            for i in range(0, len(entries), 2):
                length, flags = entries[i], entries[i + 1]
                if flags & nbd.STATE_ZERO:
                    first = (cursor[0] + BLOCK - 1) // BLOCK
                    zero.add_range(first, (cursor[0] + length) // BLOCK - first)
                cursor[0] += length
            return 0

        while cursor[0] < size:
            start = cursor[0]
            h.block_status(min(1 << 30, size - start), start, on_extents)
            if cursor[0] <= start:
                break
        return zero

    def read_many(self, requests, on_data, total=None):
        """Read [(offset, length)] (each at most ``request_size`` bytes), calling
        ``on_data(offset, memoryview)`` for each as it completes, one call at a time (the
        view is reused after the call returns). ``total``: bytes planned; a plan of at least
        ``multi_conn_bytes`` per connection is shared by several connections."""
        wanted = 1 if total is None else max(1, min(self.connections, total // self.multi_conn_bytes))
        if wanted == 1:
            return self._read_loop(self.handle, iter(requests), on_data, self.in_flight, threading.Event())
        shared, serial, stop = SharedIterator(requests), threading.Lock(), threading.Event()
        per_conn = max(1, self.in_flight // wanted)

        def serialized(offset, view):
            with serial:
                on_data(offset, view)
        errors = []

        def worker():
            started = time.thread_time()
            try:
                h = self._connect()
                with serial:
                    self.extra.append(h)
                self._read_loop(h, shared, serialized, per_conn, stop)
            except Exception as e:  # noqa: BLE001 - raised in the calling thread
                errors.append(e)
                stop.set()
            finally:
                with serial:
                    self.worker_cpu_s += time.thread_time() - started
        threads = [threading.Thread(target=worker, daemon=True) for dummy in range(1, wanted)]
        for t in threads:
            t.start()
        try:
            self._read_loop(self.handle, shared, serialized, per_conn, stop)
        except Exception:
            stop.set()
            raise
        finally:
            for t in threads:
                t.join()
        if errors:
            raise errors[0]

    def _read_loop(self, h, pending, on_data, slots, stop):
        # an anonymous mapping: pages are touched only as requests use them
        slab = mmap.mmap(-1, slots * self.request_size)
        views = [memoryview(slab)[i * self.request_size:(i + 1) * self.request_size] for i in range(slots)]
        free = list(range(slots))
        done, failed = [], []
        outstanding = 0
        exhausted = False
        while True:
            while free and not exhausted:
                item = None if stop.is_set() else next(pending, None)
                if item is None:
                    exhausted = True
                    break
                offset, length = item
                if self.limiter:
                    self.limiter.consume(length)
                slot = free.pop()
                buf = nbd.Buffer.from_buffer(views[slot][:length])
                h.aio_pread(buf, offset, lambda err, s=slot, o=offset, n=length, b=buf:
                            (failed.append((o, err.value)) if err.value else done.append((s, o, n, b))) or 1)
                outstanding += 1
            if failed:
                raise DataPathError("NBD read at offset %d failed (errno %d)" % failed[0])
            while done:
                slot, offset, length, buf = done.pop(0)
                if not stop.is_set():
                    on_data(offset, views[slot][:length])
                free.append(slot)
                outstanding -= 1
            if exhausted and outstanding == 0:
                return
            if free and not exhausted:
                continue   # never wait with a free slot and work left: nothing may be in flight
            try:
                h.poll(-1)
            except nbd.Error as e:
                raise DataPathError("the NBD connection failed: %s" % e.string)

    def close(self):
        for h in [self.handle] + self.extra:
            if h is None:
                continue
            try:
                h.shutdown()
            except nbd.Error:
                pass
        self.handle, self.extra = None, []
        if self.certdir:
            shutil.rmtree(self.certdir, ignore_errors=True)
            self.certdir = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False


class SharedIterator:
    """An iterator several reading threads take from."""

    def __init__(self, iterable):
        self.iterator = iter(iterable)
        self.lock = threading.Lock()

    def __iter__(self):
        return self

    def __next__(self):
        with self.lock:
            return next(self.iterator)


def plan_reads(blocks, size, request_size=REQUEST_SIZE):
    """A BlockMap -> [(offset, length)] reads of at most ``request_size`` bytes, consecutive
    blocks joined, the last one cut at the disk's end."""
    per_read = max(1, request_size // BLOCK)
    for first, count in blocks.runs():
        done = 0
        while done < count:
            n = min(per_read, count - done)
            offset = (first + done) * BLOCK
            yield offset, min(n * BLOCK, size - offset)
            done += n


# ---- destination: chunked raw import --------------------------------------------------------

FRAME = struct.Struct("<QI")      # vhd-tool chunked.ml: {u64 LE offset, u32 LE length}, then data


class FrameBuffer:
    """The body of one chunked import request, built in place: each run of adjacent bytes is
    one frame (a write that continues the last frame lengthens it), and ``body()`` appends
    the zero header. The memory is an anonymous mapping, so pages are touched only when
    used and stay warm while the buffer is reused."""

    def __init__(self, capacity):
        self.capacity = capacity              # data bytes; the headers have room of their own
        self.memory = mmap.mmap(-1, capacity + (capacity // BLOCK + 2) * FRAME.size)
        self.view = memoryview(self.memory)
        self.clear()

    def clear(self):
        self.used = 0                 # bytes of the body so far
        self.data_bytes = 0
        self.frame_at = -1            # where the last frame's header is
        self.frame_offset = self.frame_length = 0

    def room(self):
        return self.capacity - self.data_bytes

    def append(self, offset, data):
        """Add ``data`` (at most ``room()`` bytes) to be written at disk ``offset``."""
        n = len(data)
        if self.frame_at < 0 or offset != self.frame_offset + self.frame_length:
            self.frame_at, self.frame_offset, self.frame_length = self.used, offset, 0
            self.used += FRAME.size
        self.view[self.used:self.used + n] = data
        self.used += n
        self.data_bytes += n
        self.frame_length += n
        FRAME.pack_into(self.memory, self.frame_at, self.frame_offset, self.frame_length)

    def frames(self):
        """The frames so far, without the terminator: a piece of a longer import body."""
        return self.view[:self.used]

    def close(self):
        try:
            self.view.release()
            self.memory.close()
        except BufferError:
            # a request cut short (the job was cancelled, a read failed) still holds a view of
            # the body: the mapping goes with the last view, and the first error must not be
            # replaced by this one
            pass


class FramePool:
    """The two frame buffers of one disk's writes, reused from node to node. When each batch
    was a request of its own (a task and a connection, ~16 ms on an idle pool), 64 MiB
    buffers ran a full copy 10-20 % faster than 32 MiB ones (bench/, 2026-11-26); batches
    now share a node's one request, so 32 MiB ones cost nothing in speed, and the memory
    they hold once touched is the same for every disk past a few GiB."""

    def __init__(self, capacity=BATCH_LIMIT):
        self.capacity = capacity
        self.buffers = []

    def take(self, count):
        while len(self.buffers) < count:
            self.buffers.append(FrameBuffer(self.capacity))
        return self.buffers[:count]

    def close(self):
        for buf in self.buffers:
            buf.close()
        self.buffers = []


IMPORT_TASK = "xapi.sxm import"
TERMINATOR = FRAME.pack(0, 0)
STREAM_IDLE_S = 30                # an open import with nothing to send is ended after this
ABANDON_WAIT_S = 10               # an abandoned writer's last request may take this to end


def import_description(vdi_uuid):
    """Names the VDI written (a job's working VDI), so that a re-run can remove the pending
    task of a run killed before its request reached XAPI."""
    return "mirror write into %s" % vdi_uuid


class ImportStream:
    """One ``PUT /import_raw_vdi?format=raw&chunked=true`` carrying a node's frames as they
    come, ended by the terminator frame: XAPI attaches the VDI in dom0 once per request
    (about a second on a real host), so a node pays it once, not once per batch. The body
    has no length (XAPI reads frames until the terminator and refuses Transfer-Encoding);
    XAPI answers 200 before it reads the body, and the task says whether every byte landed."""

    def __init__(self, conn, vdi_uuid, sr=None):
        self.conn = conn
        self.data_bytes = 0
        self.task = conn.call("task.create", IMPORT_TASK, import_description(vdi_uuid))
        self.http = None
        try:
            self.http = conn.open_request("PUT", "/import_raw_vdi",
                                          {"vdi": vdi_uuid, "format": "raw", "chunked": "true"},
                                          task=self.task, sr=sr)
        except (OSError, http_client.HTTPException) as e:
            self._broken(e)

    def send(self, frames, data_bytes):
        try:
            self.http.send(frames)
        except (OSError, http_client.HTTPException) as e:
            self._broken(e)
        self.data_bytes += data_bytes

    def finish(self):
        """Send the terminator; once the task succeeded, the data bytes carried."""
        try:
            self.http.send(TERMINATOR)
            response = self.http.getresponse()
            answer = response.read()
        except (OSError, http_client.HTTPException) as e:
            self._broken(e)
        finally:
            self.http.close()
        if response.status != 200:
            self.conn.call("task.destroy", self.task)
            raise DataPathError("the destination refused the disk write (HTTP %s: %s)"
                                % (response.status, answer[:200].decode("utf-8", "replace")))
        self.conn.wait_task(self.task, poll=0.5, first_poll=0.005, timeout=IMPORT_TASK_TIMEOUT)
        return self.data_bytes

    def _broken(self, error):
        # XAPI may close the connection because the import failed: its task then says why
        if self.http is not None:
            self.http.close()
        failed = self.conn.call("task.get_record", self.task)
        if failed["status"] in ("failure", "cancelled"):
            self.conn.wait_task(self.task)  # raises the task's error, explained
        self.conn.call("task.destroy", self.task)
        raise DataPathError("the connection to the destination broke while writing disk data "
                            "(%s): run again to continue" % error)


class BatchWriter:
    """Takes the blocks that must travel and sends them from a background thread, so that
    reading overlaps writing, on one import request per node (ImportStream). Two buffers: the
    reader fills one while the other is sent, and as soon as one is sent the writer takes
    what the reader has gathered meanwhile, once that is at least ``BATCH_MIN`` (or whatever
    there is after a while: a disk whose data is thinly spread is read at NBD speed and
    written rarely). An import left with nothing to send for ``STREAM_IDLE_S`` is ended, and
    the next data opens another.
    One request at a time: XAPI attaches the VDI read-write for each import, and a VDI is
    attached read-write only once at a time. ``eager``: the request is opened at once, so
    that its attach (about a second on a real host) overlaps the source's NBD connection and
    the first reads; for a node that is expected to write something."""

    def __init__(self, conn, vdi_uuid, pool=None, batch_min=BATCH_MIN, nblocks=0, eager=False, sr=None):
        self.conn = conn
        self.vdi_uuid = vdi_uuid
        self.sr = sr            # the VDI's SR ref: its imports go to a host that sees it
        self.eager = eager
        self.written_blocks = BlockMap(nblocks)   # what was handed to add: read back later
        self.own_pool = pool is None
        self.pool = pool or FramePool()
        self.batch_min = min(batch_min, self.pool.capacity)
        self.filling, self.spare = self.pool.take(2)
        self.filling.clear()
        self.spare.clear()
        self.ready = threading.Condition()
        self.finishing = False
        self.written = 0              # data bytes the destination confirmed
        self.blocks = 0               # 64 KiB blocks handed to add (a short last one counts)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, block, data):
        """Write ``data`` (one or more whole blocks, the disk's last one may be short) at
        ``block``; the bytes are copied before add returns."""
        offset, done, n = block * BLOCK, 0, len(data)
        self.blocks += (n + BLOCK - 1) // BLOCK
        self.written_blocks.add_range(block, (n + BLOCK - 1) // BLOCK)
        while done < n:
            with self.ready:
                while self.filling.room() == 0 and self.error is None:
                    self.ready.wait()
                if self.error is not None:
                    raise self.error
                piece = min(n - done, self.filling.room())
                self.filling.append(offset + done, data[done:done + piece])
                if self.filling.data_bytes >= self.batch_min:
                    self.ready.notify_all()     # the writer waits for no less
            done += piece

    def flush(self):
        """Send what is left and wait until every batch is written."""
        with self.ready:
            self.finishing = True
            self.ready.notify_all()
        self.thread.join()
        if self.own_pool:
            self.pool.close()
        if self.error is not None:
            raise self.error

    def abandon(self):
        """Drop what is not sent yet and send nothing more (the read failed or the job was
        cancelled); the open request is ended and its task waited for, a few seconds at most,
        so that no failed import task is left behind. The blocks it leaves half written lie
        where the two nodes differ, which is what a re-run writes again."""
        with self.ready:
            self.filling.clear()
            self.finishing = True
            self.ready.notify_all()
        self.thread.join(ABANDON_WAIT_S)

    def _run(self):
        stream = None
        try:
            if self.eager:
                stream = ImportStream(self.conn, self.vdi_uuid, self.sr)
            while True:
                batch = self._next_batch()
                if batch is None:
                    if stream is not None:       # idle, or the end: the request is ended
                        self.written += stream.finish()
                        stream = None
                    if self.finishing:
                        return
                    continue
                if stream is None:
                    stream = ImportStream(self.conn, self.vdi_uuid, self.sr)
                stream.send(batch.frames(), batch.data_bytes)
                batch.clear()
                with self.ready:
                    self.spare = batch
        except Exception as e:  # noqa: BLE001 - handed to the reading thread
            with self.ready:
                self.error = e if isinstance(e, DataPathError) else DataPathError(str(e))
                self.ready.notify_all()

    def _next_batch(self):
        """The filled buffer to send (the other becomes the reader's), or None when there is
        nothing to send: the job is finishing, or nothing came for STREAM_IDLE_S."""
        deadline = time.monotonic() + STREAM_IDLE_S
        with self.ready:
            while self.filling.data_bytes < self.batch_min and not self.finishing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.ready.wait(left)
            if not self.filling.data_bytes:
                return None
            batch, self.filling, self.spare = self.filling, self.spare, None
            self.ready.notify_all()
            return batch


class NullWriter:
    """For reading a node only to learn its digests."""
    written = 0
    blocks = 0

    def add(self, block, data):
        pass

    def flush(self):
        pass

    def abandon(self):
        pass


def copy_node(source, size, writer, previous_digests=None, candidate_blocks=None, progress=None,
              want_digests=True, allocated_blocks=None):
    """Bring the destination (holding the previous node, described by ``previous_digests``,
    a DigestStore, or nothing) to this node's content. Returns (the node's DigestStore, bytes
    read).

    Without ``previous_digests`` every non-zero block is written (the first node of a walk).
    With them, exactly the blocks whose digest differs travel, a block that became zero
    included. ``candidate_blocks`` (a BlockMap, see delta.py) limits what is read; blocks
    outside it keep the previous digest. ``allocated_blocks`` (a BlockMap) says which blocks
    may hold data at all: the others read as zero and are not read, nor are the blocks the
    server reports as zero (block status).
    ``want_digests=False`` on a first node that no later node compares with: blocks are only
    tested for zeroes, not hashed, and the digests returned are None.
    ``progress(nbytes)`` is told of every read as it completes."""
    nblocks = (size + BLOCK - 1) // BLOCK
    hashing = want_digests or previous_digests is not None
    digests = None
    if hashing:
        digests = previous_digests.copy(nblocks) if previous_digests is not None else DigestStore(nblocks)
    wanted = BlockMap.full(nblocks) if candidate_blocks is None else candidate_blocks
    known_zero = source.zero_blocks(size) if hasattr(source, "zero_blocks") else None
    if allocated_blocks is not None:
        unallocated = BlockMap.full(nblocks).difference(allocated_blocks)
        known_zero = unallocated if known_zero is None else known_zero.union(unallocated)
    to_read = wanted
    if known_zero is not None:
        if previous_digests is not None:
            write_zeroes(wanted.intersection(known_zero), size, digests, writer)
        to_read = wanted.difference(known_zero)
    read_bytes = [0]

    def travel(first, view, flags):
        """Hand each run of blocks flagged True to the writer in one call."""
        run_start = None
        for i, flag in enumerate(flags + [False]):
            if flag and run_start is None:
                run_start = i
            elif not flag and run_start is not None:
                writer.add(first + run_start, view[run_start * BLOCK:i * BLOCK])
                run_start = None

    def on_data_hashing(offset, view):
        first = offset // BLOCK
        count = (len(view) + BLOCK - 1) // BLOCK
        new = b"".join(block_digest(view[i:i + BLOCK]) for i in range(0, len(view), BLOCK))
        old = digests.get_range(first, count)
        if new != old:
            # without previous digests every entry starts as ZERO_DIGEST: non-zero blocks travel
            travel(first, view, [new[i:i + DIGEST] != old[i:i + DIGEST] for i in range(0, len(new), DIGEST)])
            digests.set_range(first, new)
        done(view)

    def on_data_zero_test(offset, view):
        if not is_zero(view):
            travel(offset // BLOCK, view, [not is_zero(view[i:i + BLOCK]) for i in range(0, len(view), BLOCK)])
        done(view)

    def done(view):
        read_bytes[0] += len(view)
        if progress:
            progress(len(view))

    try:
        source.read_many(plan_reads(to_read, size, getattr(source, "request_size", REQUEST_SIZE)),
                         on_data_hashing if hashing else on_data_zero_test, total=len(to_read) * BLOCK)
    except BaseException:
        writer.abandon()
        raise
    writer.flush()
    return digests, read_bytes[0]


def wait_dom0_detached(conn, vdi_ref, timeout=60):
    """Wait until no control domain holds ``vdi_ref`` attached: xapi-nbd unplugs its
    read-only dom0 VBD after the connection closed, and while it is there an import (a
    read-write attach on the same host) fails with Illegal_transition (vdi_automaton.ml;
    Xen Orchestra waits the same way, PR #9702)."""
    deadline = time.monotonic() + timeout
    while True:
        held = [vbd for vbd in conn.call("VDI.get_VBDs", vdi_ref)
                if conn.call("VM.get_is_control_domain", conn.call("VBD.get_VM", vbd))]
        if not held or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def digests_of_blocks(source, size, blocks, progress=None):
    """A DigestStore holding the digests of ``blocks`` (a BlockMap) of ``source``, read over
    NBD; the other entries read as zero. Returns (store, bytes read)."""
    return copy_node(source, size, NullWriter(), candidate_blocks=blocks, progress=progress)


def differing_blocks(a, b, blocks):
    """Block numbers among ``blocks`` whose digests differ between stores ``a`` and ``b``."""
    out = []
    for first, count in blocks.pieces(PIECE_BLOCKS):
        left, right = a.get_range(first, count), b.get_range(first, count)
        if left != right:
            out.extend(first + i for i in range(count)
                       if left[i * DIGEST:(i + 1) * DIGEST] != right[i * DIGEST:(i + 1) * DIGEST])
    return out


def write_zeroes(blocks, size, digests, writer):
    """Blocks known to read zero now: those the destination holds as non-zero are zeroed."""
    for first, count in blocks.pieces(PIECE_BLOCKS):
        old = digests.get_range(first, count)
        if old == bytes(len(old)):
            continue
        for i in range(count):
            if old[i * DIGEST:(i + 1) * DIGEST] != ZERO_DIGEST:
                block = first + i
                writer.add(block, ZERO_BLOCK[:min(BLOCK, size - block * BLOCK)])
        digests.set_range(first, bytes(len(old)))

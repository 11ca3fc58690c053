"""The data path's block logic: CBT bitmaps, runs, chunked frames, and which blocks travel."""

import base64
import struct
import time

from ansible_collections.xapi.sxm.plugins.module_utils import datapath
from ansible_collections.xapi.sxm.plugins.module_utils.blockmap import BlockMap
from ansible_collections.xapi.sxm.plugins.module_utils.datapath import BLOCK
from ansible_collections.xapi.sxm.plugins.module_utils.digests import UNKNOWN_DIGEST, ZERO_DIGEST, DigestStore
try:        # ansible-test units imports the tests as a package
    from .block_writers import RecordingWriter
except ImportError:         # pytest from the repository puts this folder on sys.path
    from block_writers import RecordingWriter


class MemorySource:
    """A disk in memory standing in for an NBD export (reads only)."""

    def __init__(self, data):
        self.data = bytes(data)
        self.reads = []

    def read_many(self, requests, on_data, total=None):
        for offset, length in requests:
            self.reads.append((offset, length))
            on_data(offset, memoryview(self.data)[offset:offset + length])


def disk(nblocks, fills):
    data = bytearray(nblocks * BLOCK)
    for block, byte in fills.items():
        data[block * BLOCK:(block + 1) * BLOCK] = bytes([byte]) * BLOCK
    return data


def test_bitmap_block_zero_is_the_most_significant_bit():
    """XAPI-FACTS §4 and addenda: bit i = 64 KiB block i, MSB of byte 0 first."""
    bitmap = base64.b64encode(bytes([0b10000001, 0b01000000])).decode()
    assert list(BlockMap.from_cbt(bitmap, 16)) == [0, 7, 9]
    assert list(BlockMap.from_cbt(bitmap, 8)) == [0, 7]


def blockmap(nblocks, blocks):
    out = BlockMap(nblocks)
    for b in blocks:
        out.add_range(b, 1)
    return out


def test_reads_join_consecutive_blocks_and_stop_at_the_disk_end():
    size = 40 * BLOCK + 100
    reads = list(datapath.plan_reads(blockmap(41, [1, 2, 3, 7, 9, 10, 40]), size, request_size=2 * BLOCK))
    assert reads == [(BLOCK, 2 * BLOCK), (3 * BLOCK, BLOCK), (7 * BLOCK, BLOCK), (9 * BLOCK, 2 * BLOCK),
                     (40 * BLOCK, 100)]


def body_of(buf):
    """A buffer's frames as the last piece of an import body."""
    return bytes(buf.frames()) + datapath.TERMINATOR


def test_frame_buffer_merges_adjacent_writes_into_one_frame():
    buf = datapath.FrameBuffer(4 * BLOCK)
    buf.append(BLOCK, b"a" * BLOCK)
    buf.append(2 * BLOCK, b"b" * BLOCK)
    buf.append(5 * BLOCK, b"c" * 10)
    assert buf.room() == 4 * BLOCK - 2 * BLOCK - 10
    assert body_of(buf) == struct.pack("<QI", BLOCK, 2 * BLOCK) + b"a" * BLOCK + b"b" * BLOCK \
        + struct.pack("<QI", 5 * BLOCK, 10) + b"c" * 10 + struct.pack("<QI", 0, 0)
    buf.clear()
    buf.append(0, b"z")
    assert body_of(buf) == struct.pack("<QI", 0, 1) + b"z" + struct.pack("<QI", 0, 0)
    buf.close()


def test_zero_test_reads_every_byte():
    data = bytearray(3 * datapath.REQUEST_SIZE)
    assert datapath.is_zero(data) and datapath.is_zero(memoryview(data)[5:7])
    data[-1] = 1
    assert not datapath.is_zero(data)
    assert datapath.block_digest(bytes(100)) == datapath.ZERO_DIGEST


def test_chunked_frames_end_with_a_zero_header():
    """DESIGN.md data path: {u64 LE offset, u32 LE length, data}, then a zero frame."""
    buf = datapath.FrameBuffer(BLOCK)
    buf.append(0, b"xy")
    buf.append(4096, b"z")
    assert body_of(buf) == struct.pack("<QI", 0, 2) + b"xy" + struct.pack("<QI", 4096, 1) + b"z" \
        + struct.pack("<QI", 0, 0)
    buf.close()


def test_first_node_skips_zero_blocks():
    source = MemorySource(disk(8, {1: 7, 6: 9}))
    writer = RecordingWriter()
    digests, read = datapath.copy_node(source, 8 * BLOCK, writer)
    assert sorted(writer.blocks) == [1, 6]
    assert read == 8 * BLOCK and digests.nblocks == 8 and digests.nonzero_blocks() == 2


def test_delta_sends_changed_blocks_and_blocks_that_became_zero():
    """Issue 3: a block that became zeroes is a change and must travel."""
    first = MemorySource(disk(8, {1: 7, 2: 3, 6: 9}))
    digests = datapath.copy_node(first, 8 * BLOCK, RecordingWriter())[0]
    second = MemorySource(disk(8, {1: 7, 2: 4, 5: 1}))   # 2 changed, 5 new, 6 zeroed
    writer = RecordingWriter()
    datapath.copy_node(second, 8 * BLOCK, writer, digests)
    assert sorted(writer.blocks) == [2, 5, 6]
    assert writer.blocks[6] == bytes(BLOCK)


def test_cbt_candidates_limit_what_is_read():
    first = MemorySource(disk(8, {1: 7}))
    digests = datapath.copy_node(first, 8 * BLOCK, RecordingWriter())[0]
    second = MemorySource(disk(8, {1: 7, 3: 5}))
    writer = RecordingWriter()
    new_digests, read = datapath.copy_node(second, 8 * BLOCK, writer, digests, candidate_blocks=blockmap(8, [3, 4]))
    assert read == 2 * BLOCK and sorted(writer.blocks) == [3]
    assert new_digests.get(3) != digests.get(3) and new_digests.get(1) == digests.get(1)


def test_over_unknown_content_every_candidate_travels_zeroes_included():
    """A warm re-run knows W's blocks only where CBT says they changed: each of those is
    written, a block that became zero as well, the others stay unknown and are not read."""
    second = MemorySource(disk(8, {1: 7, 3: 5}))
    writer = RecordingWriter()
    unknown = DigestStore.unknown(8)
    digests, read = datapath.copy_node(second, 8 * BLOCK, writer, unknown, candidate_blocks=blockmap(8, [2, 3]))
    assert read == 2 * BLOCK and writer.blocks == {2: bytes(BLOCK), 3: bytes([5]) * BLOCK}
    assert digests.partial and digests.get(1) == UNKNOWN_DIGEST and digests.get(2) == ZERO_DIGEST


def test_an_allocation_map_skips_what_reads_zero_and_zeroes_what_became_zero():
    """A VHD map says which blocks may hold data: the others are not read; one that held
    data on the destination is written as zeroes."""
    first = MemorySource(disk(8, {1: 7, 6: 9}))
    writer = RecordingWriter()
    digests, read = datapath.copy_node(first, 8 * BLOCK, writer, allocated_blocks=blockmap(8, [0, 1, 6]))
    assert read == 3 * BLOCK and sorted(writer.blocks) == [1, 6]
    second = MemorySource(disk(8, {1: 7}))
    writer = RecordingWriter()
    dummy, read = datapath.copy_node(second, 8 * BLOCK, writer, digests, allocated_blocks=blockmap(8, [1]))
    assert read == BLOCK and writer.blocks == {6: bytes(BLOCK)}


def test_first_node_without_digests_writes_the_same_blocks():
    """A disk without snapshots is only tested for zeroes: same blocks, no digests."""
    data = disk(8, {1: 7, 2: 7, 6: 9})
    hashed, plain = RecordingWriter(), RecordingWriter()
    datapath.copy_node(MemorySource(data), 8 * BLOCK, hashed)
    digests, read = datapath.copy_node(MemorySource(data), 8 * BLOCK, plain, want_digests=False)
    assert digests is None and read == 8 * BLOCK
    assert plain.blocks == hashed.blocks and sorted(plain.blocks) == [1, 2, 6]


def test_partial_last_block():
    size = 3 * BLOCK + 512
    data = bytearray(size)
    data[-512:] = b"\x01" * 512
    writer = RecordingWriter()
    datapath.copy_node(MemorySource(data), size, writer)
    assert list(writer.blocks) == [3] and len(writer.blocks[3]) == 512


def test_a_frame_buffer_closes_while_a_cut_request_still_holds_its_body():
    """A cancelled job closes its buffers while the abandoned writer may still hold the body
    of a request: closing must not raise (it would hide why the job stopped)."""
    frames = datapath.FrameBuffer(4 * BLOCK)
    frames.append(0, bytes(BLOCK))
    body = frames.frames()
    frames.close()
    assert len(body) > BLOCK


class UploadRecorder:
    """A destination connection that records each import request's body (fake: the writer's
    request sequencing is what is tested; tests/integration drive the simulator)."""

    def __init__(self):
        self.requests = []

    def call(self, method, *args):
        return {"task.create": "OpaqueRef:task", "task.destroy": ""}.get(method)

    def wait_task(self, task, **kw):
        return ""

    def open_request(self, method, path, query, task=None, length=None, has_body=True, sr=None):
        assert method == "PUT" and path == "/import_raw_vdi" and query["chunked"] == "true" and length is None
        body = bytearray()
        self.requests.append(body)
        recorder = self

        class Request:
            def send(self, data):
                body.extend(data)

            def getresponse(self):
                class Response:
                    status = 200

                    def read(self):
                        return b""
                return Response()

            def close(self):
                recorder.closed = True
        return Request()


def frames_of(body):
    """[(offset, data)] of an import body, which must end with the terminator."""
    out, at = [], 0
    while True:
        offset, length = struct.unpack_from("<QI", body, at)
        at += 12
        if (offset, length) == (0, 0):
            assert at == len(body)
            return out
        out.append((offset, bytes(body[at:at + length])))
        at += length


def test_a_node_is_written_in_one_import_request_whatever_its_batches():
    """Issue 10: a real host attaches the VDI in dom0 for each import request, so a node's
    batches share one request, ended by one terminator."""
    conn = UploadRecorder()
    pool = datapath.FramePool(capacity=2 * BLOCK)
    writer = datapath.BatchWriter(conn, "uuid", pool, batch_min=BLOCK, nblocks=16)
    for block in range(0, 16, 2):            # not adjacent: one frame each, 8 batches at least
        writer.add(block, bytes([block + 1]) * BLOCK)
    writer.flush()
    pool.close()
    assert len(conn.requests) == 1
    assert frames_of(conn.requests[0]) == [(b * BLOCK, bytes([b + 1]) * BLOCK) for b in range(0, 16, 2)]
    assert writer.written == 8 * BLOCK


def test_an_idle_import_is_ended_and_the_next_data_opens_another(monkeypatch):
    monkeypatch.setattr(datapath, "STREAM_IDLE_S", 0.2)
    conn = UploadRecorder()
    writer = datapath.BatchWriter(conn, "uuid", batch_min=16 * BLOCK, nblocks=8)
    writer.add(0, b"a" * BLOCK)              # below batch_min: sent once the wait ran out
    time.sleep(0.8)
    assert len(conn.requests) == 1 and frames_of(conn.requests[0]) == [(0, b"a" * BLOCK)]
    writer.add(3, b"b" * BLOCK)
    writer.flush()
    assert len(conn.requests) == 2 and frames_of(conn.requests[1]) == [(3 * BLOCK, b"b" * BLOCK)]
    assert writer.written == 2 * BLOCK

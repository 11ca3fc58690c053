"""The pipelined NBD reader against a real nbdkit, and the job's rate limiter."""

import hashlib
import socket
import subprocess
import time

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import datapath
from ansible_collections.xapi.sxm.plugins.module_utils.datapath import BLOCK
try:        # ansible-test units imports the tests as a package
    from .block_writers import RecordingWriter
except ImportError:         # pytest from the repository puts this folder on sys.path
    from block_writers import RecordingWriter

SIZE = 8 * 1024 * 1024 + 3 * BLOCK + 512   # a partial last block


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["block status", "no block status"])
def pattern_export(tmp_path, request):
    """nbdkit serving a file: the first half data, the second half sparse zeros; with block
    status offered or not (XAPI's server offers none)."""
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:
        f.write(hashlib.sha256(b"seed").digest() * (SIZE // 2 // 32))
        f.truncate(SIZE)
    port = free_port()
    filters = [] if request.param == "block status" else ["--filter=noextents", "--no-sr"]
    proc = subprocess.Popen(["nbdkit", "-f", "-r", "-i", "127.0.0.1", "-p", str(port)] + filters
                            + ["file", str(path)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    yield {"address": "127.0.0.1", "port": str(port), "exportname": "", "cert": "", "subject": ""}, path, \
        request.param == "block status"
    proc.terminate()
    proc.wait()


@pytest.mark.parametrize("in_flight", [1, 4])
def test_pipelined_reads_return_every_byte_in_place(pattern_export, in_flight):
    """One request in flight must work as well as several (a limited job runs with one)."""
    record, path, block_status = pattern_export
    expected = path.read_bytes()
    with datapath.NbdSource(record, tls=False, in_flight=in_flight, request_size=256 * 1024) as source:
        assert source.size() == SIZE
        writer = RecordingWriter()
        digests, read = datapath.copy_node(source, SIZE, writer)
    rebuilt = bytearray(SIZE)
    for block, data in writer.blocks.items():
        rebuilt[block * BLOCK:block * BLOCK + len(data)] = data
    assert bytes(rebuilt) == expected
    if block_status:   # the sparse half is known to be zero and not read
        assert SIZE // 2 - BLOCK <= read <= SIZE // 2 + 2 * BLOCK
    else:
        assert read == SIZE
    assert digests.nblocks == (SIZE + BLOCK - 1) // BLOCK


def test_a_large_plan_is_read_over_several_connections(pattern_export):
    record, path, block_status = pattern_export
    expected = path.read_bytes()
    with datapath.NbdSource(record, tls=False, request_size=256 * 1024, connections=3) as source:
        source.multi_conn_bytes = 1024 * 1024
        writer = RecordingWriter()
        datapath.copy_node(source, SIZE, writer, want_digests=False)
        assert len(source.extra) == 2
    rebuilt = bytearray(SIZE)
    for block, data in writer.blocks.items():
        rebuilt[block * BLOCK:block * BLOCK + len(data)] = data
    assert bytes(rebuilt) == expected


def test_rate_limiter_holds_the_rate():
    limiter = datapath.RateLimiter(4 * 1024 * 1024)
    start = time.monotonic()
    for dummy in range(12):
        limiter.consume(1024 * 1024)
    elapsed = time.monotonic() - start
    # 12 MiB at 4 MiB/s, with a burst of 0.2 s at most: about 2.8 s
    assert 2.7 <= elapsed <= 3.5, elapsed

"""Per-block state that does not grow the process with the disk: block sets as bitmaps,
digests in a store that spills to a private file."""

import resource

from ansible_collections.xapi.sxm.plugins.module_utils import digests as digestmod
from ansible_collections.xapi.sxm.plugins.module_utils.blockmap import BlockMap
from ansible_collections.xapi.sxm.plugins.module_utils.digests import UNKNOWN_DIGEST, DigestStore, ZERO_DIGEST


def test_runs_of_partial_and_whole_bytes():
    m = BlockMap(70)
    m.add_range(3, 2)      # partial byte
    m.add_range(8, 40)     # whole bytes, then a partial one
    m.add_range(48, 1)     # joins the run before
    m.add_range(69, 5)     # clipped at the end
    assert list(m.runs()) == [(3, 2), (8, 41), (69, 1)]
    assert len(m) == 44 and 69 in m and 70 not in m and 5 not in m
    assert list(BlockMap.full(13).runs()) == [(0, 13)]
    assert list(BlockMap(0).runs()) == [] and not BlockMap(9)


def test_set_operations():
    a, b = BlockMap(20), BlockMap(20)
    a.add_range(0, 10)
    b.add_range(5, 10)
    assert list(a.union(b).runs()) == [(0, 15)]
    assert list(a.difference(b).runs()) == [(0, 5)]
    assert list(a.intersection(b).runs()) == [(5, 5)]
    assert list(BlockMap.full(20).difference(a).runs()) == [(10, 10)]


def test_a_full_two_tib_map_costs_four_mib_and_runs_fast():
    nblocks = 32 << 20                   # 2 TiB in 64 KiB blocks
    m = BlockMap.full(nblocks)
    assert len(m.bits) == 4 << 20
    assert list(m.runs()) == [(0, nblocks)]


def store_cases():
    yield DigestStore(1000)
    yield DigestStore(100000, memory_bytes=0)     # file-backed, pages evicted


def test_store_reads_back_what_was_set_in_memory_and_on_file():
    for store in store_cases():
        n = store.nblocks
        assert store.get(0) == ZERO_DIGEST and store.nonzero_blocks() == 0
        for block in range(0, n, 7):
            store.set(block, block.to_bytes(16, "big"))
        for block in range(0, n, 7):
            assert store.get(block) == block.to_bytes(16, "big")
        assert store.nonzero_blocks() == len(range(7, n, 7))   # block 0's digest is zero
        other = store.copy()
        assert other == store and other.differences(store) == 0
        other.set(3, b"x" * 16)
        assert other != store and other.differences(store) == 1
        shorter = store.copy(10)
        assert shorter.nblocks == 10 and shorter.differences(store) == len(range(14, n, 7))
        store.close()


def test_an_unknown_store_reads_unknown_until_set_in_memory_and_on_file():
    for store in (DigestStore.unknown(1000), DigestStore(100000, memory_bytes=0, fill=UNKNOWN_DIGEST)):
        n = store.nblocks
        assert store.partial and store.get(0) == UNKNOWN_DIGEST and store.get(n - 1) == UNKNOWN_DIGEST
        for block in range(0, n, 7):
            store.set(block, ZERO_DIGEST)
        # every page was evicted at least once in the file-backed store: what was set survives
        assert store.get(7) == ZERO_DIGEST and store.get(8) == UNKNOWN_DIGEST
        assert store.get(n - n % 7) == ZERO_DIGEST
        other = store.copy()
        assert other.partial and other.differences(store) == 0
        store.close()


def test_fingerprint_covers_the_content():
    a, b = DigestStore(50), DigestStore(50, memory_bytes=0)
    assert a.fingerprint() == b.fingerprint()
    b.set(49, b"y" * 16)
    assert a.fingerprint() != b.fingerprint()


def test_a_two_tib_store_stays_small_in_memory():
    """32 Mi digests (a full 2 TiB disk), three stores kept: the process grows by the page
    caches, not by the 512 MiB per store the digests take on disk."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stores = []
    digest = b"d" * 16
    chunk = digest * digestmod.PAGE_BLOCKS
    nblocks = 32 << 20
    for dummy in range(3):
        store = DigestStore(nblocks)
        for first in range(0, nblocks, digestmod.PAGE_BLOCKS * 64):     # a sample of pages
            store.set_range(first, chunk)
        stores.append(store)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert stores[0].get(0) == digest and stores[2].get(nblocks - 1) == ZERO_DIGEST
    assert grown_mib < 64, grown_mib
    for store in stores:
        store.close()

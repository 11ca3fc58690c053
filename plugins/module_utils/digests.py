# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The block digests of one disk state: 16 bytes per 64 KiB block, nothing per block as a
Python object. Up to ``MEMORY_BYTES`` they live in one bytearray (a 32 GiB disk: 8 MiB);
beyond, in a private temporary file (unlinked at once, mode 0600) read and written through a
small cache of pages, so that the process does not grow with the disk: a 2 TiB disk's
digests are 512 MiB per kept node, on disk, with at most ``CACHE_PAGES`` pages in memory.

An all-zero block's digest is 16 zero bytes, so that a new store (a hole in the file) reads
as an empty disk. A store made by ``unknown`` reads ``UNKNOWN_DIGEST`` for every block not set
since: the content of a disk known only where it was written (a warm migration's working disk
on a re-run, see mirror.py). No block's content has that digest, so every comparison with it
differs and the block travels.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import hashlib
import os
import tempfile

DIGEST = 16
ZERO_DIGEST = bytes(DIGEST)
UNKNOWN_DIGEST = b"\xff" * DIGEST
MEMORY_BYTES = 8 << 20
PAGE_BLOCKS = 4096                      # 64 KiB of digests per page
CACHE_PAGES = 64                        # 4 MiB of pages per store


class DigestStore:
    def __init__(self, nblocks, memory_bytes=MEMORY_BYTES, fill=ZERO_DIGEST):
        self.nblocks = nblocks
        self.memory = None
        self.file = None
        self.fill = fill
        self.partial = fill != ZERO_DIGEST        # some blocks' digests are not known
        if nblocks * DIGEST <= memory_bytes:
            self.memory = bytearray(fill * nblocks)
        else:
            self.file = tempfile.TemporaryFile(prefix="sxm-digests-")
            self.file.truncate(nblocks * DIGEST)
            self.pages = collections.OrderedDict()    # page number -> bytearray, LRU order
            self.dirty = set()
            self.on_file = set()                      # pages written out at least once

    @classmethod
    def unknown(cls, nblocks):
        """A store in which no block's digest is known yet."""
        return cls(nblocks, fill=UNKNOWN_DIGEST)

    # ---- pages (file-backed stores) ---------------------------------------------------------
    def _page(self, number):
        page = self.pages.get(number)
        if page is not None:
            self.pages.move_to_end(number)
            return page
        length = min(PAGE_BLOCKS, self.nblocks - number * PAGE_BLOCKS) * DIGEST
        if number in self.on_file or self.fill == ZERO_DIGEST:
            page = bytearray(os.pread(self.file.fileno(), length, number * PAGE_BLOCKS * DIGEST))
            page.extend(bytes(length - len(page)))
        else:
            page = bytearray(self.fill * (length // DIGEST))
        self.pages[number] = page
        while len(self.pages) > CACHE_PAGES:
            old, data = self.pages.popitem(last=False)
            if old in self.dirty:
                self._write_page(old, data)
        return page

    def _write_page(self, number, data):
        os.pwrite(self.file.fileno(), bytes(data), number * PAGE_BLOCKS * DIGEST)
        self.dirty.discard(number)
        self.on_file.add(number)

    # ---- access -----------------------------------------------------------------------------
    def get_range(self, first, count):
        """The digests of blocks ``first`` .. ``first + count - 1``, concatenated."""
        if self.memory is not None:
            return bytes(self.memory[first * DIGEST:(first + count) * DIGEST])
        out = []
        block, last = first, first + count
        while block < last:
            number, index = divmod(block, PAGE_BLOCKS)
            n = min(last - block, PAGE_BLOCKS - index)
            out.append(bytes(self._page(number)[index * DIGEST:(index + n) * DIGEST]))
            block += n
        return b"".join(out)

    def set_range(self, first, digests):
        """Set blocks from ``first`` on to the concatenated ``digests``."""
        if self.memory is not None:
            self.memory[first * DIGEST:first * DIGEST + len(digests)] = digests
            return
        block, done, total = first, 0, len(digests) // DIGEST
        while done < total:
            number, index = divmod(block, PAGE_BLOCKS)
            n = min(total - done, PAGE_BLOCKS - index)
            self._page(number)[index * DIGEST:(index + n) * DIGEST] = digests[done * DIGEST:(done + n) * DIGEST]
            self.dirty.add(number)
            block += n
            done += n

    def get(self, block):
        return self.get_range(block, 1)

    def set(self, block, digest):
        self.set_range(block, digest)

    def chunks(self, blocks=PAGE_BLOCKS * 16):
        """The whole store in order, ``blocks`` digests at a time."""
        for first in range(0, self.nblocks, blocks):
            yield self.get_range(first, min(blocks, self.nblocks - first))

    def copy(self, nblocks=None):
        """A new store with these digests, cut or extended with zero blocks to ``nblocks``."""
        nblocks = self.nblocks if nblocks is None else nblocks
        other = DigestStore(nblocks)
        other.partial = self.partial
        keep = min(nblocks, self.nblocks)
        step = PAGE_BLOCKS * 16
        for first in range(0, keep, step):
            other.set_range(first, self.get_range(first, min(step, keep - first)))
        return other

    # ---- what a whole store says ----------------------------------------------------------------
    def nonzero_blocks(self, group=1):
        """Blocks (or groups of ``group`` blocks) holding data."""
        width = DIGEST * group
        zero = bytes(width)
        return sum(1 for chunk in self.chunks() for i in range(0, len(chunk), width)
                   if chunk[i:i + width] != zero)

    def fingerprint(self):
        """One digest of the whole content (32 hex digits)."""
        h = hashlib.sha256()
        for chunk in self.chunks():
            h.update(chunk)
        return h.hexdigest()[:32]

    def differences(self, other, group=1):
        """Blocks whose digest differs between two stores (missing blocks read as zero); with
        ``group``, the groups of that many blocks holding a difference (2 MiB VHD blocks: 32)."""
        n = max(self.nblocks, other.nblocks)
        step, count = PAGE_BLOCKS * 16, 0          # a multiple of any group used
        width = DIGEST * group
        for first in range(0, n, step):
            m = min(step, n - first)
            a, b = self._padded(first, m), other._padded(first, m)
            if a != b:
                count += sum(1 for i in range(0, len(a), width) if a[i:i + width] != b[i:i + width])
        return count

    def _padded(self, first, count):
        have = max(0, min(count, self.nblocks - first))
        return (self.get_range(first, have) if have else b"") + bytes((count - have) * DIGEST)

    def __eq__(self, other):
        return isinstance(other, DigestStore) and self.nblocks == other.nblocks and self.differences(other) == 0

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None
            self.pages.clear()

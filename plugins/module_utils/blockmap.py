# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sets of 64 KiB block numbers of one disk, one bit per block (most significant bit of
byte 0 is block 0, as in ``VDI.list_changed_blocks``): a 2 TiB disk's set is 4 MiB whatever
it holds, where a Python set or list of block numbers would cost gigabytes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import re

_NONZERO = re.compile(b"[^\x00]+")
_FULL = re.compile(b"\xff+")


def _popcount(data):
    value = int.from_bytes(bytes(data), "big")
    return value.bit_count() if hasattr(value, "bit_count") else bin(value).count("1")


class BlockMap:
    def __init__(self, nblocks, bits=None):
        self.nblocks = nblocks
        length = (nblocks + 7) // 8
        self.bits = bytearray(length) if bits is None else bytearray(bits[:length].ljust(length, b"\x00"))
        self._clear_tail()

    @classmethod
    def full(cls, nblocks):
        return cls(nblocks, b"\xff" * ((nblocks + 7) // 8))

    @classmethod
    def from_cbt(cls, bitmap_b64, nblocks):
        """A ``VDI.list_changed_blocks`` answer (base64)."""
        return cls(nblocks, base64.b64decode(bitmap_b64))

    def _clear_tail(self):
        spare = len(self.bits) * 8 - self.nblocks
        if spare:
            self.bits[-1] &= (0xFF << spare) & 0xFF

    def add_range(self, first, count):
        """Blocks ``first`` .. ``first + count - 1`` (clipped to the disk)."""
        last = min(first + count, self.nblocks)
        block = max(first, 0)
        while block < last and block % 8:
            self.bits[block // 8] |= 0x80 >> (block % 8)
            block += 1
        whole = (last - block) // 8
        if whole > 0:
            self.bits[block // 8:block // 8 + whole] = b"\xff" * whole
            block += whole * 8
        while block < last:
            self.bits[block // 8] |= 0x80 >> (block % 8)
            block += 1

    def __contains__(self, block):
        return 0 <= block < self.nblocks and bool(self.bits[block // 8] & (0x80 >> (block % 8)))

    def __len__(self):
        return _popcount(self.bits)

    def __bool__(self):
        return any(self.bits)

    __nonzero__ = __bool__

    def _combine(self, other, op):
        n = len(self.bits)
        a = int.from_bytes(bytes(self.bits), "big")
        b = int.from_bytes(bytes(other.bits[:n]).ljust(n, b"\x00"), "big")
        return BlockMap(self.nblocks, op(a, b, (1 << (8 * n)) - 1).to_bytes(n, "big") if n else b"")

    def union(self, other):
        return self._combine(other, lambda a, b, mask: a | b)

    def difference(self, other):
        return self._combine(other, lambda a, b, mask: a & ~b & mask)

    def intersection(self, other):
        return self._combine(other, lambda a, b, mask: a & b)

    def runs(self):
        """(first block, count) of each run of consecutive blocks, in order; whole 0xFF bytes
        are taken eight blocks at a time."""
        pending = None                      # [first, count] of the run being built
        for span in _NONZERO.finditer(self.bits):
            start, end = span.span()
            cursor = start
            pieces = [(m.start(), m.end()) for m in _FULL.finditer(self.bits, start, end)]
            for full_start, full_end in pieces + [(end, end)]:
                for index in range(cursor, full_start):        # partial bytes, bit by bit
                    byte = self.bits[index]
                    for bit in range(8):
                        if byte & (0x80 >> bit):
                            block = index * 8 + bit
                            if pending and pending[0] + pending[1] == block:
                                pending[1] += 1
                            else:
                                if pending:
                                    yield tuple(pending)
                                pending = [block, 1]
                if full_end > full_start:
                    block, count = full_start * 8, (full_end - full_start) * 8
                    if pending and pending[0] + pending[1] == block:
                        pending[1] += count
                    else:
                        if pending:
                            yield tuple(pending)
                        pending = [block, count]
                cursor = full_end
        if pending:
            yield tuple(pending)

    def pieces(self, limit):
        """The runs, each cut into pieces of at most ``limit`` blocks (for work that holds a
        piece's digests in memory)."""
        for first, count in self.runs():
            for start in range(first, first + count, limit):
                yield start, min(limit, first + count - start)

    def __iter__(self):
        for first, count in self.runs():
            yield from range(first, first + count)

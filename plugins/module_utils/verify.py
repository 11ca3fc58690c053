# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verification (DESIGN.md step 7): both trees isomorphic and the disks' bytes equal, read
over NBD on both pools. What was verified is recorded on the destination VM as a fingerprint
of the source state, so that the cut-over can refuse a source that changed since.

Two depths. ``full`` reads every node of every disk whole on both pools. ``sample`` (the
default) relies on the mirror having read back every block it wrote and compared it with the
source's digests (mirror.DiskMirror._check_written), and compares a random sample of
``SAMPLE_FRACTION`` of the blocks of every node (at least ``SAMPLE_MIN_BLOCKS``) on both pools:
a block corrupted after it was written, or never written though it should have been, is
found by ``full`` always and by ``sample`` with the probability of the sample. The leaves'
content fingerprints then come from the working VDIs' markers, computed from the source's
content as it was mirrored; the cut-over recomputes them from the source before it acts.

The fingerprint has two parts: ``records`` (every node's uuid, name, description, time and
parent, and per disk its VDI uuid and size: cheap to recompute) and ``content`` (a digest of
each VM disk's block digests: a write to a halted disk shows only there, and recomputing it
reads the disk).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import random
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.xapi.sxm.plugins.module_utils import datapath, markers, tree as treemod
from ansible_collections.xapi.sxm.plugins.module_utils.blockmap import BlockMap
from ansible_collections.xapi.sxm.plugins.module_utils.errors import VerificationError, XapiFailure

VERIFY_READERS = 4
DEPTHS = ("sample", "full")
SAMPLE_FRACTION = 0.01
SAMPLE_MIN_BLOCKS = 16


def records_fingerprint(tree):
    nodes = []
    for node in tree.nodes.values():
        nodes.append([node.uuid, node.parent.uuid if node.parent else None, node.name_label,
                      node.name_description, node.snapshot_time, node.is_vm,
                      sorted([d.userdevice, d.uuid, d.virtual_size] for d in node.disks.values())]
                     # a VM suspended again since has another image (kept out when none: the
                     # fingerprints of trees without images stay what they were)
                     + ([node.memory.uuid] if node.memory is not None else []))
    for device, disks in tree.loose.items():
        nodes.append(["loose", device, sorted([d.uuid, d.virtual_size, d.metadata_only] for d in disks)])
    return hashlib.sha256(json.dumps(sorted(nodes, key=str)).encode()).hexdigest()[:32]


def content_fingerprint(leaf_fingerprints):
    return hashlib.sha256(json.dumps(sorted(leaf_fingerprints.items())).encode()).hexdigest()[:32]


PARTIAL = "partial"     # a leaf synced from CBT's changed blocks only (mirror.leaf_marker)


def fingerprint(tree, leaf_fingerprints):
    content = PARTIAL if PARTIAL in leaf_fingerprints.values() else content_fingerprint(leaf_fingerprints)
    return "records:%s content:%s" % (records_fingerprint(tree), content)


def parse_fingerprint(text):
    parts = dict(p.split(":", 1) for p in (text or "").split() if ":" in p)
    return parts.get("records"), parts.get("content")


def leaf_fingerprints(src, tree, tls):
    """{userdevice: content fingerprint} of the VM's own disks, read from the source."""
    disks = sorted(tree.vm.disks.values(), key=lambda d: int(d.userdevice))
    with ThreadPoolExecutor(max_workers=VERIFY_READERS) as readers:
        digests = list(readers.map(lambda d: digest_of(src, d.vdi_ref, d.virtual_size, tls), disks))
    return dict((disk.userdevice, datapath.content_fingerprint(digests[i])) for i, disk in enumerate(disks))


def verify(src, dst, tree, dst_ref, pairs, tls, dst_tls, progress=None, depth="sample"):
    """Compare trees and the disks' content (``depth``: see the module's docstring).
    Returns {destination_tree, verified_disks, fingerprint, verify_bytes_read, verify_depth}; raises
    VerificationError naming every difference. ``progress(nbytes)`` is told of every read,
    on both pools."""
    dst_tree = treemod.discover(dst, dst_ref)
    problems = compare_trees(tree, dst_tree)
    to_read, missing = carried(tree.carried_snapshots() + [tree.vm], pairs)
    compared, differing, read = compare_content(src, dst, to_read, pairs, tls, dst_tls, depth, progress)
    problems += missing + [differs(node, disk) for node, disk, dummy in differing]
    leaves = {}
    for node, disk, source, dst_vdi in compared:
        if node.is_vm and disk.userdevice != treemod.MEMORY:
            if depth == "full":
                leaves[disk.userdevice] = datapath.content_fingerprint(source)
            else:
                leaves[disk.userdevice] = mirrored_leaf_fingerprint(dst, dst_vdi, disk)
                if leaves[disk.userdevice] is None:
                    problems.append("disk %s of the VM is not synced on the destination" % disk.userdevice)
        source.close()
    if differing:
        problems.append(forget_differing(dst, tree.vm.uuid, differing))
    if problems:
        raise VerificationError("verification failed (the source is untouched): " + "; ".join(problems),
                                partial={"destination_tree": dst_tree.to_dict()})
    return {"destination_tree": dst_tree.to_dict(), "verified_disks": len(to_read),
            "fingerprint": fingerprint(tree, leaves), "verify_bytes_read": read, "verify_depth": depth}


def verify_snapshots(src, dst, tree, pairs, tls, dst_tls, depth="sample"):
    """A warm migration's snapshot nodes and memory images compared on both pools to ``depth``
    while the VM still runs, so that the downtime reads only the last pass's blocks. Returns
    the bytes read; raises VerificationError naming every difference (the VM runs on)."""
    nodes = tree.carried_snapshots() + ([tree.vm] if tree.vm.memory is not None else [])
    to_read, problems = carried(nodes, pairs, with_vm_disks=False)
    compared, differing, read = compare_content(src, dst, to_read, pairs, tls, dst_tls, depth)
    for entry in compared:
        entry[2].close()
    problems += [differs(node, disk) for node, disk, dummy in differing]
    if differing:
        problems.append(forget_differing(dst, tree.vm.uuid, differing))
    if problems:
        raise VerificationError("verification of the snapshots failed before the cut-over (the VM runs on at "
                                "the source): " + "; ".join(problems))
    return read


def carried(nodes, pairs, with_vm_disks=True):
    """([(node, disk)] to compare: the nodes' disks and memory images, [problem] for those
    without a destination copy)."""
    to_read, problems = [], []
    for node in nodes:
        disks = list(node.disks.values()) if with_vm_disks or not node.is_vm else []
        for disk in disks + ([node.memory] if getattr(node, "memory", None) else []):
            if disk.uuid in pairs:
                to_read.append((node, disk))
            else:
                problems.append("%s of %s has no destination copy" % (label_of(disk), node.name_label))
    return to_read, problems


def compare_content(src, dst, to_read, pairs, tls, dst_tls, depth, progress=None):
    """Both pools' digests of each (node, disk), whole (``full``) or on a random sample.
    Returns ([(node, disk, source digests, destination ref)], [(node, disk, destination ref)]
    of those that differ, bytes read)."""
    chooser = random.SystemRandom()
    read = [0]

    def count(nbytes):
        read[0] += nbytes
        if progress:
            progress(nbytes)

    def both_digests(pair):
        disk = pair[1]
        dst_vdi = dst.call("VDI.get_by_uuid", pairs[disk.uuid])
        blocks = None if depth == "full" else sample_blocks(disk.virtual_size, chooser)
        return (digest_of(src, disk.vdi_ref, disk.virtual_size, tls, count, blocks),
                digest_of(dst, dst_vdi, disk.virtual_size, dst_tls, count, blocks), dst_vdi)
    # several disks at once: a tree of small disks is mostly connection set-up, and libnbd and
    # hashlib let threads overlap; at most VERIFY_READERS NBD connections on each pool
    with ThreadPoolExecutor(max_workers=VERIFY_READERS) as readers:
        digests = list(readers.map(both_digests, to_read))
    compared, differing = [], []
    for index, (node, disk) in enumerate(to_read):
        source, destination, dst_vdi = digests[index]
        if source != destination:
            differing.append((node, disk, dst_vdi))
        destination.close()
        compared.append((node, disk, source, dst_vdi))
    return compared, differing, read[0]


def forget_differing(dst, job, differing):
    """Copies that differ from the source are not trusted again: a snapshot's copy or a memory
    image goes (the next run mirrors it again), a working disk is marked unknown (the next run
    reads it back and rewrites what differs), and an unfinished destination VM, whose VBDs
    name those copies, goes with its snapshot VMs (the next run imports it again). Returns
    what was done, as a line for the error."""
    vm_ref, vm_rec = markers.destination_vm(dst, job)
    try:
        if vm_rec is not None and markers.state_of(vm_rec) != "complete":
            for snap in vm_rec["snapshots"]:
                dst.call("VM.destroy", snap)
            dst.call("VM.destroy", vm_ref)
        for entry in differing:
            ref = entry[2]
            if dst.call("VDI.get_other_config", ref).get(markers.ROLE) == "working":
                markers.set_key(dst, "VDI", ref, markers.HOLDS, "unknown")
            else:
                dst.call("VDI.destroy", ref)
    except XapiFailure as e:
        return "removing the copies that differ failed too (%s): remove the job with migration_cleanup" % e.code
    return "the copies that differ were removed: run again to copy them again"


def differs(node, disk):
    return "%s of %s differs on the destination" % (label_of(disk), node.name_label)


def label_of(disk):
    return "the memory image" if disk.userdevice == treemod.MEMORY else "disk %s" % disk.userdevice


def verify_records(dst, tree, dst_ref, pairs):
    """The trees compared, and the leaves' fingerprints taken from what the mirror recorded
    when it synced them (every block it wrote was read back and checked): no disk is read,
    for a warm migration's downtime. Returns what ``verify`` returns."""
    dst_tree = treemod.discover(dst, dst_ref)
    problems = compare_trees(tree, dst_tree)
    leaves = {}
    for device, disk in sorted(tree.vm.disks.items()):
        fingerprint_of = None
        if disk.uuid in pairs:
            fingerprint_of = mirrored_leaf_fingerprint(dst, dst.call("VDI.get_by_uuid", pairs[disk.uuid]), disk)
        if fingerprint_of is None:
            problems.append("disk %s of the VM is not synced on the destination" % device)
        leaves[device] = fingerprint_of
    if problems:
        raise VerificationError("verification failed (the source is untouched): " + "; ".join(problems),
                                partial={"destination_tree": dst_tree.to_dict()})
    return {"destination_tree": dst_tree.to_dict(), "verified_disks": 0, "fingerprint": fingerprint(tree, leaves),
            "verify_bytes_read": 0, "verify_depth": "written blocks"}


def sample_blocks(size, chooser):
    """A random BlockMap of SAMPLE_FRACTION of a disk's blocks (at least SAMPLE_MIN_BLOCKS)."""
    nblocks = (size + datapath.BLOCK - 1) // datapath.BLOCK
    wanted = min(nblocks, max(SAMPLE_MIN_BLOCKS, int(nblocks * SAMPLE_FRACTION)))
    blocks = BlockMap(nblocks)
    picked = 0
    while picked < wanted:
        block = chooser.randrange(nblocks)
        if block not in blocks:
            blocks.add_range(block, 1)
            picked += 1
    return blocks


def mirrored_leaf_fingerprint(dst, dst_vdi, disk):
    """The content fingerprint the mirror recorded when it synced this leaf, or None."""
    holds = dst.call("VDI.get_other_config", dst_vdi).get(markers.HOLDS, "")
    prefix = "leaf:%s:" % disk.uuid
    return holds[len(prefix):] if holds.startswith(prefix) else None


def digest_of(conn, vdi_ref, size, tls, progress=None, blocks=None):
    """The DigestStore of a VDI read over NBD: whole, or only ``blocks`` (a BlockMap)."""
    records = conn.call("VDI.get_nbd_info", vdi_ref)
    with datapath.NbdSource(datapath.pick_nbd_record(records), tls=tls) as source:
        if blocks is None:
            return datapath.copy_node(source, size, datapath.NullWriter(), progress=progress)[0]
        return datapath.digests_of_blocks(source, size, blocks, progress=progress)[0]


def compare_trees(a, b):
    """Differences between two trees: names, descriptions, times, parent links, disks."""
    problems = []
    nb = {n.uuid: n for n in b.nodes.values()}
    for node in a.nodes.values():
        other = nb.get(node.uuid)
        if other is None:
            problems.append("%s is missing on the destination" % node.name_label)
            continue
        for field in ("name_label", "name_description", "snapshot_time"):
            if getattr(node, field) != getattr(other, field):
                problems.append("%s: %s differs (%r, %r)" % (node.name_label, field,
                                                             getattr(node, field), getattr(other, field)))
        if (node.parent.uuid if node.parent else None) != (other.parent.uuid if other.parent else None):
            problems.append("%s: parent differs" % node.name_label)
        if sorted(node.disks) != sorted(other.disks):
            problems.append("%s: disks differ (%s, %s)" % (node.name_label, sorted(node.disks), sorted(other.disks)))
        if (node.memory is None) != (other.memory is None):
            problems.append("%s: %s a memory image, the destination's %s" % (
                node.name_label, "has" if node.memory else "has no", "has none" if node.memory else "has one"))
        if node.is_vm and node.power_state == "Suspended" and other.power_state != "Suspended":
            problems.append("%s: suspended, the destination's is %s" % (node.name_label, other.power_state.lower()))
    if len(nb) != len(a.nodes):
        problems.append("the destination has %d nodes, the source %d" % (len(nb), len(a.nodes)))
    return problems

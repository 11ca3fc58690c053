"""The benchmarks of issues #4 and #10. Each takes started pools (``harness.Pools``) and returns a
dict of figures; ``run.py`` puts them in results.json."""

import json
import os
import random
import subprocess
import sys
import threading
import time

import harness as h
from harness import GiB, MiB, BLOCK, log, median
from xapisim import client, scenario

REPEATS = 3


def copy_s(r):
    """The mirror's seconds without the read-back of what it wrote, which is the default
    verification's first half (reported with verification): the data path's own time. One
    disk, so the two never overlap."""
    return r["timings"]["data_s"] - r["timings"].get("written_read_back_s", 0)


def timed(fn, repeats):
    values = [fn() for dummy in range(repeats)]
    return median(values), [round(v, 3) for v in values]


def timed_with_cpu(fn, repeats):
    """Like timed, plus the medians of the machine's busy CPU seconds, of the servers' share of
    them (the machine's less the client's) and of the client's own over the runs."""
    runs = [h.with_machine_cpu(fn) for dummy in range(repeats)]
    return (median([r[0] for r in runs]), [round(r[0], 3) for r in runs],
            round(median([r[1] for r in runs]), 2), round(median([r[1] - r[2] for r in runs]), 2),
            round(median([r[2] for r in runs]), 3))


# ---- 1. full copy ----------------------------------------------------------------------------

def full_copy(pools, workdir, size=4 * GiB, repeats=REPEATS):
    """A 4 GiB disk, 50 % allocated with random data (4 MiB stripes every 8 MiB), over plaintext
    and TLS NBD: our mirror's data time against nbdcopy (to null:) and curl (chunked upload)
    run at the same time, interleaved run by run; our client CPU against theirs; and, without
    a bound, against max() of the two run alone. The upload is HTTPS in both modes (XAPI's
    import handler), so the curl figures are shared."""
    vm, vdi, uuid = h.vm_with_disk(pools, "bench-full-copy", size,
                                   h.striped_extents(size, 0.5, 4 * MiB), seed=1)
    body = os.path.join(workdir, "full-copy.body")
    payload = h.write_chunked_body(pools.disk_path(pools.src, uuid), body)
    log("full copy: disk ready, %d bytes allocated" % payload)
    curl_s, curl_runs, curl_cpu, curl_servers, curl_client = timed_with_cpu(
        lambda: h.time_curl(pools, body, size), repeats)
    cores = os.cpu_count()
    out = {"disk_bytes": size, "allocated_bytes": payload, "curl_s": round(curl_s, 3),
           "curl_runs": curl_runs, "curl_machine_cpu_s": curl_cpu, "curl_servers_cpu_s": curl_servers,
           "curl_client_cpu_s": curl_client}
    for mode, tls in (("plain", False), ("tls", True)):
        pools.set_source_tls(tls)
        nbdcopy_s, nbdcopy_runs, nbdcopy_cpu, nbdcopy_servers, nbdcopy_client = timed_with_cpu(
            lambda: h.time_nbdcopy(pools, vdi, workdir), repeats)
        # the baseline: both halves at once, sharing this machine's cores as ours do,
        # interleaved run by run with ours
        together, ours_and_cpu = [], []
        for _run in range(repeats):
            together.append(h.time_both_at_once(pools, vdi, body, size, workdir))
            ours_and_cpu.append(h.with_machine_cpu(lambda: h.migrate_once(pools, vm)))
        ours = [r[0] for r in ours_and_cpu]
        data = [round(copy_s(r), 3) for r in ours]
        with_read_back = [r["timings"]["data_s"] for r in ours]
        ours_s = median(data)
        limit = max(nbdcopy_s, curl_s)
        # both halves' CPU, as the lone runs spent it, spread over every core: about what a
        # program doing both needs here; the servers' share alone is what a client that
        # cost nothing would need
        cpu_bound = (nbdcopy_cpu + curl_cpu) / cores
        servers_bound = (nbdcopy_servers + curl_servers) / cores
        # the read-back of what was written is verification (timed apart above): its CPU too
        ours_cpu = round(median([r["cpu_s"] - r["timings"]["written_read_back_cpu_s"] for r in ours]), 3)
        ours_cpu_with_read_back = median([r["cpu_s"] for r in ours])
        out.update({
            "nbdcopy_s_" + mode: round(nbdcopy_s, 3), "nbdcopy_runs_" + mode: nbdcopy_runs,
            "nbdcopy_client_cpu_s_" + mode: nbdcopy_client,
            "ours_s_" + mode: ours_s, "ours_runs_" + mode: data,
            "both_at_once_s_" + mode: round(median(together), 3),
            "both_at_once_runs_" + mode: [round(t, 3) for t in together],
            "limit_s_" + mode: round(limit, 3), "ratio_" + mode: round(ours_s / limit, 3),
            "ours_mib_s_" + mode: round(size / MiB / ours_s, 1),
            "limit_mib_s_" + mode: round(size / MiB / limit, 1),
            "bytes_read_" + mode: ours[0]["bytes_read"], "bytes_written_" + mode: ours[0]["bytes_written"],
            "ours_cpu_s_" + mode: ours_cpu, "ours_cpu_s_with_read_back_" + mode: ours_cpu_with_read_back,
            "ratio_both_at_once_" + mode: round(median([o / t for o, t in zip(data, together, strict=True)]), 3),
            "ours_with_read_back_runs_" + mode: with_read_back,
            "ratio_both_at_once_with_read_back_" + mode: round(
                median([o / t for o, t in zip(with_read_back, together, strict=True)]), 3),
            # our client CPU (NBD, TLS, hashing, HTTPS: the mover's every thread) against the
            # two tools' client CPU for the same bytes
            "cpu_ratio_" + mode: round(ours_cpu / (nbdcopy_client + curl_client), 3),
            "cpu_ratio_with_read_back_" + mode: round(ours_cpu_with_read_back / (nbdcopy_client + curl_client), 3),
            "nbdcopy_machine_cpu_s_" + mode: nbdcopy_cpu, "nbdcopy_servers_cpu_s_" + mode: nbdcopy_servers,
            "ours_machine_cpu_s_" + mode: round(median([r[1] for r in ours_and_cpu]), 2),
            "cpu_bound_s_" + mode: round(cpu_bound, 3),
            "servers_bound_s_" + mode: round(servers_bound, 3),
            "ratio_cpu_bound_" + mode: round(ours_s / max(limit, cpu_bound), 3),
        })
        log("full copy %s: ours %.2fs, both at once %.2fs, nbdcopy %.2fs, curl %.2fs" % (
            mode, ours_s, median(together), nbdcopy_s, curl_s))
    os.unlink(body)
    pools.set_source_tls(True)
    h.remove_source_vm(pools, vm)
    return out


# ---- 2. sparse disk --------------------------------------------------------------------------

def sparse(pools_bs, pools, workdir, size=16 * GiB, repeats=REPEATS):
    """A 16 GiB disk with 2 % allocated (1 MiB every 50 MiB), the same on pools that offer
    block status and on pools that do not (XAPI's), TLS NBD as XAPI's default. Baseline: the
    time the allocated bytes alone take, max(curl uploading just them, nbdcopy reading the
    export where block status lets it skip the holes). Ours, interleaved run by run: with
    block status (no VHD map), with a VHD allocation map and no block status (the default on
    XAPI), and reading it whole (neither: what XAPI's NBD server alone allows)."""
    extents = h.striped_extents(size, 0.02, 1 * MiB)
    vm_bs, vdi_bs, uuid_bs = h.vm_with_disk(pools_bs, "bench-sparse", size, extents, seed=2)
    vm, dummy, dummy = h.vm_with_disk(pools, "bench-sparse", size, extents, seed=2)
    body = os.path.join(workdir, "sparse.body")
    payload = h.write_chunked_body(pools_bs.disk_path(pools_bs.src, uuid_bs), body)
    curl_s, curl_runs, curl_cpu, dummy, dummy = timed_with_cpu(lambda: h.time_curl(pools_bs, body, size), repeats)
    os.unlink(body)
    nbdcopy_s, nbdcopy_runs, nbdcopy_cpu, dummy, dummy = timed_with_cpu(
        lambda: h.time_nbdcopy(pools_bs, vdi_bs, workdir), repeats)
    runs = {"block_status": [], "vhd": [], "whole": []}
    # untimed: the first migration after the disks are made runs on the pools' cold caches
    h.migrate_once(pools_bs, vm_bs, use_vhd_maps=False)
    h.migrate_once(pools, vm)
    for _run in range(repeats):
        runs["block_status"].append(h.migrate_once(pools_bs, vm_bs, use_vhd_maps=False))
        runs["vhd"].append(h.migrate_once(pools, vm))
        runs["whole"].append(h.migrate_once(pools, vm, use_vhd_maps=False))
    h.remove_source_vm(pools_bs, vm_bs)
    h.remove_source_vm(pools, vm)
    data = {mode: [round(copy_s(r), 3) for r in rs] for mode, rs in runs.items()}
    alone = max(curl_s, nbdcopy_s)
    # both halves' CPU over every core bounds any program doing both
    cpu_bound = (curl_cpu + nbdcopy_cpu) / os.cpu_count()
    out = {"disk_bytes": size, "allocated_bytes": payload, "curl_s": round(curl_s, 3), "curl_runs": curl_runs,
           "nbdcopy_s": round(nbdcopy_s, 3), "nbdcopy_runs": nbdcopy_runs, "allocated_alone_s": round(alone, 3),
           "allocated_alone_cpu_bound_s": round(cpu_bound, 3)}
    for mode, rs in runs.items():
        out[mode] = {"ours_s": median(data[mode]), "ours_runs": data[mode],
                     "read_back_s": median([r["timings"]["written_read_back_s"] for r in rs]),
                     "bytes_read": rs[0]["bytes_read"],
                     "bytes_written": rs[0]["bytes_written"], "delta_sources": rs[0]["delta_sources"]}
    out["ratio_with_block_status"] = round(out["block_status"]["ours_s"] / alone, 3)
    out["ratio_with_block_status_cpu_bound"] = round(out["block_status"]["ours_s"] / max(alone, cpu_bound), 3)
    out["ratio_vhd"] = round(out["vhd"]["ours_s"] / alone, 3)
    out["ratio_whole_read"] = round(out["whole"]["ours_s"] / alone, 3)
    # each ratio the median of the per-run ratios (the runs were interleaved)
    pairs = range(repeats)
    out["ratio_vhd_vs_block_status"] = round(median([data["vhd"][i] / data["block_status"][i] for i in pairs]), 3)
    out["speedup_vhd_vs_whole_read"] = round(median([data["whole"][i] / data["vhd"][i] for i in pairs]), 2)
    log("sparse: %s" % {m: out[m]["ours_s"] for m in runs})
    return out


# ---- 3. snapshot chain and tree --------------------------------------------------------------

CHAIN_STEPS = [s for i in range(1, 9) for s in (("write", i), ("snap", "s%d" % i))] + [("write", 9)]

# s1 - s2 - s3 (abandoned)
#       `- s4 - s5 (abandoned)
#           `- s6 (abandoned)
#  `- s7 - s8 - VM
TREE_STEPS = [("write", 1), ("snap", "s1"), ("write", 2), ("snap", "s2"), ("write", 3), ("snap", "s3"),
              ("revert", "s2"), ("write", 4), ("snap", "s4"), ("write", 5), ("snap", "s5"),
              ("revert", "s4"), ("write", 6), ("snap", "s6"),
              ("revert", "s1"), ("write", 7), ("snap", "s7"), ("write", 8), ("snap", "s8"),
              ("write", 9)]


CLUSTER = 16 * MiB


def changed_blocks_write(pools, x, vdi, size, fraction, rng, cluster=None):
    """Rewrite ``fraction`` of the disk's 64 KiB blocks with random data, through
    /import_raw_vdi so that CBT and the VHD chain record it: blocks chosen at random, or with
    ``cluster`` runs of that many bytes at random 64 KiB-aligned offsets (as file systems
    write)."""
    nblocks = size // BLOCK
    if cluster is None:
        blocks = sorted(rng.sample(range(nblocks), int(nblocks * fraction)))
    else:
        per_run = cluster // BLOCK
        starts = rng.sample(range(nblocks - per_run), int(nblocks * fraction) // per_run)
        blocks = sorted({b for start in starts for b in range(start, start + per_run)})
    writes = [(b * BLOCK, rng.randbytes(BLOCK)) for b in blocks]
    for i in range(0, len(writes), 512):        # requests of at most 32 MiB
        scenario.write_disk(pools.src, x, vdi, writes[i:i + 512])


def build_snapshots(pools, name, steps, size, fraction, seed, cbt=True, cluster=None, extents=None):
    """A VM with one disk of ``size`` holding random data at ``extents`` (all of it unless
    given), CBT enabled before the first snapshot unless ``cbt`` is false, then ``steps``:
    ("write", n) changes ``fraction`` of its blocks, ("snap", label), ("revert", label)."""
    x = pools.xsrc
    vm_uuid, vdi, uuid = h.vm_with_disk(pools, name, size, extents or [(0, size)], seed=seed, cbt=cbt)
    vm = x.xenapi.VM.get_by_uuid(vm_uuid)
    rng = random.Random(seed)
    snaps = {}
    for kind, arg in steps:
        if kind == "write":
            changed_blocks_write(pools, x, scenario.disks(x, vm)["0"], size, fraction, rng, cluster)
        elif kind == "snap":
            snaps[arg] = x.xenapi.VM.snapshot(vm, arg)
        elif kind == "revert":
            x.xenapi.VM.revert(snaps[arg])
    return vm_uuid


def amplification(r):
    minimum = max(1, r["walk_minimum_bytes"])
    return {"bytes_read": r["bytes_read"], "bytes_written": r["bytes_written"],
            "walk_minimum_bytes": r["walk_minimum_bytes"], "edge_minimum_bytes": r["edge_minimum_bytes"],
            "walk_minimum_2m_bytes": r["walk_minimum_2m_bytes"], "delta_sources": r["delta_sources"],
            "data_s": r["timings"]["data_s"], "cpu_s": r["cpu_s"],
            "read_amplification": round(r["bytes_read"] / minimum, 3),
            "read_amplification_2m": round(r["bytes_read"] / max(1, r["walk_minimum_2m_bytes"]), 3),
            "write_amplification": round(r["bytes_written"] / minimum, 3)}


MODES = (("cbt", {"use_cbt": True}), ("vhd", {"use_cbt": False}),
         ("content", {"use_cbt": False, "use_vhd_maps": False}))


def snapshot_trees(pools, size=2 * GiB, fraction=0.05):
    """A chain of 8 snapshots and a tree of 8 with 3 reverted branches, each snapshot (and the
    VM after the last) changing 5 % of a 2 GiB disk's 64 KiB blocks at random; each migrated
    with CBT, with VHD allocation maps (no CBT) and by content. The CBT run also verifies at
    the default depth: what that reads, against its bound."""
    out = {}
    for name, steps, seed in (("chain", CHAIN_STEPS, 3), ("tree", TREE_STEPS, 4)):
        vm = build_snapshots(pools, "bench-" + name, steps, size, fraction, seed)
        log("%s: built" % name)
        figures = {"disk_bytes": size, "changed_fraction": fraction}
        for mode, options in MODES:
            # bytes do not depend on TLS: content mode reads every node whole (~20 GiB), so it
            # runs over plaintext NBD to keep `make bench` short
            pools.set_source_tls(mode != "content")
            r = h.migrate_once(pools, vm, verify=(mode == "cbt"), **options)
            a = amplification(r)
            a["nbd"] = "plain" if mode == "content" else "tls"
            figures[mode] = a
            figures["write_amplification_" + mode] = a["write_amplification"]
            figures["read_amplification_" + mode] = a["read_amplification"]
            if mode == "vhd":
                figures["read_amplification_vhd_2m"] = a["read_amplification_2m"]
            if mode == "cbt" and name == "tree":
                out["verify"] = verify_figures(r, steps, size)
            log("%s %s: %s" % (name, mode, a))
        pools.set_source_tls(True)
        h.remove_source_vm(pools, vm)
        out[name] = figures
    return out


def verify_figures(r, steps, size):
    """What the default verification read on the CBT tree, against bytes written + 2 x s x the
    sum of node sizes (s = the sample fraction)."""
    sys.path.insert(0, os.path.join(h.REPO, "tests", "unit"))
    import conftest  # noqa: F401  (puts build/collections on sys.path, as bench/mover.py does)
    from ansible_collections.xapi.sxm.plugins.module_utils import verify as verification
    nodes = 1 + sum(1 for kind, dummy in steps if kind == "snap")
    bound = r["bytes_written"] + 2 * verification.SAMPLE_FRACTION * nodes * size
    return {"bytes_read_default": r["verify_bytes_read"], "bound_bytes": int(bound),
            "sample_fraction": verification.SAMPLE_FRACTION, "written_read_back_bytes": r["written_read_back_bytes"],
            "bytes_written": r["bytes_written"], "verify_s": r["timings"].get("verify_s"),
            "written_read_back_s": r["timings"]["written_read_back_s"],
            # both halves of the default verification against the data path's own time
            "ratio_default": round((r["timings"].get("verify_s", 0) + r["timings"]["written_read_back_s"])
                                   / max(1e-6, copy_s(r)), 3)}


def clustered_trees(pools, size=2 * GiB, fraction=0.05):
    """The chain and the tree again, without CBT, each change 5 % of the disk in runs of 16 MiB
    at random 64 KiB-aligned offsets: read with VHD allocation maps."""
    out = {}
    for name, steps, seed in (("chain_clustered", CHAIN_STEPS, 6), ("tree_clustered", TREE_STEPS, 7)):
        vm = build_snapshots(pools, "bench-" + name, steps, size, fraction, seed, cbt=False, cluster=CLUSTER)
        a = amplification(h.migrate_once(pools, vm, use_cbt=False))
        out[name] = {"disk_bytes": size, "changed_fraction": fraction, "cluster_bytes": CLUSTER, "vhd": a,
                     "read_amplification_vhd": a["read_amplification"],
                     "write_amplification_vhd": a["write_amplification"]}
        log("%s vhd: %s" % (name, a))
        h.remove_source_vm(pools, vm)
    return out


# ---- 4. peak memory --------------------------------------------------------------------------

def peak_memory(pools, sizes=(("1g", 1 * GiB), ("8g", 8 * GiB)), fraction=0.25):
    """Peak RSS (VmHWM) of the process running migrate.migrate, for disks of 1 and 8 GiB with
    25 % allocated (4 MiB stripes), over TLS NBD; run.py adds 16 GiB (not in the issue), to
    show that past the fixed buffers nothing grows with the disk."""
    out = {}
    for label, size in sizes:
        vm, vdi, uuid = h.vm_with_disk(pools, "bench-memory-%d" % size, size,
                                       h.striped_extents(size, fraction, 4 * MiB), seed=5)
        r = h.migrate_once(pools, vm)
        out["peak_rss_mib_" + label] = round(r["peak_rss_kib"] / 1024, 1)
        out["data_s_" + label] = r["timings"]["data_s"]
        h.remove_source_vm(pools, vm)
        log("memory %s: %s MiB" % (label, out["peak_rss_mib_" + label]))
    return out


def peak_memory_tree(pools, size=64 * GiB):
    """Peak RSS end to end for the branched tree (8 snapshots, 3 reverted branches) on a
    64 GiB disk: 1/64 of it allocated in 4 MiB stripes, each change 0.1 % of its blocks, CBT."""
    vm = build_snapshots(pools, "bench-memory-tree", TREE_STEPS, size, 0.001, seed=8,
                         extents=h.striped_extents(size, 1 / 64, 4 * MiB))
    r = h.migrate_once(pools, vm)
    h.remove_source_vm(pools, vm)
    out = {"peak_rss_mib_tree_64g": round(r["peak_rss_kib"] / 1024, 1), "tree_64g_data_s": r["timings"]["data_s"],
           "tree_64g_bytes_read": r["bytes_read"], "tree_64g_disk_bytes": size}
    log("memory tree 64g: %s" % out)
    return out


DIGEST_STORE_PROBE = """
import resource, sys
sys.path.insert(0, %r)
import conftest  # noqa: F401  (build/collections on sys.path)
from ansible_collections.xapi.sxm.plugins.module_utils.digests import DigestStore, PAGE_BLOCKS
nblocks = %d
chunk = bytes(range(16)) * PAGE_BLOCKS
stores = []
for node in range(3):
    store = DigestStore(nblocks)
    for first in range(0, nblocks, PAGE_BLOCKS):
        store.set_range(first, chunk[:16 * min(PAGE_BLOCKS, nblocks - first)])
    stores.append(store)
assert stores[0].get_range(nblocks - 1, 1) == bytes(range(16))
with open("/proc/self/status") as f:
    print([int(l.split()[1]) for l in f if l.startswith("VmHWM:")][0])
"""


def digest_store_memory(nblocks=32 << 20):
    """Peak RSS of a process feeding the real per-block store 32 Mi non-zero digests (a full
    2 TiB disk) for each of 3 kept nodes."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", DIGEST_STORE_PROBE % (os.path.join(h.REPO, "tests", "unit"), nblocks)],
                          capture_output=True, text=True, check=True)
    kib = int(proc.stdout.strip().splitlines()[-1])
    return {"digest_store_peak_rss_mib_2tib": round(kib / 1024, 1), "digest_store_blocks": nblocks,
            "digest_store_nodes": 3, "digest_store_s": round(time.monotonic() - started, 1)}


# ---- 6. a real host's fixed costs (xapisim --host-profile real) ------------------------------

def tree_of(nodes, revert_every=6):
    """Steps for a tree of ``nodes`` nodes (snapshots and the VM): a write before each
    snapshot, and every ``revert_every`` snapshots a revert to the one three back, so that
    the tree has abandoned branches."""
    steps = []
    for i in range(1, nodes):
        steps += [("write", i), ("snap", "s%d" % i)]
        if i % revert_every == 0:
            steps.append(("revert", "s%d" % (i - 3)))
    return steps + [("write", nodes)]


def charged(pools):
    """What each pool's host profile charged so far: {"source"/"destination": {kind: count}}."""
    return {role: client.host_costs(entry, x)["charged"]
            for role, entry, x in (("source", pools.src, pools.xsrc), ("destination", pools.dst, pools.xdst))}


def charged_during(pools, fn):
    before = charged(pools)
    value = fn()
    after = charged(pools)
    return value, {role: {k: n - before[role].get(k, 0) for k, n in after[role].items() if n != before[role].get(k, 0)}
                   for role in after}


def real_host_tree(pools, nodes=20, size=256 * MiB, fraction=0.01, repeats=REPEATS):
    """A tree of 20 nodes with small deltas (1 % of a 256 MiB disk's blocks per node, CBT) on
    pools with a real host's costs: our data time against the model of the issue, 20 x
    (t_snapshot + t_attach of one import) + t_attach x source VDIs read + bytes / the
    per-connection cap + API latency x calls made, each term from the profile and the counts
    the pools charged during the run."""
    costs = client.host_costs(pools.src, pools.xsrc)["costs"]
    vm = build_snapshots(pools, "bench-real-tree", tree_of(nodes), size, fraction, seed=9)
    runs = []
    for _run in range(repeats):
        h.clear_destination(pools, vm)     # outside the count: only the migration's calls
        r, paid = charged_during(pools, lambda: h.run_mover(pools, vm))
        h.clear_destination(pools, vm)
        model = {"snapshot_and_import_s": nodes * (costs["vdi_snapshot_s"] + costs["attach_s"]),
                 "source_nbd_attach_s": costs["attach_s"] * paid["source"].get("attach_nbd", 0),
                 "bytes_s": r["bytes_written"] / costs["https_bytes_per_s"],
                 "api_latency_s": costs["api_latency_s"] * sum(p.get("calls", 0) for p in paid.values())}
        runs.append({"data_s": r["timings"]["data_s"], "model": model, "model_s": round(sum(model.values()), 3),
                     "charged": paid, "bytes_read": r["bytes_read"], "bytes_written": r["bytes_written"]})
        log("real host tree: %s" % runs[-1])
    h.remove_source_vm(pools, vm)
    ratios = [run["data_s"] / run["model_s"] for run in runs]
    return {"nodes": nodes, "disk_bytes": size, "changed_fraction": fraction, "costs": costs, "runs": runs,
            "tree_ratio": round(median(ratios), 3)}


# a per-connection rate low enough that this machine carries four NBD reads, four HTTPS
# imports and four read-backs at once (2 cores, both pools and the mover on them)
PARALLEL_CAP = 20 * 10 ** 6


def real_host_parallel_disks(pools, disks=4, size=128 * MiB, repeats=REPEATS):
    """A halted VM with 4 equal, fully allocated disks on pools with a real host's costs and a
    per-connection cap of 20 MB/s (NBD and HTTPS): one disk after another (PARALLEL_DISKS = 1)
    against ours, interleaved run by run."""
    x = pools.xsrc
    vm = scenario.create_vm(x, "bench-real-disks", [size] * disks)
    for i, vdi in enumerate(scenario.disks(x, vm).values()):
        h.fill_extents(pools.disk_path(pools.src, x.xenapi.VDI.get_uuid(vdi)), [(0, size)], seed=10 + i)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    sequential, ours = [], []
    for _run in range(repeats):
        sequential.append(h.migrate_once(pools, vm_uuid, parallel_disks=1)["timings"]["data_s"])
        ours.append(h.migrate_once(pools, vm_uuid)["timings"]["data_s"])
        log("real host disks: sequential %.1fs, ours %.1fs" % (sequential[-1], ours[-1]))
    h.remove_source_vm(pools, vm_uuid)
    return {"disks": disks, "disk_bytes": size, "per_connection_cap_bytes_per_s": PARALLEL_CAP,
            "sequential_runs": sequential, "ours_runs": ours,
            "parallel_disks_speedup_4": round(median([a / b for a, b in zip(sequential, ours, strict=True)]), 2)}


# ---- 5. ansible overhead ---------------------------------------------------------------------

def ansible_overhead(pools, workdir, snapshots=10):
    """Wall time of the migrate_vm role (ansible-playbook playbooks/migrate_vm.yml) minus the
    data time its report gives, for a VM with 10 small snapshots (one 16 MiB disk)."""
    x = pools.xsrc
    steps = [s for i in range(snapshots) for s in (("write", "w%d" % i), ("snap", "s%d" % i))]
    vm, dummy = scenario.build_tree(pools.src, x, "bench-overhead", [16 * MiB], steps)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    h.clear_destination(pools, vm_uuid)
    reports = os.path.join(workdir, "reports")
    extra = {"sxm_source": h.pool_vars(pools.src), "sxm_destination": h.pool_vars(pools.dst),
             "sxm_vm": vm_uuid, "sxm_report_dir": reports}
    wall = h.timed_playbook(workdir, "migrate_vm.yml", extra)
    with open(os.path.join(reports, "sxm-%s.json" % vm_uuid)) as f:
        report = json.load(f)
    timings = report["timings"]
    log("ansible: wall %.2fs, timings %s" % (wall, timings))
    return {"snapshots": snapshots, "role_wall_s": round(wall, 3), "timings": timings,
            "ansible_s": round(wall - timings["data_s"], 3),
            "ansible_s_without_verify": round(wall - timings["data_s"] - timings.get("verify_s", 0), 3)}


# ---- 6. warm migration -----------------------------------------------------------------------

GUEST_RATE = 5 * 1000 * 1000          # bytes per second the guest writes (5 MB/s)
GUEST_WRITE = 256 * 1024              # bytes per write: 20 writes a second
WARM_SNAPSHOTS = 5


class GuestWriter(threading.Thread):
    """The guest of a running source VM writing random data at GUEST_RATE, at random 64 KiB
    aligned offsets of its disk, through the simulator's guest-write endpoint; stops when
    told or when the VM stops."""

    def __init__(self, pools, vm_uuid, size, seed):
        super().__init__(daemon=True)
        self.pools, self.vm_uuid, self.size = pools, vm_uuid, size
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.written = 0

    def run(self):
        started = time.monotonic()
        while not self.stopping.is_set():
            offset = self.rng.randrange(0, (self.size - GUEST_WRITE) // BLOCK) * BLOCK
            status, dummy, dummy = client.http_request(
                self.pools.src, "POST", "/xapisim/guest_write",
                {"vm": self.vm_uuid, "userdevice": "0", "offset": str(offset)}, self.pools.xsrc,
                self.rng.randbytes(GUEST_WRITE))
            if status != 200:
                return
            self.written += GUEST_WRITE
            time.sleep(max(0.0, started + self.written / GUEST_RATE - time.monotonic()))


def start_with_tools(pools, vm_uuid):
    x = pools.xsrc
    vm = x.xenapi.VM.get_by_uuid(vm_uuid)
    x.xenapi.VM.start(vm, False, False)
    status, dummy, body = client.http_request(pools.src, "POST", "/xapisim/guest", {"vm": vm_uuid}, x,
                                              json.dumps({"tools": True}).encode())
    if status != 200:
        raise RuntimeError("the simulator refused guest tools: %r" % body)


def warm_once(pools, vm_uuid, size, use_cbt, seed):
    """One warm migration of the running VM while its guest writes; the source is started
    again afterwards for the next run. Returns the mover's result."""
    h.clear_destination(pools, vm_uuid)
    x = pools.xsrc
    if x.xenapi.VM.get_power_state(x.xenapi.VM.get_by_uuid(vm_uuid)) == "Halted":
        start_with_tools(pools, vm_uuid)
    guest = GuestWriter(pools, vm_uuid, size, seed)
    guest.start()
    try:
        time.sleep(1)
        r = h.run_mover(pools, vm_uuid, use_cbt=use_cbt)
    finally:
        guest.stopping.set()
        guest.join(60)
    r["guest_written"] = guest.written
    h.clear_destination(pools, vm_uuid)
    return r


def warm_downtime(pools, sizes=(("2g", 2 * GiB), ("8g", 8 * GiB)), repeats=REPEATS):
    """Downtime of a warm migration (source stop requested -> destination running), the median
    of ``repeats`` runs, for a VM with a tree of 5 snapshots on disks of 2 and 8 GiB (1/16
    allocated in 4 MiB stripes, each snapshot changing 1 % of the blocks) whose guest writes
    5 MB/s throughout: with CBT, and on the same SMAPIv1 pool without it (VHD maps)."""
    out = {}
    steps = [s for i in range(1, WARM_SNAPSHOTS + 1) for s in (("write", i), ("snap", "s%d" % i))] + [("write", 9)]
    for label, size in sizes:
        vm_uuid = build_snapshots(pools, "bench-warm-%s" % label, steps, size, 0.01, seed=11,
                                  extents=h.striped_extents(size, 1 / 16, 4 * MiB))
        start_with_tools(pools, vm_uuid)
        for mode, use_cbt in (("", True), ("_vhd", False)):
            runs = [warm_once(pools, vm_uuid, size, use_cbt, seed=run) for run in range(repeats)]
            key = label + mode
            out["downtime_s_" + key] = median([r["warm"]["downtime_s"] for r in runs])
            out["shutdown_s_" + key] = median([r["warm"]["shutdown_s"] for r in runs])
            out["passes_" + key] = median([len(r["warm"]["passes"]) for r in runs])
            out["final_delta_bytes_" + key] = median([r["warm"]["final_delta_bytes"] for r in runs])
            out["runs_" + key] = [{"downtime_s": r["warm"]["downtime_s"], "passes": r["warm"]["passes"],
                                   "final_delta_bytes": r["warm"]["final_delta_bytes"],
                                   "guest_written": r["guest_written"], "data_s": r["timings"]["data_s"],
                                   "delta_sources": r["delta_sources"]} for r in runs]
            log("warm %s: downtime %s s, %s passes, last delta %s bytes" % (
                key, out["downtime_s_" + key], out["passes_" + key], out["final_delta_bytes_" + key]))
        h.remove_source_vm(pools, vm_uuid)
    for mode in ("", "_vhd"):
        out["downtime_growth_s" + mode] = round(out["downtime_s_8g" + mode] - out["downtime_s_2g" + mode], 3)
    out["guest_bytes_per_s"] = GUEST_RATE
    return out


# ---- 8. fleets -------------------------------------------------------------------------------

FLEET_CAP = 10 * 10 ** 6      # bytes/s per connection: four streams at once fit this machine


def evacuation_wall(pools, workdir, vms, concurrency):
    """Wall seconds of ``playbooks/evacuate.yml`` moving ``vms`` (their uuids) at ``concurrency``,
    the whole playbook (plan, every VM's role, report); the destination is cleared after."""
    reports = os.path.join(workdir, "fleet-reports-c%d" % concurrency)
    extra = {"sxm_source": h.pool_vars(pools.src), "sxm_destination": h.pool_vars(pools.dst),
             "sxm_evacuate_vms": vms, "sxm_concurrency": concurrency, "sxm_report_dir": reports,
             "sxm_evacuation_name": "bench-c%d" % concurrency}
    wall = h.timed_playbook(workdir, "evacuate.yml", extra, "-f", str(max(5, concurrency)))
    with open(os.path.join(reports, "sxm-bench-c%d.json" % concurrency)) as f:
        report = json.load(f)
    if report["counts"] != {"migrated": len(vms)}:
        raise RuntimeError("the evacuation at %d did not migrate every VM: %s" % (concurrency, report["counts"]))
    for uuid in vms:
        h.clear_destination(pools, uuid)
    return wall, report


def fleet_throughput(pools, workdir, vms=8, size=512 * MiB, levels=(1, 2, 4)):
    """The same 8 halted VMs (one fully allocated disk each, on the two hosts' local SRs) evacuated
    with playbooks/evacuate.yml at concurrency 1, 2 and 4, on pools with a real host's costs and
    a per-connection cap of 10 MB/s: aggregate MiB/s (the VMs' bytes over the playbook's wall
    time) and the speedup of 4 at once over one at a time."""
    x = pools.xsrc
    hosts = sorted(x.xenapi.host.get_all(), key=x.xenapi.host.get_name_label)
    uuids = []
    for i in range(vms):
        sr = next(s for s in (x.xenapi.PBD.get_SR(p) for p in x.xenapi.host.get_PBDs(hosts[i % len(hosts)]))
                  if x.xenapi.SR.get_type(s) == "ext")
        vm = scenario.create_vm(x, "bench-fleet-%d" % i, [size], sr=sr)
        vdi = list(scenario.disks(x, vm).values())[0]
        h.fill_extents(pools.disk_path(pools.src, x.xenapi.VDI.get_uuid(vdi)), [(0, size)], seed=40 + i)
        x.xenapi.SR.scan(sr)
        uuids.append(x.xenapi.VM.get_uuid(vm))
    out = {"vms": vms, "disk_bytes": size, "per_connection_cap_bytes_per_s": FLEET_CAP, "hosts": len(hosts)}
    for level in levels:
        wall, report = evacuation_wall(pools, workdir, uuids, level)
        out["wall_s_c%d" % level] = round(wall, 1)
        out["throughput_mib_s_c%d" % level] = round(vms * size / float(MiB) / wall, 2)
        log("fleet: concurrency %d, %.1f s, %.1f MiB/s" % (level, wall, out["throughput_mib_s_c%d" % level]))
    out["speedup_c4"] = round(out["throughput_mib_s_c4"] / out["throughput_mib_s_c1"], 2)
    for uuid in uuids:
        h.remove_source_vm(pools, uuid)
    return out

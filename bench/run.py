"""``make bench``: the benchmarks of issues #4, #10 and #13 against simulated pools, in one run.

Writes bench/results.json and the table of docs/performance.md. ``--quick`` runs every
scenario on disks 16 times smaller, once, and writes build/bench/results-quick.json only (to
check the harness, not to quote).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as h  # noqa: E402
import report  # noqa: E402
import scenarios as s  # noqa: E402
from harness import GiB  # noqa: E402

WORKDIR = os.path.join(h.REPO, "build", "bench")
RESULTS = os.path.join(h.REPO, "bench", "results.json")
DOC = os.path.join(h.REPO, "docs", "performance.md")
ALL = ("full_copy", "sparse", "trees", "memory", "overhead", "warm", "real_host", "fleet")


def commit():
    """The commit measured (with "+changes" when the working tree differs from it)."""
    import subprocess
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=h.REPO, capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=h.REPO,
                           capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def run(only, scale, repeats):
    results = {"machine": h.machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "scale": scale, "repeats": repeats,
               # other work on the machine slows every figure: say how busy it was
               "load_average_at_start": list(os.getloadavg()), "commit": commit()}
    t0 = time.monotonic()
    with h.Pools(os.path.join(WORKDIR, "pools")) as pools:
        if "sparse" in only:
            # both pool sets at once, so that the three ways of reading interleave run by run
            with h.Pools(os.path.join(WORKDIR, "pools-block-status"), block_status=True) as pools_bs:
                results["sparse"] = s.sparse(pools_bs, pools, WORKDIR, size=16 * GiB // scale, repeats=repeats)
        if "full_copy" in only:
            results["full_copy"] = s.full_copy(pools, WORKDIR, size=4 * GiB // scale, repeats=repeats)
        if "trees" in only:
            trees = s.snapshot_trees(pools, size=2 * GiB // scale)
            results.update(trees)
            results.update(s.clustered_trees(pools, size=2 * GiB // scale))
        if "memory" in only:
            results["memory"] = s.peak_memory(pools, sizes=(("1g", 1 * GiB // scale), ("8g", 8 * GiB // scale),
                                                            ("16g", 16 * GiB // scale)))
            results["memory"].update(s.digest_store_memory((32 << 20) // scale))
            results["memory"].update(s.peak_memory_tree(pools, size=64 * GiB // scale))
        if "overhead" in only:
            results["overhead"] = s.ansible_overhead(pools, WORKDIR)
        if "warm" in only:
            results["warm"] = s.warm_downtime(pools, sizes=(("2g", 2 * GiB // scale), ("8g", 8 * GiB // scale)),
                                              repeats=repeats)
    if "real_host" in only:
        results["real_host"] = {}
        with h.Pools(os.path.join(WORKDIR, "pools-real"), host_profile="real") as pools:
            results["real_host"].update(s.real_host_tree(pools, size=256 * s.MiB // scale, repeats=repeats))
        caps = ["nbd_bytes_per_s=%d" % s.PARALLEL_CAP, "https_bytes_per_s=%d" % s.PARALLEL_CAP]
        with h.Pools(os.path.join(WORKDIR, "pools-real-capped"), host_profile="real", host_costs=caps) as pools:
            results["real_host"]["disks"] = s.real_host_parallel_disks(pools, size=128 * s.MiB // scale,
                                                                      repeats=repeats)
            results["real_host"]["parallel_disks_speedup_4"] = results["real_host"]["disks"]["parallel_disks_speedup_4"]
    if "fleet" in only:
        caps = ["nbd_bytes_per_s=%d" % s.FLEET_CAP, "https_bytes_per_s=%d" % s.FLEET_CAP]
        with h.Pools(os.path.join(WORKDIR, "pools-fleet"), host_profile="real", host_costs=caps, hosts=2) as pools:
            results["fleet"] = s.fleet_throughput(pools, WORKDIR, size=512 * s.MiB // scale)
    results["bench_wall_s"] = round(time.monotonic() - t0, 1)
    results["load_average_at_end"] = list(os.getloadavg())
    results["thresholds"] = report.thresholds(results)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="disks 16x smaller, one run each")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated: " + ", ".join(ALL))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    unknown = only - set(ALL)
    if unknown:
        parser.error("unknown scenario(s): %s" % ", ".join(sorted(unknown)))
    os.makedirs(WORKDIR, exist_ok=True)
    scale, repeats = (16, 1) if args.quick else (1, s.REPEATS)
    results = run(only, scale, repeats)
    full = not args.quick and only == set(ALL)
    out = RESULTS if full else os.path.join(WORKDIR, "results-quick.json" if args.quick else "results-partial.json")
    with open(out + ".tmp", "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    os.replace(out + ".tmp", out)
    if full:
        report.write_doc(results, DOC)
    print(report.table(results))
    print("results: %s" % os.path.relpath(out, h.REPO))
    failed = [t for t in results["thresholds"] if t["ok"] is False]
    for t in failed:
        print("ABOVE THRESHOLD: %s = %s (the issue wants %s)" % (t["key"], t["value"], t["want"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

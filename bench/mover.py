"""The process that moves data in a benchmark: one ``migrate.migrate`` call, as the vm_migrate
module makes it, in a process of its own so that its peak memory is its own.

Reads a JSON spec on stdin (credentials stay out of the process list):
``{"source": <pools.json entry>, "destination": <entry>, "vm": uuid, "use_cbt": bool,
"use_vhd_maps": bool, "verify": bool, "verify_depth": "sample" or "full", "parallel_disks": int or
null (migrate.PARALLEL_DISKS; 1 = one disk after another, the baseline of the real-host
scenario)}``;
prints one JSON line: the result's byte counts and timings plus
``peak_rss_kib`` (VmHWM of this process, read at its end).
"""

import json
import os
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
import conftest  # noqa: E402,F401  (puts build/collections on sys.path, as the unit tests do)

from ansible_collections.xapi.sxm.plugins.module_utils import migrate, xapi  # noqa: E402


def connection(entry):
    return xapi.Connection(entry["url"], entry["username"], entry["password"], ca_path=entry["ca_file"])


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def main():
    spec = json.load(sys.stdin)
    if spec.get("parallel_disks"):
        migrate.PARALLEL_DISKS = spec["parallel_disks"]
    started = time.monotonic()
    with connection(spec["source"]) as src, connection(spec["destination"]) as dst:
        options = migrate.Options(spec["vm"], use_cbt=spec.get("use_cbt", True),
                                  use_vhd_maps=spec.get("use_vhd_maps", True),
                                  verify=spec.get("verify", False), verify_depth=spec.get("verify_depth", "sample"))
        result = migrate.migrate(src, dst, options)
    out = {key: result.get(key) for key in ("bytes_read", "bytes_written", "walk_minimum_bytes",
                                           "walk_minimum_2m_bytes", "edge_minimum_bytes", "written_read_back_bytes",
                                           "verify_bytes_read", "verify_depth", "timings", "message",
                                           "warm", "downtime_s")}
    out["delta_sources"] = {}
    for disk in result.get("disks", []):
        for name, count in disk.get("delta_sources", {}).items():
            out["delta_sources"][name] = out["delta_sources"].get(name, 0) + count
    out["wall_s"] = round(time.monotonic() - started, 3)
    out["peak_rss_kib"] = peak_rss_kib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)   # this process, all its threads
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

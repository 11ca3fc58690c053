"""``make demo``: start two simulated pools, build a VM with a branched snapshot tree through
the public API on the first, print that tree, and stop the pools.

Until the migration roles exist this shows the testbed the product is built against."""

import json
import os
import subprocess
import sys
import tempfile

from . import client, scenario


def main():
    state_dir = tempfile.mkdtemp(prefix="xapisim-demo-")
    up = subprocess.run([sys.executable, "-m", "xapisim", "up", "--state-dir", state_dir,
                         "--pools", "2"], capture_output=True, text=True)
    if up.returncode:
        sys.stderr.write(up.stderr)
        return up.returncode
    try:
        with open(os.path.join(state_dir, "pools.json")) as f:
            pools = json.load(f)["pools"]
        for pool in pools:
            print("pool %s at %s (TLS verified with %s)" % (pool["name"], pool["url"], pool["ca_file"]))
        x = client.login(pools[0])
        try:
            print("\nBuilding demo-vm on %s: two disks, five writes, four snapshots, one revert..."
                  % pools[0]["name"])
            vm = scenario.build_branched_tree(pools[0], x)
            print("\nSnapshot tree of demo-vm ('*' = active path, the VM hangs under the "
                  "snapshot it continues from):\n")
            for line in scenario.tree_lines(x, vm):
                print("  " + line)
            print()
        finally:
            x.xenapi.session.logout()
    finally:
        subprocess.run([sys.executable, "-m", "xapisim", "down", "--state-dir", state_dir],
                       check=False)
    print("pools stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m xapisim up|down|serve|fault|status --state-dir DIR``.

``up`` starts the pools in a background process and returns once every pool answers a login;
``down`` stops that process and everything it started (NBD servers included).
"""

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

from . import host_profile, simctl


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def read_pid(state_dir):
    try:
        with open(os.path.join(state_dir, "xapisim.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pools_answer(state_dir):
    path = os.path.join(state_dir, "pools.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        pools = json.load(f)["pools"]
    for p in pools:
        ctx = ssl.create_default_context(cafile=p["ca_file"])
        body = ("<?xml version='1.0'?><methodCall><methodName>session.login_with_password"
                "</methodName><params><param><value>%s</value></param><param><value>%s</value>"
                "</param></params></methodCall>" % (p["username"], p["password"])).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(p["url"], data=body), context=ctx,
                                        timeout=5) as r:
                if b"Success" not in r.read():
                    return False
        except OSError:
            return False
    return True


def up(args):
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    pid = read_pid(state_dir)
    if pid and pid_alive(pid) and pools_answer(state_dir):
        print(os.path.join(state_dir, "pools.json"))
        return 0
    try:
        os.unlink(os.path.join(state_dir, "pools.json"))
    except FileNotFoundError:
        pass
    log = open(os.path.join(state_dir, "xapisim.log"), "ab")
    cmd = [sys.executable, "-m", "xapisim", "serve", "--state-dir", state_dir,
           "--pools", str(args.pools), "--hosts", str(args.hosts)]
    if args.block_status:
        cmd.append("--block-status")
    cmd += ["--host-profile", args.host_profile] + ["--host-cost=%s" % c for c in args.host_cost]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.stderr.write("xapisim: the pools did not start; see %s\n"
                             % os.path.join(state_dir, "xapisim.log"))
            return 1
        if pools_answer(state_dir):
            print(os.path.join(state_dir, "pools.json"))
            return 0
        time.sleep(0.2)
    proc.terminate()
    sys.stderr.write("xapisim: the pools did not answer within %ss\n" % args.timeout)
    return 1


def down(args):
    state_dir = os.path.abspath(args.state_dir)
    pid = read_pid(state_dir)
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    simctl.kill_leftovers(state_dir)
    for name in ("xapisim.pid", "pools.json"):
        try:
            os.unlink(os.path.join(state_dir, name))
        except FileNotFoundError:
            pass
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="xapisim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", required=True)
        p.add_argument("--pools", type=int, default=1)
        p.add_argument("--hosts", type=int, default=1,
                       help="hosts per pool, each with its own address, local SR and NBD server")
        p.add_argument("--block-status", action="store_true",
                       help="NBD servers offer block status and multi-conn (XAPI's do not)")
        p.add_argument("--host-profile", default="instant", choices=sorted(host_profile.PROFILES),
                       help="charge a real host's fixed costs (docs/xapisim.md): attaches, snapshots, "
                            "API latency, per-connection data rates")
        p.add_argument("--host-cost", action="append", default=[], metavar="NAME=VALUE",
                       help="override one cost of the profile")
        p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("down")
    p.add_argument("--state-dir", required=True)
    p = sub.add_parser("fault", help="inject a fault (JSON, see xapisim/faults.py)")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--pool", type=int, default=0)
    p.add_argument("spec")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args)
    if args.command == "down":
        return down(args)
    if args.command == "serve":
        return simctl.serve(os.path.abspath(args.state_dir), args.pools, args.block_status,
                            host_profile.parse(args.host_profile, args.host_cost), args.hosts)
    if args.command == "fault":
        return simctl.inject_fault_cli(os.path.abspath(args.state_dir), args.pool, json.loads(args.spec))
    return 2


if __name__ == "__main__":
    sys.exit(main())

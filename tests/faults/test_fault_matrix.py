"""Issue 12: the fault matrix. For every step of the flow a fault is injected into the
simulated pools (a failed XAPI call, a dropped NBD connection, a failed and a cut HTTP import,
a pool restart) or a process is killed (SIGKILL of the controller or of the module, at seeded
moments); then the same playbook is run again. Every case must end with the destination tree
and its bytes equal to the source's, the source unchanged (but for the disposition asked for),
and nothing left: objects, pending tasks, lock keys and live sessions on either pool, entries
in ~/.ansible/tmp and ~/.ansible_async, files or command lines holding a secret.

`make test-faults` runs every case; `make test` runs those marked quick. Each case's outcome
goes to tests/output/fault-matrix.json, and a table of them is printed at the end."""

import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid

import pytest
from xapisim import client, scenario
from xapisim.testing import set_guest, xapisim

from ansible_dirs import ansible_async_dir, ansible_tmp_dir
from checks import (assert_memory_images, assert_migrated, assert_nothing_left_behind, disks_by_node, inventory,
                    snapshot_tree)
from harness import REPO, pool_vars
from test_locks import module_pids
from test_secrets import leaks, start
from guest import Guest

sys.path.insert(0, os.path.join(REPO, "build", "collections"))

from ansible_collections.xapi.sxm.plugins.module_utils.lock import lock_keys  # noqa: E402

MiB = 1 << 20
SEED = int(os.environ.get("SXM_FAULT_SEED", "12"))
ORPHAN_TIMEOUT = 6
LOCK_TIMEOUT = 6
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"),
        ("write", "c"), ("snap", "s3"), ("write", "d")]
ERROR = ["INTERNAL_ERROR", "injected by the fault matrix"]


def call(pool, method, nth=1):
    return ("fault", pool, {"kind": "call", "method": method, "nth": nth, "count": 1, "error": ERROR})


# (name, step, fault, disposition, quick)
CASES = [
    ("preflight: SR.get_record fails", "preflight", call(1, "SR.get_record"), "keep", True),
    ("discovery: VM.get_all_records_where fails", "discovery", call(0, "VM.get_all_records_where"), "keep", True),
    ("working disk: VDI.create fails", "transfer", call(1, "VDI.create"), "keep", True),
    ("second node: VDI.snapshot fails", "transfer", call(1, "VDI.snapshot", 2), "keep", True),
    ("third node: VDI.snapshot fails", "transfer", call(1, "VDI.snapshot", 3), "keep", False),
    ("markers: VDI.add_to_other_config fails", "markers", call(1, "VDI.add_to_other_config", 3), "keep", True),
    ("after the import: VM.get_blocked_operations fails", "metadata import",
     call(1, "VM.get_blocked_operations"), "keep", True),
    ("fix-ups: VDI.set_snapshot_time fails", "fix-ups", call(1, "VDI.set_snapshot_time", 2), "keep", True),
    ("verify: VDI.get_nbd_info fails on the destination", "verify", call(1, "VDI.get_nbd_info"), "keep", False),
    ("cut-over: VM.remove_from_blocked_operations fails", "cut-over",
     call(1, "VM.remove_from_blocked_operations"), "keep", True),
    ("disposition block: VM.add_to_blocked_operations fails", "disposition",
     call(0, "VM.add_to_blocked_operations"), "block", True),
    ("disposition destroy: VM.destroy fails", "disposition", call(0, "VM.destroy"), "destroy", False),
    ("NBD connection dropped", "transfer", ("fault", 0, {"kind": "nbd_drop", "after_bytes": 1 * MiB}), "keep", True),
    ("HTTP import fails", "transfer", ("fault", 1, {"kind": "import_fail", "after_bytes": 200000}), "keep", False),
    ("HTTP import cut", "transfer", ("fault", 1, {"kind": "import_fail", "after_bytes": 200000, "cut": True}),
     "keep", False),
    ("pool restart during the copy", "transfer", ("restart", None, None), "keep", False),
]
rng = random.Random(SEED)
for index in range(20):
    who = "controller" if index % 2 == 0 else "module"
    CASES.append(("SIGKILL of the %s at %.1f s" % (who, 0), "kill", ("kill", who, round(rng.uniform(1.0, 9.0), 1)),
                  "keep", False))
# (name, step, fault, disposition, quick, the VM): a running VM moves warm while its guest writes,
# a suspended one cold with its memory images
CASES = [case + ("halted",) for case in CASES] + [
    ("warm pass: the transient VDI.snapshot fails", "warm pass", call(0, "VDI.snapshot", 1), "keep", False, "running"),
    ("warm: a transient snapshot's VDI.destroy fails", "warm pass", call(0, "VDI.destroy", 1), "keep", False,
     "running"),
    ("memory image: its VDI.create fails", "transfer", call(1, "VDI.create", 3), "keep", False, "suspended"),
]
for index in range(6):
    CASES.append(("SIGKILL of the %s at 0.0 s, running VM" % ("controller" if index % 2 == 0 else "module"), "kill",
                  ("kill", "controller" if index % 2 == 0 else "module", round(rng.uniform(1.0, 12.0), 1)),
                  "keep", False, "running"))
CASES.append(("SIGKILL of the module at 0.0 s, suspended VM", "kill",
              ("kill", "module", round(rng.uniform(1.0, 6.0), 1)), "keep", False, "suspended"))
CASES = [(name.replace(" at 0.0 s", " at %.1f s" % fault[2]) if fault[0] == "kill" else name,
          step, fault, disposition, quick, kind) for name, step, fault, disposition, quick, kind in CASES]


def post_fault(pool, x, spec):
    x.xenapi.pool.get_all()
    status, dummy, body = client.http_request(pool, "POST", "/xapisim/faults", session=x,
                                              body=json.dumps(spec).encode())
    assert status == 200, body


def live_sessions(pool):
    """Sessions the collection opened (originator xapi.sxm) that still exist on the pool."""
    with open(os.path.join(pool["state_dir"], "db.json")) as f:
        sessions = json.load(f)["tables"].get("session", {})
    return sum(1 for rec in sessions.values() if rec.get("originator") == "xapi.sxm")


def new_entries(folder, before):
    try:
        return sorted(set(os.listdir(folder)) - before)
    except FileNotFoundError:
        return []


def payload_dirs():
    return {name for name in listing(tempfile.gettempdir()) if name.startswith("ansible_xapi.sxm.")}


def listing(folder):
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def source_state(x, vm_uuid):
    """The source as a user sees it: objects, and the VM's and snapshots' records that matter."""
    vm = x.xenapi.VM.get_by_uuid(vm_uuid)
    records = {}
    for owner in [vm] + x.xenapi.VM.get_snapshots(vm):
        rec = x.xenapi.VM.get_record(owner)
        records[rec["uuid"]] = (rec["name_label"], rec["power_state"], sorted(rec["blocked_operations"]),
                                sorted(rec["tags"]), str(rec["snapshot_time"]))
    return inventory(x), records


def tree_and_bytes(x, vm_uuid):
    """The tree and every disk's digest, read over NBD: to compare a destination with a source
    that a `destroy` removed."""
    vm = x.xenapi.VM.get_by_uuid(vm_uuid)
    digests = {node: {device: client.nbd_digest(x, vdi) for device, vdi in devices.items()}
               for node, devices in disks_by_node(x, vm).items()}
    return snapshot_tree(x, vm), digests


COMPOSITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "composite.yml")


def run_to_end(variables, tmp_path, timeout=300, playbook=None):
    run = start(variables, tmp_path, playbook)
    code = run.wait(timeout)
    return code, open(run.log).read()


def assert_guest_records_arrived(y, vm_uuid, guest):
    """Every record the guest of a running VM wrote and the pool acknowledged is on the
    destination's disk, at its offset."""
    if guest is None:
        return
    d_vm = y.xenapi.VM.get_by_uuid(vm_uuid)
    leaves = disks_by_node(y, d_vm)[vm_uuid]
    contents = {device: b"".join(client.nbd_chunks(y, vdi)) for device, vdi in leaves.items()}
    assert guest.acknowledged, "the guest wrote nothing"
    for device, offset, data in guest.acknowledged:
        assert contents[device][offset:offset + len(data)] == data, "record at %d of disk %s" % (offset, device)


def restart_pools(state_dir):
    xapisim("down", "--state-dir", state_dir)
    xapisim("up", "--state-dir", state_dir, "--pools", "2")


def make_vm(pools, x, size, kind):
    """The case's VM: halted; running with a checkpoint, its guest writing (a Guest, started);
    or suspended with a checkpoint. Returns (VM ref, guest or None)."""
    vm, dummy = scenario.build_tree(pools[0], x, "faults-%s" % uuid.uuid4().hex[:6], size, TREE)
    if kind == "halted":
        return vm, None
    x.xenapi.VM.start(vm, False, False)
    set_guest(pools[0], x, vm, tools=True, ack_timeout=1)
    x.xenapi.VM.checkpoint(vm, "with memory")
    if kind == "suspended":
        x.xenapi.VM.suspend(vm)
        return vm, None
    guest = Guest(pools[0], x, vm, size, interval=0.05)
    guest.start()
    return vm, guest


@pytest.mark.parametrize("name, step, fault, disposition, quick, vm_kind",
                         [pytest.param(*c, id=c[0], marks=[pytest.mark.quick] if c[4] else []) for c in CASES])
def test_fault_then_rerun(name, step, fault, disposition, quick, vm_kind, pools, state_dir, connect, tmp_path, request):
    x, y = connect(0), connect(1)
    size = [8 * MiB, 4 * MiB] if fault[0] in ("kill", "restart") else [2 * MiB, 1 * MiB]
    vm, guest = make_vm(pools, x, size, vm_kind)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    before_src, before_dst = source_state(x, vm_uuid), inventory(y)
    expected = tree_and_bytes(x, vm_uuid) if disposition == "destroy" else None
    tmp_dir, async_dir = ansible_tmp_dir(), ansible_async_dir()
    before_tmp, before_async = listing(tmp_dir), listing(async_dir)
    before_sessions = live_sessions(pools[0]) + live_sessions(pools[1])
    before_payloads = payload_dirs()
    since = time.time() - 1
    report_dir = str(tmp_path / "reports")
    variables = {"sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]), "sxm_vm": vm_uuid,
                 "sxm_report_dir": report_dir, "sxm_source_disposition": disposition,
                 "sxm_orphan_timeout": ORPHAN_TIMEOUT, "sxm_lock_timeout": LOCK_TIMEOUT}
    kind, where, spec = fault
    first = None
    # the quick cases (make test) run the flow as one task; the others the role
    playbook = COMPOSITE if quick else None
    if kind == "fault":
        post_fault(pools[where], [x, y][where], spec)
        first, dummy = run_to_end(variables, tmp_path, playbook=playbook)
    elif kind == "restart":
        run = start(dict(variables, sxm_bandwidth_limit=4 * MiB), tmp_path)
        deadline = time.monotonic() + 60
        while not module_pids(run.tag) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        restart_pools(state_dir)
        first = run.wait(300)
        x, y = connect(0), connect(1)
    else:
        run = start(dict(variables, sxm_bandwidth_limit=4 * MiB), tmp_path)
        time.sleep(spec)
        if where == "controller":
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            # an Ansible worker that was launching the async step goes on launching it: wait
            # until no module of the run has been seen for a few seconds
            deadline, quiet_since = time.monotonic() + ORPHAN_TIMEOUT + 40, time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - quiet_since < 4:
                if module_pids(run.tag, wrapper_too=True):
                    quiet_since = time.monotonic()
                time.sleep(0.2)
        else:
            for pid in module_pids(run.tag, name="vdi_mirror") + module_pids(run.tag, name="migration_verify"):
                os.kill(pid, signal.SIGKILL)
            run.wait(300)
            time.sleep(LOCK_TIMEOUT + 1)     # the dead holder's lock ages out
        first = run.returncode
    for pool, session in ((pools[0], x), (pools[1], y)):
        post_fault(pool, session, {"kind": "clear"})
    code, output = run_to_end(variables, tmp_path, playbook=playbook)
    if guest is not None:
        guest.stopping.set()
        guest.join(30)
    assert code == 0, "the re-run failed after %s:\n%s" % (name, output[-4000:])

    row = {"case": name, "step": step, "first_run": "failed" if first else "finished", "rerun": "finished"}
    if disposition == "destroy":
        assert tree_and_bytes(y, vm_uuid)[1] == expected[1]
        assert set(snapshot_tree(y, y.xenapi.VM.get_by_uuid(vm_uuid))) == set(expected[0])
    else:
        assert_migrated(x, y, vm_uuid)
    row["byte_mismatches"] = 0
    if vm_kind == "suspended":
        assert_memory_images(x, y, vm_uuid)
    assert_guest_records_arrived(y, vm_uuid, guest)
    if vm_kind == "running":
        # moved warm: the source stopped, nothing else changed (no transient snapshot is left)
        assert x.xenapi.VM.get_power_state(vm) == "Halted"
        left = inventory(x)
        assert left == before_src[0], [r["name_label"] for r in x.xenapi.VDI.get_all_records().values()
                                       if r["uuid"] in left[1] ^ before_src[0][1]]
        assert y.xenapi.VM.get_power_state(y.xenapi.VM.get_by_uuid(vm_uuid)) == "Running"
    elif disposition == "keep":
        assert source_state(x, vm_uuid) == before_src
    elif disposition == "block":
        assert "start" in x.xenapi.VM.get_blocked_operations(x.xenapi.VM.get_by_uuid(vm_uuid))
        assert inventory(x) == before_src[0]
    else:
        assert vm_uuid not in inventory(x)[0]
    row["source_changes"] = 0
    assert_nothing_left_behind(y, vm_uuid, before_dst)
    # async_wrapper removes its folder in ~/.ansible/tmp just after it recorded the result
    # and a module that failed removes its extracted payload just after it answered
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ([e for e in new_entries(tmp_dir, before_tmp)
                                            if not e.startswith("ansible-local-")] or payload_dirs() - before_payloads):
        time.sleep(0.2)
    pending = [t for t in x.xenapi.task.get_all_records().values() if t["status"] == "pending"]
    locks = lock_keys(y.xenapi.pool.get_other_config(y.xenapi.pool.get_all()[0]), vm_uuid)
    row.update(
        leftover_objects=0, pending_tasks=len(pending), lock_keys=len(locks),
        sessions=live_sessions(pools[0]) + live_sessions(pools[1]) - before_sessions,
        # a module's payload and arguments live in ansible-tmp-*; ansible-local-* is the code
        # cache a killed ansible-playbook leaves, removed by the next run (plugin_utils/local_tmp.py)
        ansible_tmp=len([e for e in new_entries(tmp_dir, before_tmp) if not e.startswith("ansible-local-")]),
        ansible_local_caches=len([e for e in new_entries(tmp_dir, before_tmp) if e.startswith("ansible-local-")]),
        # AnsiballZ's extracted code of a module killed before its cleanup: its guardian removes it
        payload_dirs=len(payload_dirs() - before_payloads),
        # every result file the case's runs left: also a killed module's crash record, which names no VM
        ansible_async=len(new_entries(async_dir, before_async)),
        secrets=len(leaks(pools, state_dir, since, report_dir)))
    request.node.user_properties.append(("fault_matrix_row", row))
    # a SIGKILLed module's sessions are logged out by its guardian (session_guard.py)
    assert (row["pending_tasks"], row["lock_keys"], row["sessions"], row["ansible_tmp"], row["ansible_local_caches"],
            row["payload_dirs"], row["ansible_async"], row["secrets"]) == (0, 0, 0, 0, 0, 0, 0, 0), row

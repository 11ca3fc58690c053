"""Issue 12: no pool password and no session ref is readable, at any moment of a run or after
a kill, in files under the home directory, /tmp, Ansible's remote and async folders and the
report folder, nor on any process's command line or in its environment. The passwords reach
the playbook through a FIFO (never a file at rest), as a vault or a prompt would; the
simulated pools' own state (their config and database) plays the pool side and is not looked
at, nor are the simulator's processes."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from ansible_dirs import ansible_async_dir
from checks import assert_migrated
from harness import REPO, pool_vars
from test_locks import LOCK_TIMEOUT, ORPHAN_TIMEOUT, module_pids, slow_vm, wait_for

MiB = 1 << 20
HOME = os.path.expanduser("~")
MAX_SCANNED = 4 * MiB     # what holds arguments is small: payloads, vars, logs, results
TOOL_DIRS = (".cache", ".npm", ".pyenv", ".cargo", ".rustup", ".local", ".m2", ".gradle", ".nvm", ".node-gyp")


def pool_secrets(pools, state_dir):
    """Every password of both pools and every session ref their databases hold now."""
    found = set()
    for pool in pools:
        found.update((pool["password"], pool["pool_admin"]["password"]))
        try:
            with open(os.path.join(pool["state_dir"], "db.json")) as f:
                found.update(json.load(f)["tables"].get("session", {}))
        except (OSError, ValueError):
            pass
    return {s for s in found if s}


def regular_files(roots, since, skip):
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in skip]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if (st.st_mode & 0o170000) == 0o100000 and st.st_mtime >= since and st.st_size <= MAX_SCANNED:
                    yield path


def simulator_pids(state_dir):
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    if state_dir.encode() in f.read():
                        pids.add(entry)
            except OSError:
                pass
    # nbdkit and its plugin run as children of the simulator
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if f.read().rsplit(")", 1)[1].split()[1] in pids:
                        pids.add(entry)
            except OSError:
                pass
    return pids


def leaks(pools, state_dir, since, report_dir):
    """Where any secret can be read: files (changed since ``since``) and processes."""
    secrets = pool_secrets(pools, state_dir)
    found = []
    roots = [HOME, "/tmp", report_dir, ansible_async_dir()]
    # toolchains and caches that a run never writes (walking them costs seconds)
    skip = {state_dir} | {os.path.join(HOME, d) for d in TOOL_DIRS}
    for path in set(regular_files([r for r in roots if os.path.isdir(r)], since, skip)):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        found += ["%s holds %s" % (path, kind(s)) for s in secrets if s.encode() in data]
    mine = simulator_pids(state_dir)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry in mine:
            continue
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%s/%s" % (entry, what), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            found += ["process %s %s holds %s" % (entry, what, kind(s)) for s in secrets if s.encode() in data]
    return found


def kind(secret):
    return "a session ref" if secret.startswith("OpaqueRef:") else "a password"


def start(variables, tmp_path, playbook=None):
    """ansible-playbook in the background, its variables written into a FIFO it reads."""
    fifo = str(tmp_path / ("vars-%s.json" % uuid.uuid4().hex[:6]))
    os.mkfifo(fifo, 0o600)
    log = open(tmp_path / ("run-%s.log" % uuid.uuid4().hex[:6]), "w")
    tag = uuid.uuid4().hex
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               SXM_TEST_RUN=tag)
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                             playbook or os.path.join(REPO, "playbooks", "migrate_vm.yml"), "-e", "@%s" % fifo],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def feed():
        with open(fifo, "w") as f:
            f.write(json.dumps(variables))
    threading.Thread(target=feed, daemon=True).start()
    proc.log, proc.tag = log.name, tag
    return proc


def test_no_secret_on_disk_or_on_any_command_line(pools, state_dir, connect, tmp_path):
    x, y = connect(0), connect(1)
    vm_uuid = slow_vm(pools, x)
    report_dir = str(tmp_path / "reports")
    variables = {"sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]), "sxm_vm": vm_uuid,
                 "sxm_report_dir": report_dir, "sxm_bandwidth_limit": 2 * MiB,
                 "sxm_orphan_timeout": ORPHAN_TIMEOUT, "sxm_lock_timeout": LOCK_TIMEOUT}
    since = time.time() - 1
    moments = {}

    def look(moment):
        moments[moment] = leaks(pools, state_dir, since, report_dir)

    # 1. killed controller: looked at 2 s after the start, during the copy, after the kill,
    #    and once the orphaned module stopped itself
    run = start(variables, tmp_path)
    time.sleep(2)
    look("2 s after the start")
    wait_for(lambda: module_pids(run.tag), 60, "the copy")
    time.sleep(1)
    look("during the copy")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    look("after SIGKILL of the controller")
    wait_for(lambda: not module_pids(run.tag), ORPHAN_TIMEOUT + 30, "the orphan to stop")
    look("after the orphaned module stopped")

    # 2. killed module: the waiting controller sees it die
    run = start(variables, tmp_path)
    pids = wait_for(lambda: module_pids(run.tag), 60 + LOCK_TIMEOUT, "the second copy")
    time.sleep(1)
    look("during the second copy")
    os.kill(pids[0], signal.SIGKILL)
    look("after SIGKILL of the module")
    assert run.wait(120) != 0, open(run.log).read()[-3000:]
    look("after the controller saw the module die")

    # 3. the re-run that finishes, once the killed module's lock has aged out
    time.sleep(LOCK_TIMEOUT + 2)
    run = start(dict(variables, sxm_bandwidth_limit=0), tmp_path)
    assert run.wait(300) == 0, open(run.log).read()[-3000:]
    look("after the run that finished")
    assert_migrated(x, y, vm_uuid)
    assert {m: found for m, found in moments.items() if found} == {}
    assert len(moments) == 8

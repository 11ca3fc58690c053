"""What every benchmark scenario needs: simulated pools, VMs with big disks, our migration in a
child process, and the two baselines of the pipeline (``nbdcopy`` to ``null:`` and ``curl``
uploading a chunked import).

Big disks are filled by writing the SOURCE VDI's backing file (``<pool dir>/disks/<uuid>.raw``,
a sparse raw file) directly: it is the simulator's store, and pushing gigabytes through the
import handler would only make the set-up slow. Those writes are invisible to CBT, so the
changes between snapshots of the CBT scenarios go through ``/import_raw_vdi``
(``xapisim.scenario.write_disk``), as a guest's writes would be tracked.
"""

import json
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from xapisim import client, scenario  # noqa: E402

PY = sys.executable
MiB = 1 << 20
GiB = 1 << 30
BLOCK = 64 * 1024


def log(message):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


def median(values):
    return statistics.median(values)


def busy_cpu_s():
    """CPU seconds the whole machine has spent busy (all processes, kernel included)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]          # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    """CPU seconds of this process's finished children (nbdcopy, curl, bench/mover.py)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def with_machine_cpu(fn):
    """(fn(), CPU seconds the machine spent while it ran, CPU seconds of the client that fn
    ran as a child process). The machine's figure covers the simulated pools, nbdkit and the
    client together, which on a machine this small is what bounds a run; the difference is
    what the servers alone cost."""
    before, children = busy_cpu_s(), children_cpu_s()
    value = fn()
    return value, busy_cpu_s() - before, children_cpu_s() - children


# ---- simulated pools -----------------------------------------------------------------------

class Pools:
    """Two simulated pools started with ``python -m xapisim up`` in ``state_dir``."""

    def __init__(self, state_dir, block_status=False, host_profile=None, host_costs=(), hosts=1):
        self.state_dir = state_dir
        self.hosts = hosts
        self.block_status = block_status
        self.host_profile, self.host_costs = host_profile, list(host_costs)
        self.entries = None
        self.sessions = []

    def __enter__(self):
        shutil.rmtree(self.state_dir, ignore_errors=True)
        os.makedirs(self.state_dir)
        cmd = [PY, "-m", "xapisim", "up", "--state-dir", self.state_dir, "--pools", "2", "--hosts", str(self.hosts)]
        if self.block_status:
            cmd.append("--block-status")
        if self.host_profile:
            cmd += ["--host-profile", self.host_profile] + ["--host-cost=%s" % c for c in self.host_costs]
        subprocess.run(cmd, check=True, cwd=os.path.join(REPO, "tests"), stdout=subprocess.DEVNULL)
        with open(os.path.join(self.state_dir, "pools.json")) as f:
            self.entries = json.load(f)["pools"]
        self.sessions = [client.login(p) for p in self.entries]
        return self

    def __exit__(self, *exc):
        for x in self.sessions:
            try:
                x.xenapi.session.logout()
            except Exception:  # noqa: BLE001 - the pools stop anyway
                pass
        subprocess.run([PY, "-m", "xapisim", "down", "--state-dir", self.state_dir],
                       cwd=os.path.join(REPO, "tests"), stdout=subprocess.DEVNULL)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return False

    @property
    def src(self):
        return self.entries[0]

    @property
    def dst(self):
        return self.entries[1]

    @property
    def xsrc(self):
        return self.sessions[0]

    @property
    def xdst(self):
        return self.sessions[1]

    def set_source_tls(self, tls):
        """TLS NBD (purpose ``nbd``, XAPI's default) or plaintext (``insecure_nbd``)."""
        x = self.xsrc
        net = scenario.nbd_network(x)
        purposes = x.xenapi.network.get_purpose(net)
        wanted, other = ("nbd", "insecure_nbd") if tls else ("insecure_nbd", "nbd")
        # XAPI refuses both purposes on one network (NETWORK_INCOMPATIBLE_PURPOSES)
        if other in purposes:
            x.xenapi.network.remove_purpose(net, other)
        if wanted not in purposes:
            x.xenapi.network.add_purpose(net, wanted)

    def disk_path(self, entry, vdi_uuid):
        return os.path.join(entry["state_dir"], "disks", vdi_uuid + ".raw")


# ---- disks ---------------------------------------------------------------------------------

def random_bytes(rng, n):
    return rng.randbytes(n)


def fill_extents(path, extents, seed):
    """Write random data at [(offset, length)] of a backing file (the set-up shortcut)."""
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        for offset, length in extents:
            done = 0
            while done < length:
                n = min(16 * MiB, length - done)
                f.seek(offset + done)
                f.write(random_bytes(rng, n))
                done += n


def striped_extents(size, fraction, stripe):
    """Allocated extents covering ``fraction`` of the disk, spread over all of it: one
    ``stripe`` of data at the start of every ``stripe / fraction`` bytes."""
    period = int(stripe / fraction)
    return [(offset, min(stripe, size - offset)) for offset in range(0, size, period)]


def vm_with_disk(pools, name, size, extents, seed, cbt=False):
    """A halted VM on the source pool with one disk of ``size`` holding random data at
    ``extents``. Returns (VM uuid, VDI ref, VDI uuid)."""
    x = pools.xsrc
    vm = scenario.create_vm(x, name, [size])
    vdi = scenario.disks(x, vm)["0"]
    uuid = x.xenapi.VDI.get_uuid(vdi)
    fill_extents(pools.disk_path(pools.src, uuid), extents, seed)
    if cbt:
        x.xenapi.VDI.enable_cbt(vdi)
    return x.xenapi.VM.get_uuid(vm), vdi, uuid


def allocated_extents(path):
    """[(offset, length)] of data in a sparse file (SEEK_DATA/SEEK_HOLE)."""
    out = []
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        fd, pos = f.fileno(), 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            out.append((data, hole - data))
            pos = hole
    return out


def write_chunked_body(disk_path, body_path, piece=4 * MiB):
    """The chunked import body carrying a disk's allocated bytes (what a mirror of it must
    write), in frames of at most ``piece`` bytes as the mirror sends them. Returns the number
    of data bytes."""
    total = 0
    with open(disk_path, "rb") as disk, open(body_path, "wb") as out:
        for offset, length in allocated_extents(disk_path):
            done = 0
            while done < length:
                n = min(piece, length - done)
                disk.seek(offset + done)
                out.write(struct.pack("<QI", offset + done, n))
                out.write(disk.read(n))
                done += n
                total += n
        out.write(struct.pack("<QI", 0, 0))
    return total


# ---- cleaning the destination between runs --------------------------------------------------

def clear_destination(pools, vm_uuid):
    """Remove what a migration of ``vm_uuid`` made on the destination, so the next run starts
    from nothing."""
    x = pools.xdst
    try:
        vm = x.xenapi.VM.get_by_uuid(vm_uuid)
    except Exception:  # noqa: BLE001 - no VM: nothing imported yet
        vm = None
    if vm is not None:
        if x.xenapi.VM.get_power_state(vm) != "Halted":      # a warm migration started it
            x.xenapi.VM.hard_shutdown(vm)
        for snap in x.xenapi.VM.get_snapshots(vm):
            x.xenapi.VM.destroy(snap)
        x.xenapi.VM.destroy(vm)
    for ref, rec in x.xenapi.VDI.get_all_records().items():
        if rec["other_config"].get("sxm:job") == vm_uuid:
            x.xenapi.VDI.destroy(ref)


def remove_source_vm(pools, vm_uuid):
    """Destroy a scenario's source VM, its snapshots and every disk they hold, so that the
    source SR (64 GiB of virtual size) has room for the next scenario."""
    x = pools.xsrc
    vm = x.xenapi.VM.get_by_uuid(vm_uuid)
    if x.xenapi.VM.get_power_state(vm) != "Halted":
        x.xenapi.VM.hard_shutdown(vm)
    vdis = set()
    for owner in [vm] + x.xenapi.VM.get_snapshots(vm):
        for vbd in x.xenapi.VM.get_VBDs(owner):
            vdi = x.xenapi.VBD.get_VDI(vbd)
            if vdi != "OpaqueRef:NULL":
                vdis.add(vdi)
        if owner != vm:
            x.xenapi.VM.destroy(owner)
    x.xenapi.VM.destroy(vm)
    for vdi in vdis:
        x.xenapi.VDI.destroy(vdi)


def scratch_vdi(pools, size):
    """An empty VDI on the destination's default SR, the target of the curl baseline."""
    x = pools.xdst
    return x.xenapi.VDI.create({
        "name_label": "bench curl target", "name_description": "", "SR": scenario.default_sr(x),
        "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []})


# ---- our migration -------------------------------------------------------------------------

def pool_vars(p):
    return {"url": p["url"], "username": p["username"], "password": p["password"],
            "validate_certs": True, "ca_path": p["ca_file"]}


def timed_playbook(workdir, playbook, extra, *args):
    """Wall seconds of ``ansible-playbook playbooks/<playbook> -e @<extra as a file> *args`` from
    this repository; raises with its output when it fails."""
    fd, vars_file = tempfile.mkstemp(suffix=".json", dir=workdir)
    with os.fdopen(fd, "w") as f:
        json.dump(extra, f)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           os.path.join(REPO, "playbooks", playbook), "-e", "@" + vars_file] + list(args)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    os.unlink(vars_file)
    if proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (playbook, (proc.stdout + proc.stderr)[-4000:]))
    return wall


def run_mover(pools, vm_uuid, use_cbt=True, verify=False, use_vhd_maps=True, verify_depth="sample",
              parallel_disks=None):
    """migrate.migrate in a child process (bench/mover.py); its JSON line."""
    spec = {"source": pools.src, "destination": pools.dst, "vm": vm_uuid, "use_cbt": use_cbt,
            "verify": verify, "use_vhd_maps": use_vhd_maps, "verify_depth": verify_depth,
            "parallel_disks": parallel_disks}
    proc = subprocess.run([PY, os.path.join(REPO, "bench", "mover.py")], input=json.dumps(spec),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("mover failed:\n%s" % proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def migrate_once(pools, vm_uuid, **kw):
    clear_destination(pools, vm_uuid)
    out = run_mover(pools, vm_uuid, **kw)
    clear_destination(pools, vm_uuid)
    return out


# ---- baselines -----------------------------------------------------------------------------

def nbd_uri(pools, vdi, certdir):
    """nbd(s)://127.0.0.1:PORT/<export name> for ``VDI.get_nbd_info``'s first record. The
    export name ``/<uuid>?session_id=<ref>`` is percent-encoded into the URI's path (libnbd
    drops the path's first slash and decodes the rest)."""
    x = pools.xsrc
    record = x.xenapi.VDI.get_nbd_info(vdi)[0]
    tls = any("nbd" in rec["purpose"] for rec in x.xenapi.network.get_all_records().values())
    export = urllib.parse.quote(record["exportname"], safe="")
    if not tls:
        return "nbd://%s:%s/%s" % (record["address"], record["port"], export)
    with open(os.path.join(certdir, "ca-cert.pem"), "w") as f:
        f.write(record["cert"])
    return "nbds://%s:%s/%s?tls-certificates=%s" % (record["subject"], record["port"], export, certdir)


def time_nbdcopy(pools, vdi, workdir):
    """Seconds for ``nbdcopy URI null:`` reading the whole export (what the server can give)."""
    certdir = os.path.join(workdir, "nbdcopy-cert")
    os.makedirs(certdir, exist_ok=True)
    uri = nbd_uri(pools, vdi, certdir)
    started = time.monotonic()
    proc = subprocess.run(["nbdcopy", uri, "null:"], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError("nbdcopy failed: %s" % proc.stderr[-2000:])
    return elapsed


def time_curl(pools, body_path, size):
    """Seconds for ``curl`` uploading a chunked import body into a fresh destination VDI, until
    the handler has written every byte (it closes the connection then) and its task succeeded."""
    x = pools.xdst
    vdi = scratch_vdi(pools, size)
    task = x.xenapi.task.create("bench curl", "baseline upload")
    try:
        query = urllib.parse.urlencode({"vdi": x.xenapi.VDI.get_uuid(vdi), "format": "raw",
                                        "chunked": "true", "task_id": task})
        url = pools.dst["url"].rstrip("/") + "/import_raw_vdi?" + query
        cookie = "session_id=%s" % x._session
        started = time.monotonic()
        # the cookie goes through a config on stdin: a session ref is a secret
        proc = subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "--cacert", pools.dst["ca_file"],
                               "-H", "Expect:", "-T", body_path, "-K", "-", url],
                              input='cookie = "%s"\n' % cookie, capture_output=True, text=True)
        while x.xenapi.task.get_status(task) == "pending":
            time.sleep(0.005)
        elapsed = time.monotonic() - started
        if proc.returncode != 0 or x.xenapi.task.get_status(task) != "success":
            raise RuntimeError("curl upload failed (%s): %s" % (proc.returncode, proc.stderr[-2000:]))
    finally:
        x.xenapi.task.destroy(task)
        x.xenapi.VDI.destroy(vdi)
    return elapsed


def time_both_at_once(pools, vdi, body_path, size, workdir):
    """Seconds for nbdcopy and curl run at the same time (each as above): on a machine with
    few cores the two halves of the pipeline share them, which max() of the lone runs hides."""
    import threading
    errors = []

    def guarded(fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
    threads = [threading.Thread(target=guarded, args=(time_nbdcopy, pools, vdi, workdir)),
               threading.Thread(target=guarded, args=(time_curl, pools, body_path, size))]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - started


def machine():
    """What the figures were measured on."""
    info = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / (1 << 20), 1)
    info["kernel"] = os.uname().release
    for tool, args in (("nbdkit", ["--version"]), ("nbdcopy", ["--version"]), ("curl", ["--version"])):
        try:
            out = subprocess.run([tool] + args, capture_output=True, text=True).stdout
            info[tool] = " ".join(out.splitlines()[:2]) if tool == "nbdcopy" else out.splitlines()[0]
        except OSError:
            info[tool] = None
    try:
        import nbd
        info["libnbd_python"] = nbd.NBD().get_version()
    except Exception:  # noqa: BLE001 - recorded as missing
        info["libnbd_python"] = None
    return info

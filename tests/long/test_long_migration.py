"""Issue 8, `make test-long`: a migration of at least 15 minutes (a bandwidth limit makes it
slow) through the role at the default poll interval. It must be polled at least 400 times,
print a progress line at default verbosity at least every 30 s, and the controller's memory
(the ansible-playbook process tree, sampled every 30 s) must stay flat: its maximum over the
last 5 minutes at most 1.05 x its maximum over minutes 2 to 5.

Each poll starts a module process of its own for a fraction of a second; a sample that falls
on one counts a process that is not the controller's memory (it comes and goes every poll).
The bound is on the tree without processes younger than TRANSIENT_S; the whole tree is
recorded beside it."""

import json
import os
import subprocess
import sys
import threading
import time

from xapisim import scenario

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

from harness import REPO, pool_vars  # noqa: E402

MiB = 1 << 20
DISK = 300 * MiB
SECONDS = 16 * 60            # the data alone, at the limit
PROGRESS = ": mirror, disk "  # what migration_wait prints for the mirror's progress
TRANSIENT_S = 5              # a poll's module process lives well under a second
TICKS = os.sysconf("SC_CLK_TCK")


def tree_rss_kib(pid):
    """(RSS of a process and all its descendants, the same without those younger than
    TRANSIENT_S), from /proc."""
    children, started = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
                started[int(entry)] = int(fields[19]) / TICKS
            except OSError:
                continue
    with open("/proc/uptime") as f:
        now = float(f.read().split()[0])
    total = lasting = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open("/proc/%d/status" % p) as f:
                kib = int([x for x in f if x.startswith("VmRSS:")][0].split()[1])
        except (OSError, IndexError):
            continue
        total += kib
        if now - started.get(p, now) >= TRANSIENT_S:
            lasting += kib
    return total, lasting


def test_a_long_migration_through_the_role(pools, connect, tmp_path):
    x = connect(0)
    vm = scenario.create_vm(x, "long-run", [DISK])
    disk = scenario.disks(x, vm)["0"]
    scenario.write_disk(pools[0], x, disk, [(i * 4 * MiB, os.urandom(4 * MiB)) for i in range(DISK // (4 * MiB))])
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    report_dir = tmp_path / "reports"
    variables = {"sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]), "sxm_vm": vm_uuid,
                 "sxm_report_dir": str(report_dir), "sxm_bandwidth_limit": DISK // SECONDS}
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                             os.path.join(REPO, "playbooks", "migrate_vm.yml"), "-e", "@%s" % vars_file],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    lines, samples = [], []

    def read():
        for line in proc.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        samples.append((time.monotonic() - started,) + tree_rss_kib(proc.pid))
        for dummy in range(30):
            if proc.poll() is not None:
                break
            time.sleep(1)
    reader.join()
    duration = time.monotonic() - started
    output = "\n".join(text for dummy, text in lines)
    assert proc.returncode == 0, output[-4000:]
    with open(report_dir / ("sxm-%s.json" % vm_uuid)) as f:
        result = json.load(f)
    progress_times = [t for t, text in lines if PROGRESS in text]
    gaps = [b - a for a, b in zip(progress_times, progress_times[1:])]
    early = [kib for t, dummy, kib in samples if 120 <= t <= 300]
    late = [kib for t, dummy, kib in samples if t >= duration - 300]
    figures = {"duration_s": round(duration, 1), "polls": result.get("polls"), "progress_lines": len(progress_times),
               "largest_gap_between_progress_lines_s": round(max(gaps), 1) if gaps else None,
               "rss_samples_s_tree_kib_lasting_kib": samples, "max_rss_minutes_2_5_kib": max(early) if early else None,
               "max_rss_last_5_minutes_kib": max(late) if late else None}
    os.makedirs(os.path.join(REPO, "tests", "output"), exist_ok=True)
    with open(os.path.join(REPO, "tests", "output", "long-migration.json"), "w") as f:
        json.dump(figures, f, indent=1)
    assert duration >= 15 * 60, figures
    assert result["polls"] >= 400, figures
    assert progress_times and progress_times[0] <= 60 and max(gaps) <= 30, figures
    assert max(late) <= 1.05 * max(early), figures

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An evacuation: which VMs, in which order, whether the destination holds them all, how long it
should take, and the report at the end. The moving itself is migrate_vm's, once per VM, under
the caps of slots.py.

Plain Python: no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import heapq
import json
import os
import re
import time

from ansible_collections.xapi.sxm.plugins.module_utils import migrate, pool_inventory, report_html
from ansible_collections.xapi.sxm.plugins.module_utils.errors import InputError, PreflightError, SxmError, error_from
from ansible_collections.xapi.sxm.plugins.module_utils.plan import AlreadyMigrated, completed_on, gib

ORDERS = ("size", "smallest", "name", "priority")
MiB = 1 << 20
# the fixed cost of one VM's steps besides its data (plan, metadata, verify, cut-over, report),
# measured with the simulator's real host profile; an estimate, not a promise
STEP_OVERHEAD_S = 20.0


# ---- selection and order ----------------------------------------------------------------------

def select(vms, host=None, everything=False, tags=(), names=(), exclude=(), exclude_tags=(), gone=None):
    """The VMs of ``vms`` (pool_inventory facts) that the selection names: on ``host`` (name
    or uuid of the host that serves their disks), carrying one of ``tags``, named in
    ``names`` (uuids or unique names), or all of them with ``everything``; minus those named
    in ``exclude`` or carrying one of ``exclude_tags``. A name that matches no VM, or several,
    is refused - a typo must not shrink an evacuation silently - unless ``gone(name)`` gives
    the facts of a VM that is no longer on the source because it migrated (its disposition
    destroyed it): a re-run of the same list then skips it."""
    if not (host or everything or tags or names):
        raise InputError("the evacuation selects no VM: give a host, tags, a list of VMs, or all: true")
    chosen = {}
    by_name = {}
    for vm in vms:
        by_name.setdefault(vm["sxm_name"], []).append(vm)
    for wanted in names:
        migrated = gone(wanted) if gone is not None and not resolve_quietly(vms, by_name, wanted) else None
        found = [migrated] if migrated else resolve(vms, by_name, wanted, "sxm_vms")
        chosen.update((vm["sxm_uuid"], vm) for vm in found)
    for vm in vms:
        on_host = host and host in (vm.get("sxm_home_host"), vm.get("sxm_home_host_uuid"))
        tagged = set(tags) & set(vm.get("sxm_tags", []))
        if everything or on_host or tagged:
            chosen[vm["sxm_uuid"]] = vm
    dropped = set()
    for wanted in exclude:
        dropped.update(vm["sxm_uuid"] for vm in resolve(vms, by_name, wanted, "exclude"))
    out = [vm for uuid, vm in chosen.items() if uuid not in dropped
           and not set(exclude_tags) & set(vm.get("sxm_tags", []))]
    return out


def resolve_quietly(vms, by_name, wanted):
    return [vm for vm in vms if vm["sxm_uuid"] == wanted] or by_name.get(wanted, [])


def resolve(vms, by_name, wanted, option):
    found = resolve_quietly(vms, by_name, wanted)
    if len(found) != 1:
        raise InputError("%s names %r, which is %s on the source pool"
                         % (option, wanted, "no VM" if not found else "%d VMs (give their uuids)" % len(found)))
    return found


def priority_of(vm, prefix):
    """The number of the VM's first tag ``<prefix><n>`` (lower goes first), or None."""
    pattern = re.compile("^%s(\\d+)$" % re.escape(prefix))
    for tag in vm.get("sxm_tags", []):
        match = pattern.match(tag)
        if match:
            return int(match.group(1))
    return None


def order(vms, how="size", priority_prefix="sxm-priority="):
    """``size``: the largest first (the long jobs start early, so the end comes sooner);
    ``smallest``; ``name``; ``priority``: tagged ``<prefix><n>`` first, lowest n first, then the
    rest, each by size. Ties by name, then uuid: the same fleet always gets the same order."""
    if how not in ORDERS:
        raise InputError("order %r: choose one of %s" % (how, ", ".join(ORDERS)))

    def key(vm):
        size = int(vm.get("sxm_bytes_to_move", 0))
        tie = (vm["sxm_name"], vm["sxm_uuid"])
        if how == "smallest":
            return (size,) + tie
        if how == "name":
            return tie
        if how == "priority":
            rank = priority_of(vm, priority_prefix)
            return (rank is None, rank if rank is not None else 0, -size) + tie
        return (-size,) + tie
    return sorted(vms, key=key)


# ---- the fleet's plan -------------------------------------------------------------------------

def migrated_away(dst, name):
    """Facts of a VM the source no longer has because the destination holds it complete."""
    done = completed_on(dst, name)
    if done is None:
        return None
    return {"sxm_uuid": done["uuid"], "sxm_name": done["name_label"], "sxm_migrated": True, "sxm_tags": []}


def plan_vm_entry(vm):
    return {"uuid": vm["sxm_uuid"], "name": vm["sxm_name"], "power_state": vm.get("sxm_power_state"),
            "host": vm.get("sxm_home_host"), "bytes": int(vm.get("sxm_bytes_to_move", 0)),
            "snapshots": vm.get("sxm_snapshot_count", 0)}


def plan_vm(src, dst, vm, options_for):
    """One VM's entry: ``done`` (already migrated), ``todo`` with what it stores per SR, or
    ``refused`` with the error that refuses it (the others still go)."""
    entry = plan_vm_entry(vm)
    try:
        the_plan = migrate.make_plan(src, dst, options_for(vm))
    except AlreadyMigrated:
        return dict(entry, status="done")
    except SxmError as e:
        error = error_from(e)
        return dict(entry, status="refused", error_code=error.code, error=error.message, advice=error.advice)
    if migrate.is_complete(dst, the_plan):
        return dict(entry, status="done")
    entry["bytes"] = sum(d["estimated_bytes"] for d in the_plan["disks"]) + \
        sum(m.get("estimated_bytes", m.get("bytes_to_read", 0)) for m in the_plan.get("memory_images", []))
    entry["space"] = the_plan["space"]
    entry["mode"] = the_plan["mode"]
    entry["warnings"] = list(the_plan["warnings"])
    return dict(entry, status="todo")


def check_fleet_space(dst, entries):
    """What every VM still has to store, summed per destination SR, against the SR's free
    space: a fleet that fits VM by VM may not fit as a whole. Returns per SR the figures;
    refuses the whole evacuation, before anything moves, naming every SR short of space."""
    needed, free = {}, {}
    for entry in entries:
        for row in entry.get("space", []):
            needed[row["sr"]] = needed.get(row["sr"], 0) + row["needed_bytes"]
            free[row["sr"]] = row["free_bytes"]
    rows = []
    short = []
    for sr in sorted(needed):
        name = dst.call("SR.get_name_label", dst.call("SR.get_by_uuid", sr))
        row = {"sr": sr, "name": name, "needed_bytes": needed[sr], "free_bytes": free[sr],
               "vms": sum(1 for e in entries if any(r["sr"] == sr for r in e.get("space", [])))}
        rows.append(row)
        if needed[sr] > free[sr]:
            short.append(row)
    if short:
        raise PreflightError(
            "the evacuation does not fit on the destination: %s"
            % "; ".join("SR %r (%s) has %s free and the %d VMs bound for it need about %s"
                        % (r["name"], r["sr"], gib(r["free_bytes"]), r["vms"], gib(r["needed_bytes"]))
                        for r in short),
            advice="free space there, spread the VMs over other SRs with sr_map or default_sr, or "
                   "evacuate fewer VMs at once; nothing was changed")
    return rows


def job_rate(concurrency, job_limit=None, total_limit=None, assumed=100 * MiB):
    """Bytes per second one job is expected to move: the assumed rate of one job, capped by
    its own limit and by its share of the evacuation's."""
    rate = float(assumed)
    if job_limit:
        rate = min(rate, float(job_limit))
    if total_limit:
        rate = min(rate, float(total_limit) / max(1, concurrency))
    return rate


def estimate_seconds(sizes, concurrency, rate, overhead_s=STEP_OVERHEAD_S):
    """The end of a greedy schedule of jobs (in the evacuation's order) on ``concurrency``
    lanes at ``rate`` bytes per second each, plus each job's fixed cost."""
    lanes = [0.0] * max(1, min(concurrency, len(sizes) or 1))
    for size in sizes:
        start = heapq.heappop(lanes)
        heapq.heappush(lanes, start + overhead_s + size / rate)
    return round(max(lanes), 1) if sizes else 0.0


def plan_lines(entries, srs, estimate_s, concurrency, rate):
    lines = ["%-4s %-28s %-10s %-20s %10s  %s" % ("#", "VM", "power", "host", "MiB", "status")]
    for index, e in enumerate(entries, 1):
        status = e["status"] if e["status"] != "refused" else "refused: %s" % e["error"]
        lines.append("%-4d %-28s %-10s %-20s %10.1f  %s" % (index, e["name"][:28], e.get("power_state") or "",
                                                            (e.get("host") or "")[:20], e["bytes"] / MiB, status))
    for row in srs:
        lines.append("destination SR %s: %.2f GiB needed of %.2f GiB free (%d VMs)"
                     % (row["name"], row["needed_bytes"] / float(1 << 30), row["free_bytes"] / float(1 << 30),
                        row["vms"]))
    todo = [e for e in entries if e["status"] == "todo"]
    lines.append("%d VM(s) to move, %d already migrated, %d refused; about %.0f s at %d at once and %.1f MiB/s "
                 "per job" % (len(todo), sum(1 for e in entries if e["status"] == "done"),
                              sum(1 for e in entries if e["status"] == "refused"), estimate_s, concurrency,
                              rate / MiB))
    return lines


def fleet_plan(src, dst, selection, options_for, concurrency=1, job_limit=None, total_limit=None,
               assumed_rate=100 * MiB, how="size", priority_prefix="sxm-priority="):
    """The plan of an evacuation: its VMs in order with their status, the destination SRs'
    figures for the whole fleet, the estimated duration. Refuses (before anything moves) a
    fleet that does not fit."""
    vms = order(select(pool_inventory.list_vms(src), gone=lambda name: migrated_away(dst, name), **selection),
                how, priority_prefix)
    entries = [dict(plan_vm_entry(vm), status="done") if vm.get("sxm_migrated") else plan_vm(src, dst, vm, options_for)
               for vm in vms]
    for rank, entry in enumerate(entries):
        entry["rank"] = rank
    todo = [e for e in entries if e["status"] == "todo"]
    srs = check_fleet_space(dst, todo)
    rate = job_rate(concurrency, job_limit, total_limit, assumed_rate)
    estimate = estimate_seconds([e["bytes"] for e in todo], concurrency, rate)
    return {"vms": entries, "srs": srs, "estimate_s": estimate, "job_rate_bytes_per_s": int(rate),
            "concurrency": concurrency, "lines": plan_lines(entries, srs, estimate, concurrency, rate)}


# ---- the report -------------------------------------------------------------------------------

def seconds_or_none(value):
    """Epoch seconds from what a play recorded: older ansible-core hands templated numbers over
    as text."""
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def vm_outcome(entry):
    """One VM's line of the report from what its run left (``entry``: the plan's entry plus
    ``result``, the migrate_vm role's sxm_result, or ``failure``, its failed task's result)."""
    out = {k: entry.get(k) for k in ("uuid", "name", "power_state", "host", "rank", "bytes")}
    result, failure = entry.get("result"), entry.get("failure")
    if entry.get("status") in ("done", "refused") and not result and not failure:
        out["status"] = "skipped: already migrated" if entry["status"] == "done" else "refused"
        if entry["status"] == "refused":
            out.update(error_code=entry.get("error_code"), error=entry.get("error"), advice=entry.get("advice"))
        return out
    if failure:
        out["status"] = "drained" if failure.get("error_code") == "SXM_DRAINED" else "failed"
        out.update(error_code=failure.get("error_code") or "SXM_ERROR",
                   error=failure.get("msg") or "the run failed without a message",
                   advice=failure.get("advice") or "see the error; run the evacuation again",
                   started=seconds_or_none(entry.get("started")), ended=seconds_or_none(entry.get("ended")))
        return out
    if not result:
        out["status"] = "not run"
        out["error"] = "the VM's play ended before it reported (the controller stopped, or a host failed)"
        return out
    timings = result.get("timings") or {}
    out.update(status="migrated", destination_vm=result.get("destination_vm_uuid"),
               bytes_written=result.get("bytes_written"), bytes_read=result.get("bytes_read"),
               seconds=result.get("seconds", timings.get("total_s")),
               downtime_s=(result.get("warm") or {}).get("downtime_s"),
               warnings=list(result.get("warnings") or []),
               started=seconds_or_none(entry.get("started")), ended=seconds_or_none(entry.get("ended")))
    return out


def fleet_report(entries, started, ended=None):
    """The evacuation's report: per VM its outcome, the totals, and a timeline of which VMs
    moved when (seconds from the start)."""
    ended = ended or time.time()
    vms = sorted((vm_outcome(e) for e in entries), key=lambda v: (v.get("rank") is None, v.get("rank") or 0))
    counts = {}
    for vm in vms:
        status = vm["status"].split(":")[0]
        counts[status] = counts.get(status, 0) + 1
    timeline = sorted(({"vm": vm["name"], "uuid": vm["uuid"], "status": vm["status"],
                        "start_s": round(vm["started"] - started, 1), "end_s": round(vm["ended"] - started, 1)}
                       for vm in vms if vm.get("started") and vm.get("ended")), key=lambda t: t["start_s"])
    moved = [vm for vm in vms if vm["status"] == "migrated"]
    return {"started": started, "ended": ended, "seconds": round(ended - started, 1), "counts": counts,
            "bytes_written": sum(vm.get("bytes_written") or 0 for vm in moved),
            "failed": [vm["name"] for vm in vms if vm["status"] in ("failed", "not run")],
            "vms": vms, "timeline": timeline}


def fleet_markdown(report):
    lines = ["# Evacuation report", "",
             "%s; %.1f s; %.1f MiB written" % (", ".join("%d %s" % (n, s) for s, n in sorted(report["counts"].items())),
                                               report["seconds"], report["bytes_written"] / float(MiB)), "",
             "| # | VM | status | MiB written | seconds | downtime s | error / advice |",
             "|---|---|---|---|---|---|---|"]
    for vm in report["vms"]:
        problem = ""
        if vm.get("error"):
            problem = "%s: %s. What to do: %s" % (vm.get("error_code"), vm["error"], vm.get("advice") or "")
        elif vm.get("warnings"):
            problem = "warnings: " + "; ".join(vm["warnings"])
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            "" if vm.get("rank") is None else vm["rank"] + 1, vm["name"], vm["status"],
            "" if vm.get("bytes_written") is None else "%.1f" % (vm["bytes_written"] / float(MiB)),
            "" if vm.get("seconds") is None else vm["seconds"],
            "" if vm.get("downtime_s") is None else vm["downtime_s"], problem.replace("|", "/")))
    if report["timeline"]:
        lines += ["", "## Timeline (seconds from the start)", "", "| VM | status | start | end |", "|---|---|---|---|"]
        lines += ["| %s | %s | %s | %s |" % (t["vm"], t["status"], t["start_s"], t["end_s"])
                  for t in report["timeline"]]
    return "\n".join(lines) + "\n"


def write_fleet_report(report, folder, name="evacuation"):
    """``<folder>/sxm-<name>.json``, ``.md`` and ``.html`` (its VMs link to their own pages);
    returns their paths."""
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, "sxm-%s" % re.sub(r"[^A-Za-z0-9_.-]", "_", name))
    with open(base + ".json", "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    with open(base + ".md", "w") as f:
        f.write(fleet_markdown(report))
    paths = {"json": base + ".json", "markdown": base + ".md"}
    page = report_html.fleet_html(report, name)
    if page is not None:
        with open(base + ".html", "w") as f:
            f.write(page)
        paths["html"] = base + ".html"
    return paths

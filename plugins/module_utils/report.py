# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration report (DESIGN.md step 9): JSON, Markdown with both trees side by side, and an
HTML page with both trees drawn (report_html.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.xapi.sxm.plugins.module_utils import report_html


def tree_lines(tree):
    """A tree dict (Tree.to_dict) drawn as text lines; '*' marks the active path."""
    nodes = {n["uuid"]: n for n in tree["nodes"]}
    lines = []

    def label(n):
        if n["is_vm"]:
            return "%s (VM)" % n["name_label"]
        return "%s %s  %s" % ("*" if n["active"] else " ", n["name_label"], n["snapshot_time"])

    def visit(n, prefix, last):
        lines.append(prefix + ("└── " if last else "├── ") + label(n))
        kids = [nodes[c] for c in n["children"] if c in nodes]
        for i, kid in enumerate(kids):
            visit(kid, prefix + ("    " if last else "│   "), i == len(kids) - 1)

    roots = [n for n in tree["nodes"] if n["parent"] is None]
    for i, root in enumerate(roots):
        visit(root, "", i == len(roots) - 1)
    return lines


def side_by_side(left, right, titles=("source", "destination")):
    width = max([len(x) for x in left] + [len(titles[0])]) + 4
    out = [titles[0].ljust(width) + titles[1], "-" * (width + len(titles[1]))]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        out.append(a.ljust(width) + b)
    return out


def markdown(result):
    lines = ["# Migration of %s" % result.get("vm_name", result.get("vm_uuid")), "",
             "- VM uuid: `%s`" % result.get("vm_uuid"),
             "- result: %s" % result.get("message", ""),
             "- bytes written: %s (walk minimum %s, per-edge minimum %s)" % (
                 result.get("bytes_written", 0), result.get("walk_minimum_bytes", 0),
                 result.get("edge_minimum_bytes", 0)),
             "- timings: %s" % json.dumps(result.get("timings", {})), ""]
    if result.get("destination_tree"):
        lines += ["## Snapshot trees", "", "```"]
        lines += side_by_side(tree_lines(result["source_tree"]), tree_lines(result["destination_tree"]))
        lines += ["```", ""]
    layouts = (result.get("plan") or {}).get("layouts")
    if layouts:
        lines += ["## Layouts carried", "", "| layout | disk | VDIs | how |", "|---|---|---|---|"]
        for row in layouts:
            vdis = row.get("vdi_uuids") or [row[k] for k in ("vdi_uuid",) if k in row]
            lines.append("| %s | %s | %s | %s |" % (row["layout"], row["userdevice"], ", ".join(vdis) or "-",
                                                    row["carried"]))
        lines.append("")
    if result.get("warm"):
        lines += warm_lines(result["warm"])
    if result.get("warnings"):
        lines += ["## Warnings", ""] + ["- %s" % w for w in result["warnings"]] + [""]
    if result.get("snapshot_time_not_kept"):
        lines += ["## Snapshot disks that keep the destination's snapshot_time", "",
                  "| VDI | source time | destination time | why |", "|---|---|---|---|"]
        for row in result["snapshot_time_not_kept"]:
            lines.append("| %s | %s | %s | %s |"
                         % (row["vdi_uuid"], row["source_time"], row["destination_time"], row["reason"]))
        lines.append("")
    return "\n".join(lines)


def warm_lines(warm):
    """A running VM's passes, cut-over and downtime (migrate.warm_cutover)."""
    lines = ["## Warm migration", ""]
    if warm.get("waiting"):
        lines.append("- cut-over: %s; the VM runs on the source, its copy %s: run again with cutover now"
                     % (warm["cutover"], "converged" if warm["converged"] else "not converged"))
    else:
        lines += ["- downtime: %s s (source stop requested to destination running), of which the guest's own "
                  "shutdown (%s) %s s" % (warm["downtime_s"], warm["shutdown"], warm["shutdown_s"]),
                  "- cut-over: %s, %s; last delta %s bytes" % (
                      warm["cutover"], "converged" if warm["converged"] else "not converged",
                      warm["final_delta_bytes"])]
    lines += ["", "| pass | bytes written | bytes read | seconds |", "|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s |" % (p["pass"], p["bytes_written"], p["bytes_read"], p["seconds"])
              for p in warm["passes"]]
    return lines + [""]


def write_reports(result, report_dir):
    os.makedirs(report_dir, exist_ok=True)
    base = os.path.join(report_dir, "sxm-%s" % result.get("vm_uuid", "unknown"))
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    with open(base + ".md", "w") as f:
        f.write(markdown(result))
    written = [base + ".json", base + ".md"]
    page = report_html.html(result)
    if page is not None:
        with open(base + ".html", "w") as f:
            f.write(page)
        written.append(base + ".html")
    return written


def merged_report(steps):
    """The steps' results as one, with both trees drawn when the destination has the VM."""
    result = merge_results(steps)
    if result.get("destination_tree") and result.get("source_tree"):
        result["trees"] = side_by_side(tree_lines(result["source_tree"]), tree_lines(result["destination_tree"]))
    return result


def merge_results(steps):
    """One result from the steps' results: later keys win, timings and warnings add up, and
    the message says whether anything was done."""
    merged = {"timings": {}, "warnings": []}
    for step in steps:
        for key, value in step.items():
            if key == "timings":
                merged["timings"].update(value)
            elif key == "warnings":
                merged["warnings"].extend(w for w in value if w not in merged["warnings"])
            elif key == "polls":
                merged["polls"] = merged.get("polls", 0) + value
            elif key == "changed":
                merged["changed"] = merged.get("changed", False) or value
            elif key != "message":
                merged[key] = value
    merged.setdefault("changed", False)
    merged["message"] = "migrated" if merged["changed"] else "already migrated; nothing to do"
    return merged

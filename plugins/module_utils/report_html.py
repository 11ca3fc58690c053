# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration report as one HTML page (the evacuation's too, ``fleet_html``): both snapshot
trees drawn side by side as SVG (the active path, reverted branches and checkpoints marked),
each source node with the bytes and seconds its copy took, warnings first, a warm migration's
downtime and passes. No JavaScript
and no file beside it: the page reads the same in a browser, a mail client or an archive.

Rendered with Jinja2 (ansible-core's own dependency, so present wherever the modules run on a
controller); where it is missing the page is simply not written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

COLUMN = 100          # px between a node and its children
ROW = 54              # px between two nodes in the walk order
MARGIN = 24
LABEL = 250           # px right of the deepest node for its labels

STYLE = """body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d2430; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 26px 0 8px; }
.facts { color: #4a5568; margin-bottom: 14px; }
.facts b { color: #1d2430; }
.warning { background: #fff4e0; border-left: 4px solid #e8910c; padding: 6px 10px; margin: 6px 0; }
.trees { display: flex; gap: 28px; flex-wrap: wrap; align-items: flex-start; }
.tree { border: 1px solid #d5dbe3; border-radius: 6px; padding: 8px; }
.tree h2 { margin: 0 0 6px; }
table { border-collapse: collapse; } td, th { border: 1px solid #d5dbe3; padding: 3px 8px; text-align: left; }
th { background: #f1f4f8; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2430; }
svg .edge { stroke: #8a96a8; stroke-width: 1.5; fill: none; }
svg .edge.active { stroke: #1f6feb; stroke-width: 2.5; }
svg .node circle, svg .node rect { fill: #fff; stroke: #8a96a8; stroke-width: 1.5; }
svg .node.active circle, svg .node.active rect { stroke: #1f6feb; stroke-width: 2.5; }
svg .node.reverted circle { stroke-dasharray: 4 3; }
svg .node.vm rect { fill: #e8f0fe; }
svg .node.checkpoint circle { fill: #fde7f3; stroke: #b4237a; }
svg .figures { fill: #5a6678; font-size: 11px; }
.legend span { margin-right: 16px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Migration of {{ r.vm_name or r.vm_uuid }}</title>
<style>
{{ style | safe }}</style></head><body>
<h1>Migration of {{ r.vm_name or r.vm_uuid }}</h1>
<div class="facts"><b>{{ r.message }}</b> &middot; VM <code>{{ r.vm_uuid }}</code>
{%- if r.plan %} &middot; mode <b>{{ r.plan.mode }}</b>{% endif %}
 &middot; {{ mib(r.bytes_written or 0) }} written, {{ mib(r.bytes_read or 0) }} read
{%- if r.timings and r.timings.total_s %} &middot; {{ r.timings.total_s }} s in all{% endif %}
{%- if r.downtime_s %} &middot; downtime <b>{{ r.downtime_s }} s</b>{% endif %}</div>
{% for w in r.warnings or [] %}<div class="warning">{{ w }}</div>
{% endfor %}
<div class="trees">
{% for t in trees %}<div class="tree"><h2>{{ t.title }}</h2>{{ t.svg | safe }}</div>
{% endfor %}</div>
<p class="legend"><span>&#9679; snapshot</span><span>&#9632; the VM</span>
<span style="color:#1f6feb">&#9473; active path</span><span>&#9676; reverted branch</span>
<span style="color:#b4237a">&#9679; checkpoint (with memory)</span></p>
{% if r.warm %}<h2>Warm migration</h2>
<p>cut-over {{ r.warm.cutover }}{% if r.warm.decision %} ({{ r.warm.decision }}){% endif %}
{%- if r.warm.downtime_s is defined %}: downtime {{ r.warm.downtime_s }} s, of which the guest's
own shutdown ({{ r.warm.shutdown }}) {{ r.warm.shutdown_s }} s; last delta {{ mib(r.warm.final_delta_bytes) }}
{%- elif r.warm.waiting %}: the VM runs on the source, its copy converged{% endif %}</p>
<table><tr><th>pass</th><th>bytes written</th><th>bytes read</th><th>seconds</th></tr>
{% for p in r.warm.passes or [] %}<tr><td>{{ p.pass }}</td><td>{{ p.bytes_written }}</td><td>{{ p.bytes_read }}</td>
<td>{{ p.seconds }}</td></tr>
{% endfor %}</table>{% endif %}
{% if r.plan and r.plan.layouts %}<h2>Layouts carried</h2>
<table><tr><th>layout</th><th>disk</th><th>how</th></tr>
{% for row in r.plan.layouts %}<tr><td>{{ row.layout }}</td><td>{{ row.userdevice }}</td><td>{{ row.carried }}</td></tr>
{% endfor %}</table>{% endif %}
{% if r.snapshot_time_not_kept %}<h2>Snapshot disks that keep the destination's snapshot_time</h2>
<table><tr><th>VDI</th><th>source time</th><th>destination time</th><th>why</th></tr>
{% for row in r.snapshot_time_not_kept %}<tr><td><code>{{ row.vdi_uuid }}</code></td><td>{{ row.source_time }}</td>
<td>{{ row.destination_time }}</td><td>{{ row.reason }}</td></tr>
{% endfor %}</table>{% endif %}
</body></html>
"""


def mib(n):
    return "%.1f MiB" % (float(n or 0) / (1 << 20))


def layout(tree):
    """{uuid: (column, row)}: depth across, the walk order down (children in their order)."""
    nodes = {n["uuid"]: n for n in tree["nodes"]}
    places, rows = {}, [0]

    def visit(node, depth):
        places[node["uuid"]] = (depth, rows[0])
        rows[0] += 1
        for kid in node["children"]:
            if kid in nodes:
                visit(nodes[kid], depth + 1)
    for root in [n for n in tree["nodes"] if n["parent"] is None]:
        visit(root, 0)
    return places


def node_figures(result):
    """{source node uuid: (bytes written, seconds)} from the disks' per-VDI figures."""
    by_vdi = {}
    for disk in result.get("disks") or []:
        for uuid, row in (disk.get("nodes") or {}).items():
            by_vdi[uuid] = row
    figures = {}
    for node in (result.get("source_tree") or {}).get("nodes", []):
        vdis = [d["vdi_uuid"] for d in node.get("disks", [])] + (
            [node["memory_image"]["vdi_uuid"]] if node.get("memory_image") else [])
        rows = [by_vdi[v] for v in vdis if v in by_vdi]
        if rows:
            figures[node["uuid"]] = (sum(r["bytes_written"] for r in rows), round(sum(r["seconds"] for r in rows), 2))
    return figures


def tree_svg(tree, svg_id, figures=None):
    """One tree as an SVG element (a string). Each node is a ``g.node`` with ``data-uuid`` and
    ``data-name``, classed ``vm``, ``active`` (on the active path), ``reverted`` (off it) and
    ``checkpoint`` (a snapshot with memory)."""
    from xml.sax.saxutils import escape, quoteattr
    figures = figures or {}
    places = layout(tree)
    nodes = {n["uuid"]: n for n in tree["nodes"]}

    def xy(uuid):
        column, row = places[uuid]
        return MARGIN + 8 + column * COLUMN, MARGIN + row * ROW

    width = MARGIN * 2 + max([c for c, r in places.values()] or [0]) * COLUMN + LABEL
    height = MARGIN * 2 + max(1, len(places)) * ROW - ROW // 2
    out = ['<svg id=%s xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
           % (quoteattr(svg_id), width, height, width, height)]
    for node in tree["nodes"]:
        parent = node["parent"]
        if parent in places and node["uuid"] in places:
            (x1, y1), (x2, y2) = xy(parent), xy(node["uuid"])
            active = " active" if node["active"] and nodes[parent]["active"] else ""
            out.append('<path class="edge%s" d="M%d %d V%d H%d"/>' % (active, x1, y1, y2, x2 - 9))
    for node in tree["nodes"]:
        if node["uuid"] not in places:
            continue
        x, y = xy(node["uuid"])
        classes = ["node", "vm" if node["is_vm"] else ("active" if node["active"] else "reverted")]
        if node["is_vm"]:
            classes.append("active")
        if node.get("is_checkpoint"):
            classes.append("checkpoint")
        shape = ('<rect x="%d" y="%d" width="18" height="18" rx="3"/>' % (x - 9, y - 9) if node["is_vm"]
                 else '<circle cx="%d" cy="%d" r="8"/>' % (x, y))
        label = node["name_label"] + (" (VM)" if node["is_vm"] else "") + (
            " \u25c6 memory" if node.get("is_checkpoint") or node.get("memory_image") else "")
        sub = node["snapshot_time"] if not node["is_vm"] else ""
        if node["uuid"] in figures:
            written, seconds = figures[node["uuid"]]
            sub = "%s%s%s written, %s s" % (sub, " \u00b7 " if sub else "", mib(written), seconds)
        out.append('<g class=%s data-uuid=%s data-name=%s>%s<text x="%d" y="%d">%s</text>'
                   '<text class="figures" x="%d" y="%d">%s</text></g>'
                   % (quoteattr(" ".join(classes)), quoteattr(node["uuid"]), quoteattr(node["name_label"]),
                      shape, x + 14, y + 4, escape(label), x + 14, y + 19, escape(sub)))
    out.append("</svg>")
    return "\n".join(out)


def html(result):
    """The report page (a string), or None without Jinja2."""
    try:
        import jinja2
    except ImportError:
        return None
    trees = []
    if result.get("source_tree"):
        trees.append({"title": "source", "svg": tree_svg(result["source_tree"], "source-tree", node_figures(result))})
    if result.get("destination_tree"):
        trees.append({"title": "destination", "svg": tree_svg(result["destination_tree"], "destination-tree")})
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return env.from_string(PAGE).render(r=result, trees=trees, mib=mib, style=STYLE)


# ---- the evacuation's page ------------------------------------------------------------------

FLEET_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Evacuation {{ name }}</title>
<style>
{{ style | safe }}
tr.failed td, tr.not-run td { background: #fdecec; } tr.drained td, tr.refused td { background: #fff4e0; }
tr.migrated td:nth-child(3) { color: #1a7f37; font-weight: 600; }
svg .bar.migrated { fill: #7cc48d; } svg .bar.failed, svg .bar.not-run { fill: #e5534b; }
svg .bar.drained { fill: #e8910c; }
</style></head><body>
<h1>Evacuation {{ name }}</h1>
<div class="facts">{% for status, n in counts %}<b>{{ n }}</b> {{ status }}{% if not loop.last %} &middot; {% endif %}
{%- endfor %} &middot; {{ r.seconds }} s &middot; {{ mib(r.bytes_written) }} written</div>
{% for vm in r.vms if vm.error %}<div class="warning"><b>{{ vm.name }}</b>: {{ vm.error_code }}: {{ vm.error }}.
What to do: {{ vm.advice }}</div>
{% endfor %}
<h2>Virtual machines</h2>
<table id="vms"><tr><th>#</th><th>VM</th><th>status</th><th>host</th><th>written</th><th>seconds</th>
<th>downtime</th><th>warnings</th></tr>
{% for vm in r.vms %}<tr class="{{ vm.status.split(':')[0] | replace(' ', '-') }}">
<td>{{ (vm.rank + 1) if vm.rank is not none else '' }}</td>
<td>{% if vm.status == 'migrated' %}<a href="sxm-{{ vm.uuid }}.html">{{ vm.name }}</a>
{%- else %}{{ vm.name }}{% endif %}</td>
<td>{{ vm.status }}</td><td>{{ vm.host or '' }}</td>
<td>{{ mib(vm.bytes_written) if vm.bytes_written is not none else '' }}</td><td>{{ vm.seconds or '' }}</td>
<td>{{ vm.downtime_s if vm.downtime_s is not none else '' }}</td><td>{{ (vm.warnings or []) | join('; ') }}</td></tr>
{% endfor %}</table>
{% if timeline %}<h2>Timeline</h2>
{{ timeline | safe }}{% endif %}
</body></html>
"""


def timeline_svg(report, width=720, row=22):
    """Which VM moved when: one bar per VM, from its start to its end, on the evacuation's time axis."""
    from xml.sax.saxutils import escape, quoteattr
    rows = report.get("timeline") or []
    if not rows:
        return ""
    span = max(1.0, max(t["end_s"] for t in rows))
    left = 190
    scale = (width - left - MARGIN) / span
    height = MARGIN * 2 + row * len(rows)
    out = ['<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">' % (width, height)]
    for i, t in enumerate(rows):
        y = MARGIN + i * row
        x0, x1 = left + t["start_s"] * scale, left + t["end_s"] * scale
        out.append('<text x="%d" y="%d">%s</text>' % (MARGIN, y + 14, escape(t["vm"])))
        status = t["status"].split(":")[0].replace(" ", "-")
        out.append('<rect class="bar %s" data-vm=%s x="%.1f" y="%d" width="%.1f" height="%d"><title>%s: %s s to %s s'
                   '</title></rect>' % (escape(status), quoteattr(t["uuid"]), x0, y, max(1.0, x1 - x0), row - 6,
                                        escape(t["vm"]), t["start_s"], t["end_s"]))
    out.append('<text class="figures" x="%d" y="%d">0 s</text><text class="figures" x="%d" y="%d">%.0f s</text>'
               % (left, height - 6, width - MARGIN - 30, height - 6, span))
    out.append("</svg>")
    return "\n".join(out)


def fleet_html(report, name="evacuation"):
    """The evacuation's page (a string), or None without Jinja2."""
    try:
        import jinja2
    except ImportError:
        return None
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return env.from_string(FLEET_PAGE).render(r=report, name=name, counts=sorted(report["counts"].items()),
                                              timeline=timeline_svg(report), mib=mib, style=STYLE)

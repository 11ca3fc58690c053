"""report.py: a tree dict drawn as lines with the active path starred, two drawings side by
side, the steps' results merged into one, and the JSON and Markdown reports on disk."""

import json

from ansible_collections.xapi.sxm.plugins.module_utils import report, report_html


def node(uuid, parent, children, active, is_vm=False):
    return {"uuid": uuid, "name_label": uuid, "parent": parent, "children": children,
            "active": active, "is_vm": is_vm, "snapshot_time": "" if is_vm else "T-" + uuid}


# base -> v1 -> {v2-old, v2 -> VM}
TREE = {"nodes": [node("base", None, ["v1"], True), node("v1", "base", ["v2-old", "v2"], True),
                  node("v2-old", "v1", [], False), node("v2", "v1", ["vm"], True),
                  node("vm", "v2", [], True, is_vm=True)]}


def test_tree_lines_draw_the_tree_and_star_the_active_path():
    assert report.tree_lines(TREE) == [
        "└── * base  T-base",
        "    └── * v1  T-v1",
        "        ├──   v2-old  T-v2-old",
        "        └── * v2  T-v2",
        "            └── vm (VM)",
    ]


def test_side_by_side_pads_the_left_column_to_its_widest_line_plus_four():
    lines = report.side_by_side(["a", "abcdef"], ["x", "y", "z"])
    assert lines[0] == "source".ljust(10) + "destination"
    assert lines[1] == "-" * (10 + len("destination"))
    assert lines[2:] == ["a".ljust(10) + "x", "abcdef    y", " " * 10 + "z"]
    # a title wider than every line sets the width
    assert report.side_by_side(["a"], ["b"])[2] == "a".ljust(len("source") + 4) + "b"


def test_merge_results():
    steps = [{"changed": False, "vm_uuid": "u", "timings": {"data_s": 1.0}, "warnings": ["w1"], "polls": 2,
              "message": "x"},
             {"changed": True, "timings": {"verify_s": 2.0}, "warnings": ["w1", "w2"], "polls": 3},
             {"changed": False, "vm_uuid": "u2", "message": "already verified"}]
    merged = report.merge_results(steps)
    assert merged["timings"] == {"data_s": 1.0, "verify_s": 2.0}
    assert merged["warnings"] == ["w1", "w2"]
    assert merged["changed"] is True and merged["polls"] == 5
    assert merged["vm_uuid"] == "u2", "later keys win"
    assert merged["message"] == "migrated"
    quiet = report.merge_results([{"changed": False}, {"message": "already verified"}])
    assert quiet["changed"] is False and quiet["message"] == "already migrated; nothing to do"
    assert report.merge_results([])["message"] == "already migrated; nothing to do"


def test_write_reports_writes_json_and_markdown_with_both_trees(tmp_path):
    result = {"vm_uuid": "u-1", "vm_name": "web01", "message": "migrated", "bytes_written": 42,
              "source_tree": TREE, "destination_tree": TREE, "warnings": ["slow pool"]}
    paths = report.write_reports(result, str(tmp_path / "reports"))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["sxm-u-1.json", "sxm-u-1.md", "sxm-u-1.html"]
    with open(paths[0]) as f:
        assert json.load(f) == result
    with open(paths[1]) as f:
        text = f.read()
    assert text.startswith("# Migration of web01")
    assert "- bytes written: 42" in text and "- slow pool" in text
    drawn = report.tree_lines(TREE)
    width = max(len(x) for x in drawn) + 4
    assert "\n".join(a.ljust(width) + a for a in drawn) in text, "both trees, side by side"


def test_the_html_trees_mark_the_active_path_reverted_branches_and_checkpoints(tmp_path):
    tree = {"nodes": [dict(n) for n in TREE["nodes"]]}
    tree["nodes"][3]["is_checkpoint"] = True                       # v2 has memory
    figures = {"v1": (3 << 20, 1.5)}
    svg = report_html.tree_svg(tree, "source-tree", figures)
    assert svg.count('<g class="node') == 5 and svg.count("<path") == 4
    assert '<g class="node reverted" data-uuid="v2-old"' in svg
    assert '<g class="node active checkpoint" data-uuid="v2"' in svg and "\u25c6 memory" in svg
    assert '<g class="node vm active" data-uuid="vm"' in svg and "3.0 MiB written, 1.5 s" in svg
    page = report_html.html({"vm_uuid": "u-1", "vm_name": "<web01>", "message": "migrated", "source_tree": tree,
                             "destination_tree": tree, "warnings": ["slow <pool>"]})
    assert "&lt;web01&gt;" in page and '<div class="warning">slow &lt;pool&gt;</div>' in page
    assert 'id="source-tree"' in page and 'id="destination-tree"' in page and "<script" not in page

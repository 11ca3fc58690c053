"""The HTML report as a user opens it: rendered by headless Chromium (Debian's `chromium`), its
DOM has both trees drawn with a node per snapshot and the VM, labelled with their names; its
screenshot (tests/output/report.png) has the size asked for and is not blank."""

import os
import struct
import subprocess
import zlib
from html.parser import HTMLParser

from xapisim.testing import guest_write, set_guest
from xapisim import scenario

from harness import REPO

MiB = 1 << 20
TREE = [("cbt", 0), ("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"),
        ("write", "c"), ("snap", "s3"), ("write", "d")]
SIZE = (1600, 1000)
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


class TreeNodes(HTMLParser):
    """{svg id: [data-name of each g.node]} of the page."""

    def __init__(self):
        super().__init__()
        self.svg, self.found = None, {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            self.svg = attrs.get("id")
            self.found[self.svg] = []
        elif tag == "g" and "node" in attrs.get("class", "").split() and self.svg:
            self.found[self.svg].append(attrs["data-name"])

    def handle_endtag(self, tag):
        if tag == "svg":
            self.svg = None


def png_size_and_colours(path):
    """(width, height) from the IHDR chunk, and how many distinct byte values the image data
    holds (a blank page's rows filter to one or two)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = b"", 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return (width, height), len(set(zlib.decompress(idat)))


def test_the_html_report_draws_both_trees(pools, connect, migrate, tmp_path):
    x = connect(0)
    vm, dummy = scenario.build_tree(pools[0], x, "html-report", [4 * MiB], TREE)
    x.xenapi.VM.start(vm, False, False)
    set_guest(pools[0], x, vm, tools=True, ack_timeout=1)
    x.xenapi.VM.checkpoint(vm, "with memory")
    guest_write(pools[0], x, vm, 0, MiB, b"written after the checkpoint")
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    stats, result = migrate(vm_uuid)
    assert stats["failed"] == 0
    page = tmp_path / "reports" / ("sxm-%s.html" % vm_uuid)
    assert page.exists()
    dom = subprocess.run(CHROMIUM + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    parser = TreeNodes()
    parser.feed(dom.stdout)
    names = sorted(n["name_label"] for n in result["source_tree"]["nodes"])
    assert len(names) == 5                        # s1, s2, s3, the checkpoint and the VM
    assert sorted(parser.found["source-tree"]) == names
    assert sorted(parser.found["destination-tree"]) == names
    assert "with memory" in names and "Warm migration" in dom.stdout and "downtime" in dom.stdout
    out = os.path.join(REPO, "tests", "output")
    os.makedirs(out, exist_ok=True)
    shot = os.path.join(out, "report.png")
    if os.path.exists(shot):
        os.remove(shot)
    subprocess.run(CHROMIUM + ["--window-size=%d,%d" % SIZE, "--screenshot=%s" % shot, page.as_uri()],
                   capture_output=True, timeout=120)
    size, colours = png_size_and_colours(shot)
    assert size == SIZE and colours > 16, (size, colours)

"""Issue 14: the README's "Getting started" shell blocks, run in a fresh clone as a new user would
(`make setup` included), then the HTML report whose path they print, opened in headless
Chromium: both trees are drawn."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

from harness import REPO  # noqa: E402
from test_html_report import CHROMIUM, TreeNodes  # noqa: E402


def getting_started_blocks(readme):
    """The ```sh blocks of the README's "Getting started" section."""
    section = readme.split("## Getting started", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_readme_gets_a_new_user_to_a_report(tmp_path):
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = getting_started_blocks(f.read())
    assert blocks, "the README has no shell block under Getting started"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "VIRTUAL_ENV", "PYTEST"))}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    output = ""
    for block in blocks:
        proc = subprocess.run(["bash", "-e", "-c", block], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=1800, check=False)
        output += proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-4000:]
    pages = re.findall(r"(/\S+?\.html)", output)
    assert pages, "no HTML report path printed:\n" + output[-3000:]
    dom = subprocess.run(CHROMIUM + ["--dump-dom", "file://" + pages[-1]], capture_output=True, text=True,
                         timeout=120, check=False)
    parser = TreeNodes()
    parser.feed(dom.stdout)
    assert len(parser.found["source-tree"]) == 5 and sorted(parser.found["source-tree"]) == \
        sorted(parser.found["destination-tree"])

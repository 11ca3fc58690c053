"""Unit tests import the collection's code as Ansible does:
``from ansible_collections.xapi.sxm.plugins.module_utils import tree``.

`make setup` links build/collections/ansible_collections/xapi/sxm to this repository; putting
build/collections on sys.path makes that import resolve to the working tree. When the link is
missing (tests run without `make setup`), one is made in a temporary directory instead.
"""

import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def collections_root():
    linked = os.path.join(REPO_ROOT, "build", "collections")
    if os.path.isdir(os.path.join(linked, "ansible_collections", "xapi", "sxm", "plugins")):
        return linked
    temporary = tempfile.mkdtemp(prefix="xapi-sxm-unit-")
    os.makedirs(os.path.join(temporary, "ansible_collections", "xapi"))
    os.symlink(REPO_ROOT, os.path.join(temporary, "ansible_collections", "xapi", "sxm"))
    return temporary


if not any(os.path.isdir(os.path.join(p, "ansible_collections", "xapi", "sxm")) for p in sys.path if p):
    sys.path.insert(0, collections_root())

"""docs/real-pool.md and the preflight stay in step: every check the page names exists, every
check of the preflight (``plan.check_*``) is on the page, and the page covers what a real pool
needs (issue 14: network purpose, port 10809, certificates, account and roles, CBT, SR types,
XAPI versions)."""

import importlib
import inspect
import os
import re

from ansible_collections.xapi.sxm.plugins.module_utils import plan

PAGE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "docs", "real-pool.md")
TOPICS = ("XAPI versions", "NBD network purpose", "Port 10809", "Certificates", "Account and roles", "CBT",
          "SR types")


def page():
    with open(PAGE) as f:
        return f.read()


def named_checks(text):
    return set(re.findall(r"`((?:plan|datapath|fleet|xapi)\.[a-z_]+)`", text))


def test_every_check_the_page_names_exists():
    for name in sorted(named_checks(page())):
        module, function = name.split(".")
        mod = importlib.import_module("ansible_collections.xapi.sxm.plugins.module_utils." + module)
        assert callable(getattr(mod, function, None)), "docs/real-pool.md names %s, which does not exist" % name


def test_every_check_of_the_preflight_is_on_the_page():
    checks = {"plan." + name for name, fn in inspect.getmembers(plan, inspect.isfunction)
              if name.startswith("check_") and fn.__module__ == plan.__name__}
    assert checks - named_checks(page()) == set()


def test_the_page_is_a_checklist_of_what_a_real_pool_needs():
    text = page()
    items = re.findall(r"^- \[ \] \*\*([^*]+)\*\*", text, re.M)
    for topic in TOPICS:
        assert any(item.startswith(topic) for item in items), topic
    assert "%d.%d" % plan.MIN_API_VERSION in text

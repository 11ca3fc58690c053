"""Every error code the collection raises has an entry on docs/troubleshooting.md: the codes are
found in the source (the error classes, every literal code given to an error, the XAPI codes
xapi.explain puts in words), not in a list kept by hand."""

import ast
import os
import re

from ansible_collections.xapi.sxm.plugins.module_utils import errors, xapi

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
PLUGINS = os.path.join(ROOT, "plugins")
PAGE = os.path.join(ROOT, "docs", "troubleshooting.md")
CODE = re.compile(r"^[A-Z][A-Z0-9_]{3,}$")


def literal_codes_given_to_errors():
    """Codes written where an error is made: ``SomeError(..., code="X")``, and a XapiFailure's
    second positional argument when it is a literal."""
    names = {cls.__name__ for cls in errors.error_classes()}
    found = set()
    for folder, dummy, files in os.walk(PLUGINS):
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(folder, name)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if called not in names:
                    continue
                values = [k.value for k in node.keywords if k.arg == "code"]
                if called == "XapiFailure" and len(node.args) > 1:
                    values.append(node.args[1])
                found.update(v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return {code for code in found if CODE.match(code)}


def raised_codes():
    return ({cls.code for cls in errors.error_classes()} | literal_codes_given_to_errors() | set(xapi.HINTS))


def documented_codes():
    with open(PAGE) as f:
        return set(re.findall(r"^### ([A-Z][A-Z0-9_]+)\s*$", f.read(), re.M))


def test_every_code_raised_has_an_entry_and_every_entry_a_code():
    raised, documented = raised_codes(), documented_codes()
    assert raised - documented == set(), "codes without an entry on docs/troubleshooting.md"
    assert documented - raised == set(), "entries for codes the collection no longer raises"


def test_the_enumeration_finds_codes_in_every_place_they_come_from():
    raised = raised_codes()
    assert {"SXM_PREFLIGHT", "XAPI_ERROR"} <= raised            # error classes
    assert {"SXM_TLS", "SXM_BAD_TIME", "CONNECTION_FAILED"} <= raised   # literals in the code
    assert {"SR_FULL", "HANDLE_INVALID"} <= raised              # XAPI codes explained

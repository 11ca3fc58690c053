"""Fixtures shared by the conformance and integration tests: two simulated pools for the whole
run, sessions of the real XenAPI client over verified HTTPS."""

import json
import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from xapisim import client  # noqa: E402
from xapisim.testing import xapisim  # noqa: E402


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xapisim"))


@pytest.fixture(scope="session")
def pools(state_dir):
    xapisim("up", "--state-dir", state_dir, "--pools", "2")
    with open(os.path.join(state_dir, "pools.json")) as f:
        entries = json.load(f)["pools"]
    yield entries
    xapisim("down", "--state-dir", state_dir)


@pytest.fixture
def connect(pools):
    """connect(pool=0, user="root") -> a logged-in XenAPI session; all logged out after."""
    sessions = []

    def make(pool=0, user="root"):
        session = client.login(pools[pool], user)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        try:
            session.xenapi.session.logout()
        except Exception:  # noqa: BLE001 - a test may have logged out already
            pass


@pytest.fixture
def xapi(connect):
    """A root session on pool 0."""
    return connect(0)

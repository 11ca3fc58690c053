"""Small helpers shared by the conformance tests."""

import json
import os
import subprocess
import sys

import pytest
import XenAPI

from . import client

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def xapisim(*args):
    """Run the simulator's command line (up, down, fault) and wait for it."""
    env = dict(os.environ, PYTHONPATH=TESTS_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "xapisim"] + list(args), env=env,
                          check=True, capture_output=True, text=True)


def pools_up(state_dir, *args):
    """``xapisim up --state-dir state_dir *args``; returns the pools of its pools.json."""
    xapisim("up", "--state-dir", state_dir, *args)
    with open(os.path.join(state_dir, "pools.json")) as f:
        return json.load(f)["pools"]


def error_of(call, *args):
    """The ErrorDescription of a call that must fail."""
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return info.value.details


def guest_write(pool, x, vm, userdevice, offset, data):
    """Write into a running VM's disk as its guest would (simulator-only endpoint)."""
    status, _, body = client.http_request(
        pool, "POST", "/xapisim/guest_write",
        {"vm": x.xenapi.VM.get_uuid(vm), "userdevice": str(userdevice), "offset": str(offset)},
        x, data)
    assert status == 200, body


def set_guest(pool, x, vm, **spec):
    """Give a VM guest tools or not, or a shorter acknowledgement timeout (simulator-only)."""
    status, _, body = client.http_request(
        pool, "POST", "/xapisim/guest", {"vm": x.xenapi.VM.get_uuid(vm)}, x,
        json.dumps(spec).encode())
    assert status == 200, body
    return json.loads(body)

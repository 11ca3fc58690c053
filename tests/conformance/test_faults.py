"""Simulator-only fault injection on XAPI calls (DESIGN.md 'Testbed'; docs/xapisim.md)."""

import json

import pytest
import XenAPI

from xapisim import client


def add_fault(pool, session, spec):
    status, _, body = client.http_request(pool, "POST", "/xapisim/faults", session=session,
                                          body=json.dumps(spec).encode(),
                                          headers={"Content-Type": "application/json"})
    assert status == 200, body
    return json.loads(body)


def test_nth_call_of_a_method_fails_with_the_given_error(pools, xapi):
    """The 2nd next call of network.get_all fails with the injected XAPI error; others pass."""
    add_fault(pools[0], xapi, {"kind": "call", "method": "network.get_all", "nth": 2,
                               "error": ["SR_BACKEND_FAILURE_44", "", "No space left", ""]})
    xapi.xenapi.network.get_all()
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.network.get_all()
    assert e.value.details == ["SR_BACKEND_FAILURE_44", "", "No space left", ""]
    xapi.xenapi.network.get_all()


def test_faults_need_a_root_session(pools, connect):
    """The control endpoint refuses sessions that are not local root."""
    admin = connect(0, "pool-admin")
    status, _, _ = client.http_request(pools[0], "POST", "/xapisim/faults", session=admin,
                                       body=b'{"kind": "clear"}')
    assert status == 401

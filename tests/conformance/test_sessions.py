"""Sessions and RBAC (XAPI-FACTS §3 and §7; checklist facts 7 and 16)."""

import xmlrpc.client

import pytest
import XenAPI

from xapisim import client


def raw_call(pool, method, *params):
    """A call without XenAPI.Session, which would silently log in again on SESSION_INVALID."""
    body = xmlrpc.client.dumps(params, method).encode()
    status, _, data = client.http_request(pool, "POST", "/", body=body)
    assert status == 200
    return xmlrpc.client.loads(data)[0][0]


def test_root_login_is_local_superuser(xapi):
    """§3: a login as local root yields is_local_superuser=true; the originator is kept."""
    me = xapi.xenapi.session.get_record(xapi._session)
    assert me["is_local_superuser"] is True
    assert me["originator"] == "xapisim-tests"
    assert me["this_host"] == xapi.xenapi.host.get_all()[0]


def test_pool_admin_login_is_not_superuser(connect):
    """§3: a pool-admin account is not a local superuser."""
    admin = connect(0, "pool-admin")
    me = admin.xenapi.session.get_record(admin._session)
    assert me["is_local_superuser"] is False
    assert me["auth_user_name"] == "pool-admin"


def test_wrong_password_fails_with_two_parameters(pools):
    """Fact 16: SESSION_AUTHENTICATION_FAILED is raised with [uname, message]."""
    pool = dict(pools[0], password="wrong")
    with pytest.raises(XenAPI.Failure) as e:
        client.login(pool)
    assert e.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    assert e.value.details[1] == pool["username"] and len(e.value.details) == 3


def test_logged_out_session_is_invalid(pools):
    """Fact 16: a call with a logged-out session fails with SESSION_INVALID [ref]."""
    session = client.login(pools[0])
    ref = session._session
    assert raw_call(pools[0], "VM.get_all", ref)["Status"] == "Success"
    session.xenapi.session.logout()
    assert raw_call(pools[0], "VM.get_all", ref) == {"Status": "Failure",
                                                     "ErrorDescription": ["SESSION_INVALID", ref]}


def test_session_of_one_pool_is_invalid_on_the_other(pools, connect):
    """Two pools share no sessions."""
    s0 = connect(0)
    assert raw_call(pools[1], "VM.get_all", s0._session) == {
        "Status": "Failure", "ErrorDescription": ["SESSION_INVALID", s0._session]}


def test_rbac_denies_hidden_setters_to_pool_admin(connect, xapi):
    """Fact 7: messages with roles=[] (hidden VDI setters) pass RBAC only for local
    superusers: RBAC_PERMISSION_DENIED [permission, message] for a pool-admin."""
    admin = connect(0, "pool-admin")
    sr = admin.xenapi.pool.get_default_SR(admin.xenapi.pool.get_all()[0])
    with pytest.raises(XenAPI.Failure) as e:
        admin.xenapi.SR.set_virtual_allocation(sr, "1")
    assert e.value.details[0] == "RBAC_PERMISSION_DENIED"
    assert e.value.details[1] == "sr.set_virtual_allocation"
    # the same call as root passes RBAC
    allocation = xapi.xenapi.SR.get_virtual_allocation(sr)
    xapi.xenapi.SR.set_virtual_allocation(sr, allocation)


def test_pool_admin_may_tag_its_own_session(connect):
    """§3: session.add_to_other_config has role pool-admin (how a client would claim
    _sm_session) and is allowed to a pool-admin."""
    admin = connect(0, "pool-admin")
    admin.xenapi.session.add_to_other_config(admin._session, "k", "v")
    assert admin.xenapi.session.get_other_config(admin._session) == {"k": "v"}

"""Wire formats and generic errors (XAPI-FACTS §7, §8; checklist facts 15 and 16)."""

import json
import re
import xmlrpc.client

import pytest
import XenAPI

from xapisim import client


def raw_xmlrpc(pool, method, params):
    body = xmlrpc.client.dumps(tuple(params), method).encode()
    status, headers, data = client.http_request(pool, "POST", "/", body=body,
                                                headers={"Content-Type": "text/xml"})
    assert status == 200
    return data.decode()


def jsonrpc(pool, payload):
    status, headers, data = client.http_request(pool, "POST", "/jsonrpc",
                                                body=json.dumps(payload).encode(),
                                                headers={"Content-Type": "application/json"})
    assert status == 200
    return json.loads(data)


def test_xmlrpc_ints_are_strings_and_datetimes_have_no_dashes(pools, xapi):
    """Fact 15: an int is a decimal string; a datetime is dateTime.iso8601 YYYYMMDDTHH:MM:SSZ;
    the result is a struct {Status: Success, Value: ...}."""
    session = xapi._session
    host = xapi.xenapi.host.get_all()[0]
    text = raw_xmlrpc(pools[0], "host.get_API_version_major", [session, host])
    assert "<name>Status</name>" in text and "Success" in text
    value = xmlrpc.client.loads(text)[0][0]["Value"]
    assert value == "2" and isinstance(value, str)
    sr = xapi.xenapi.pool.get_default_SR(xapi.xenapi.pool.get_all()[0])
    text = raw_xmlrpc(pools[0], "SR.get_record", [session, sr])
    record = xmlrpc.client.loads(text)[0][0]["Value"]
    assert isinstance(record["physical_size"], str) and int(record["physical_size"]) > 0
    task = xapi.xenapi.task.create("wire", "datetime check")
    text = raw_xmlrpc(pools[0], "task.get_created", [session, task])
    assert re.search(r"<dateTime.iso8601>\d{8}T\d\d:\d\d:\d\dZ</dateTime.iso8601>", text)
    xapi.xenapi.task.destroy(task)


def test_xmlrpc_failure_shape(pools):
    """Fact 15: a failure is {Status: Failure, ErrorDescription: [code, params...]}."""
    text = raw_xmlrpc(pools[0], "VM.get_all", ["OpaqueRef:not-a-session"])
    value = xmlrpc.client.loads(text)[0][0]
    assert value == {"Status": "Failure",
                     "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:not-a-session"]}


def test_jsonrpc_v2_and_v1_errors(pools, xapi):
    """Fact 15: JSON-RPC v2 errors are {code: 1, message: CODE, data: params}; v1 errors are
    [code, params...] with result null; both accept the session of an XML-RPC login."""
    v2 = jsonrpc(pools[0], {"jsonrpc": "2.0", "method": "VM.get_record",
                            "params": [xapi._session, "OpaqueRef:nope"], "id": 7})
    assert v2 == {"jsonrpc": "2.0", "id": 7,
                  "error": {"code": 1, "message": "HANDLE_INVALID", "data": ["VM", "OpaqueRef:nope"]}}
    v1 = jsonrpc(pools[0], {"method": "VM.get_record", "params": [xapi._session, "OpaqueRef:nope"],
                            "id": 8})
    assert v1 == {"result": None, "error": ["HANDLE_INVALID", "VM", "OpaqueRef:nope"], "id": 8}
    ok = jsonrpc(pools[0], {"jsonrpc": "2.0", "method": "host.get_API_version_major",
                            "params": [xapi._session, xapi.xenapi.host.get_all()[0]], "id": 9})
    assert ok["result"] == 2


def test_unknown_method(xapi):
    """Fact 15: MESSAGE_METHOD_UNKNOWN [method]."""
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.VM.frobnicate()
    assert e.value.details == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]


def test_parameter_count_excludes_session_and_defaulted_trailing_params(xapi):
    """Fact 15: counts exclude session_id; trailing parameters with defaults may be omitted,
    and 'expected' counts only the parameters without defaults."""
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.VM.get_record()
    assert e.value.details == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "0"]
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.VM.get_record("a", "b")
    assert e.value.details == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "2"]
    # VDI.snapshot(vdi, driver_params={}): driver_params has a default, so 1 or 2 are accepted
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.VDI.snapshot()
    assert e.value.details == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VDI.snapshot", "1", "0"]
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.VDI.snapshot("OpaqueRef:x")
    assert e.value.details[0] == "HANDLE_INVALID"


def test_handle_invalid(xapi):
    """Fact 16: HANDLE_INVALID [class, handle]."""
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.SR.get_name_label("OpaqueRef:00000000-0000-0000-0000-000000000000")
    assert e.value.details == ["HANDLE_INVALID", "SR", "OpaqueRef:00000000-0000-0000-0000-000000000000"]


def test_uuid_invalid(xapi):
    """An unknown uuid: UUID_INVALID [class, uuid] (errors.json)."""
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.VM.get_by_uuid("11111111-2222-3333-4444-555555555555")
    assert e.value.details == ["UUID_INVALID", "VM", "11111111-2222-3333-4444-555555555555"]


def test_async_without_async_mode(xapi):
    """XAPI-FACTS §7: Async. on a message without async support fails with a Fault."""
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.Async.VM.get_all()
    assert e.value.details == ["Fault", "No async mode for this operation (rpc: Async.VM.get_all)"]


def test_get_all_records_where_uses_database_columns(xapi):
    """XAPI's filter language names namespaced fields with '__' (name__label) and compares
    the stored text of a value ("true", refs)."""
    srs = xapi.xenapi.SR.get_all_records_where('field "name__label" = "Local storage"')
    assert [r["name_label"] for r in srs.values()] == ["Local storage"]
    v3 = xapi.xenapi.SR.get_all_records_where(
        'field "type"="file-v3" or (field "type"="ext" and not field "shared"="false")')
    assert [r["type"] for r in v3.values()] == ["file-v3"]
    none = xapi.xenapi.SR.get_all_records_where('false')
    assert none == {}

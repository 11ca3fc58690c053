"""The raw disk handlers PUT /import_raw_vdi and GET /export_raw_vdi (XAPI-FACTS §6, fact 13),
their sessions and tasks (§6 "Common", §7, fact 14), as xen-api's import_raw_vdi.ml,
export_raw_vdi.ml, xapi_http.ml and vhd-tool's impl.ml do them."""

import http.client
import json
import threading
import time
import urllib.parse

import pytest

from xapisim import client, scenario

MiB = 1 << 20


def make_vdi(x, size=4 * MiB, label="http-test"):
    return x.xenapi.VDI.create({
        "name_label": label, "name_description": "", "SR": scenario.default_sr(x),
        "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []})


def add_fault(pool, x, spec):
    status, _, body = client.http_request(pool, "POST", "/xapisim/faults", session=x,
                                          body=json.dumps(spec).encode())
    assert status == 200, body


def put(pool, x, query, body, length=True, headers=None):
    headers = dict(headers or {})
    if length:
        headers["Content-Length"] = str(len(body))
    try:
        return client.http_request(pool, "PUT", "/import_raw_vdi", query, x, body, headers)
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        return None, {}, repr(e).encode()


def export(pool, x, vdi_uuid):
    status, headers, body = client.http_request(pool, "GET", "/export_raw_vdi", {"vdi": vdi_uuid}, x)
    assert status == 200, body
    return headers, body


def wait_task(x, task, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = x.xenapi.task.get_record(task)
        if rec["status"] != "pending":
            return rec
        time.sleep(0.05)
    raise AssertionError("task still pending")


def test_chunked_import_lands_byte_exact(pools, xapi):
    """Fact 13 / datapath §6.2: {u64 LE offset, u32 LE len} frames, a real frame at offset 0,
    frames out of order, only those ranges written; the caller's task_id is completed with
    the VDI ref as an XML-RPC fragment and kept (§6 Common, §7)."""
    vdi = make_vdi(xapi)
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    writes = [(3 * MiB, b"C" * 70000), (0, b"A" * 1000), (MiB + 17, b"B" * 5)]
    body = scenario.chunked_body(writes)
    task = xapi.xenapi.task.create("chunked", "")
    status, headers, _ = put(pools[0], xapi, {"vdi": uuid, "format": "raw", "chunked": "true",
                                              "task_id": task}, body)
    assert status == 200 and headers["task-id"] == task
    rec = xapi.xenapi.task.get_record(task)
    assert rec["status"] == "success" and rec["progress"] == 1.0
    assert rec["result"] == "<value>%s</value>" % vdi
    expected = bytearray(4 * MiB)
    for offset, data in writes:
        expected[offset:offset + len(data)] = data
    export_headers, content = export(pools[0], xapi, uuid)
    assert content == bytes(expected)
    assert export_headers["content-disposition"] == 'attachment; filename="%s.raw"' % uuid
    xapi.xenapi.task.destroy(task)


def test_raw_import_writes_from_zero_and_reports_progress(pools, xapi):
    """§6: raw without chunked writes the body from offset 0 (serve_raw_to_raw) and moves the
    task's progress as bytes arrive; the handler's own task (task-id header) is gone after."""
    vdi = make_vdi(xapi, 8 * MiB)
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    data = scenario.pattern("raw", 6 * MiB)
    task = xapi.xenapi.task.create("raw", "")
    add_fault(pools[0], xapi, {"kind": "bandwidth", "bytes_per_second": 4 * MiB})
    seen = []
    try:
        thread = threading.Thread(target=lambda: seen.append(
            put(pools[0], xapi, {"vdi": uuid, "task_id": task}, data)))
        thread.start()
        progress = []
        while thread.is_alive():
            progress.append(xapi.xenapi.task.get_progress(task))
            time.sleep(0.1)
        thread.join()
    finally:
        add_fault(pools[0], xapi, {"kind": "bandwidth", "bytes_per_second": 0})
    assert seen[0][0] == 200
    assert any(0.0 < p < 1.0 for p in progress), progress
    assert export(pools[0], xapi, uuid)[1][:6 * MiB] == data
    status, headers, _ = put(pools[0], xapi, {"vdi": uuid}, b"x" * 512)
    assert status == 200
    with pytest.raises(Exception) as info:
        xapi.xenapi.task.get_record(headers["task-id"])
    assert "HANDLE_INVALID" in str(info.value)


def test_raw_import_without_content_length_reads_the_whole_disk(pools, xapi):
    """vhd_tool_wrapper.receive: without Content-Length vhd-tool takes the device size as the
    length, so a body of exactly the VDI's size, sent with neither Content-Length nor
    Transfer-Encoding, is written whole."""
    vdi = make_vdi(xapi, 2 * MiB)
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    data = scenario.pattern("nolen", 2 * MiB)
    url = urllib.parse.urlsplit(pools[0]["url"])
    conn = http.client.HTTPSConnection(url.hostname, url.port,
                                       context=client.ssl_context(pools[0]), timeout=60)
    conn.putrequest("PUT", "/import_raw_vdi?" + urllib.parse.urlencode({"vdi": uuid}))
    conn.putheader("Cookie", "session_id=%s" % xapi._session)
    conn.endheaders()
    conn.send(data)
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 200
    assert export(pools[0], xapi, uuid)[1] == data


def test_transfer_encoding_chunked_is_refused(pools, xapi):
    """import_raw_vdi.ml: any HTTP Transfer-Encoding -> HTTP/1.0 404 and the task fails with
    INTERNAL_ERROR ["Cannot handle encoding: chunked"]; nothing is written."""
    vdi = make_vdi(xapi)
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    task = xapi.xenapi.task.create("te", "")
    body = iter([scenario.chunked_body([(0, b"Z" * 4096)])])   # http.client chunk-encodes it
    status, _, _ = put(pools[0], xapi, {"vdi": uuid, "chunked": "true", "task_id": task}, body,
                       length=False)
    assert status == 404
    rec = xapi.xenapi.task.get_record(task)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["INTERNAL_ERROR", "Cannot handle encoding: chunked"]
    assert export(pools[0], xapi, uuid)[1][:4096] == bytes(4096)


def test_bad_session_is_401_and_leaves_the_task(pools, xapi):
    """xapi_http.ml assert_credentials_ok runs before the handler: an invalid session_id gets
    HTTP 401 (WWW-Authenticate Basic) and a caller-given task is not touched (only
    with_context, not reached here, fails it with SESSION_AUTHENTICATION_FAILED)."""
    vdi = make_vdi(xapi)
    task = xapi.xenapi.task.create("unauth", "")
    url = urllib.parse.urlsplit(pools[0]["url"])
    conn = http.client.HTTPSConnection(url.hostname, url.port,
                                       context=client.ssl_context(pools[0]), timeout=60)
    body = scenario.chunked_body([(0, b"Q" * 512)])
    conn.request("PUT", "/import_raw_vdi?" + urllib.parse.urlencode(
        {"vdi": xapi.xenapi.VDI.get_uuid(vdi), "chunked": "true", "task_id": task,
         "session_id": "OpaqueRef:00000000-0000-0000-0000-000000000000"}),
        body=body, headers={"Content-Length": str(len(body))})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 401
    assert response.getheader("WWW-Authenticate", "").startswith("Basic realm=")
    assert xapi.xenapi.task.get_status(task) == "pending"
    xapi.xenapi.task.destroy(task)


def test_refusals_before_the_data(pools, xapi):
    """import_raw_vdi.ml / importexport.ml: unknown format -> 404 + INTERNAL_ERROR
    ["Unknown format <f>"]; chunked with vhd -> 404 + ["Cannot handle chunked VHD"]; an
    unknown VDI uuid -> UUID_INVALID escaping the handler, HTTP 500."""
    vdi = make_vdi(xapi)
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    body = scenario.chunked_body([(0, b"x" * 512)])
    for query, message in (({"format": "bogus"}, "Unknown format bogus"),
                           ({"format": "vhd", "chunked": "true"}, "Cannot handle chunked VHD")):
        task = xapi.xenapi.task.create("refusal", "")
        status, _, _ = put(pools[0], xapi, dict(query, vdi=uuid, task_id=task), body)
        assert status == 404
        assert xapi.xenapi.task.get_error_info(task) == ["INTERNAL_ERROR", message]
    status, _, page = put(pools[0], xapi, {"vdi": "no-such-uuid", "chunked": "true"}, body)
    assert status == 500 and b"UUID_INVALID" in page


def test_failures_while_writing_fail_the_task(pools, xapi):
    """A write past the VDI's end -> VDI_IO_ERROR ["Device I/O errors"] (vhd-tool fails); a
    VDI plugged into a running VM -> VDI_IN_USE [vdi] (the dom0 RW plug, xapi_vbd_helpers);
    both after the 200, so only the task tells."""
    vdi = make_vdi(xapi, 2 * MiB)
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    task = xapi.xenapi.task.create("past-end", "")
    put(pools[0], xapi, {"vdi": uuid, "chunked": "true", "task_id": task},
        scenario.chunked_body([(2 * MiB - 10, b"E" * 20)]))
    assert wait_task(xapi, task)["error_info"] == ["VDI_IO_ERROR", "Device I/O errors"]
    vm = scenario.create_vm(xapi, "http-in-use", [MiB])
    disk = scenario.disks(xapi, vm)["0"]
    xapi.xenapi.VM.start(vm, False, False)
    task = xapi.xenapi.task.create("in-use", "")
    put(pools[0], xapi, {"vdi": xapi.xenapi.VDI.get_uuid(disk), "chunked": "true",
                         "task_id": task}, scenario.chunked_body([(0, b"U" * 512)]))
    assert wait_task(xapi, task)["error_info"] == ["VDI_IN_USE", disk]
    xapi.xenapi.VM.hard_shutdown(vm)


def test_import_fail_fault_fails_the_task_and_leaves_the_vdi_usable(pools, xapi):
    """Simulator fault import_fail (docs/xapisim.md): the task fails with the given error after
    the given bytes; the VDI takes the next import normally."""
    vdi = make_vdi(xapi)
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    add_fault(pools[0], xapi, {"kind": "import_fail", "after_bytes": 4096,
                               "error": ["SR_BACKEND_FAILURE_44", "", "no space", ""]})
    task = xapi.xenapi.task.create("faulty", "")
    put(pools[0], xapi, {"vdi": uuid, "chunked": "true", "task_id": task},
        scenario.chunked_body([(0, b"F" * 65536)]))
    assert wait_task(xapi, task)["error_info"] == ["SR_BACKEND_FAILURE_44", "", "no space", ""]
    add_fault(pools[0], xapi, {"kind": "import_fail", "after_bytes": 100, "cut": True})
    status, _, _ = put(pools[0], xapi, {"vdi": uuid, "chunked": "true"},
                       scenario.chunked_body([(0, b"G" * 65536)]))
    assert status in (None, 200)
    writes = [(0, b"H" * 65536), (MiB, b"I" * 10)]
    status, _, _ = put(pools[0], xapi, {"vdi": uuid, "chunked": "true"},
                       scenario.chunked_body(writes))
    assert status == 200
    content = export(pools[0], xapi, uuid)[1]
    assert content[:65536] == b"H" * 65536 and content[MiB:MiB + 10] == b"I" * 10


def test_export_raw_vdi_refuses_a_base_on_raw_disks(pools, xapi):
    """§6: a differencing export needs VHD images ("Cannot compute differences on non-VHD
    images"); the simulator's disks are raw files, so the task fails."""
    vdi = make_vdi(xapi)
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    task = xapi.xenapi.task.create("base", "")
    status, headers, _ = client.http_request(pools[0], "GET", "/export_raw_vdi",
                                             {"vdi": uuid, "base": uuid, "task_id": task}, xapi)
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    assert xapi.xenapi.task.get_error_info(task) == [
        "INTERNAL_ERROR", "Cannot compute differences on non-VHD images"]


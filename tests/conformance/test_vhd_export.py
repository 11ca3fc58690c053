"""GET /export_raw_vdi?format=vhd[&base=] (shared/research/vhd-export-and-host-costs.md 1):
the stream vhd-tool writes, read by a reader nobody here wrote (qemu-img's ``vpc`` driver),
its blocks those of the VDI's VHD chain (relative to a base: the symmetric difference), the
200 sent before any check so that failures show only in the task."""

import http.client
import json
import socket
import struct
import subprocess
import time
import urllib.parse

from xapisim import client, scenario, vhd

MiB = 1 << 20
BLOCK = 2 * MiB


def sr_of_type(x, sr_type):
    return [sr for sr, rec in x.xenapi.SR.get_all_records().items() if rec["type"] == sr_type][0]


def write(pools, x, vdi, writes):
    scenario.write_disk(pools[0], x, vdi, writes)


def export(pool, x, query):
    task = x.xenapi.task.create("vhd export", "")
    status, headers, body = client.http_request(pool, "GET", "/export_raw_vdi",
                                                dict(query, task_id=task), x)
    assert status == 200
    return task, headers, body


def qemu_img(*args):
    return subprocess.run(["qemu-img"] + list(args), check=True, capture_output=True).stdout


def vpc_opts(path):
    # vhd-tool's footer names creator "caml": qemu would size the disk from the CHS geometry
    # (rounded down) unless told to trust current_size
    return "driver=vpc,force_size_calc=current_size,file.filename=%s" % path


def allocated_blocks(path):
    """2 MiB blocks qemu-img map reports as holding data."""
    out = json.loads(qemu_img("map", "--output=json", "--image-opts", vpc_opts(path)))
    blocks = set()
    for extent in out:
        if extent["data"]:
            blocks.update(range(extent["start"] // BLOCK, (extent["start"] + extent["length"]) // BLOCK))
    return blocks


def test_full_vhd_export_read_by_qemu_equals_the_vdi(pools, xapi, tmp_path):
    vm = scenario.create_vm(xapi, "vhd-full", [9 * MiB + 4096])
    vdi = scenario.disks(xapi, vm)["0"]
    size = int(xapi.xenapi.VDI.get_virtual_size(vdi))     # a VHD SR rounds up to 2 MiB
    write(pools, xapi, vdi, [(0, b"a" * 5000), (5 * MiB - 10, b"b" * 20), (9 * MiB, b"c" * 4096)])
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    task, headers, body = export(pools[0], xapi, {"vdi": uuid, "format": "vhd"})
    assert headers["content-type"] == "application/vhd"
    assert xapi.xenapi.task.get_status(task) == "success"
    entries = vhd.blocks_of(size)
    table = vhd.bat_bytes(entries)
    assert len(body) == 2048 + table + 3 * (512 + BLOCK) + 512   # blocks 0, 2 and 4
    assert body[:512] == body[-512:] and body[:8] == b"conectix" and body[512:520] == b"cxsparse"
    assert struct.unpack(">I", body[60:64])[0] == vhd.DYNAMIC
    assert body[1536:2048] == bytes(512)
    path = tmp_path / "full.vhd"
    path.write_bytes(body)
    raw = tmp_path / "full.raw"
    qemu_img("convert", "-O", "raw", "--image-opts", vpc_opts(path), str(raw))
    status, dummy, content = client.http_request(pools[0], "GET", "/export_raw_vdi", {"vdi": uuid}, xapi)
    assert raw.read_bytes() == content and len(content) == size
    assert allocated_blocks(path) == {0, 2, 4}
    xapi.xenapi.task.destroy(task)


def test_base_export_holds_the_blocks_changed_between_base_and_vdi(pools, xapi, tmp_path):
    """Ancestor snapshot, sibling snapshot: the blocks qemu-img map shows allocated are those
    written on either side since the common VHD parent, with the VDI's current content."""
    size = 16 * MiB
    vm = scenario.create_vm(xapi, "vhd-base", [size])
    vdi = scenario.disks(xapi, vm)["0"]
    write(pools, xapi, vdi, [(0, b"x" * BLOCK), (3 * BLOCK, b"y" * 100)])
    s1 = xapi.xenapi.VM.snapshot(vm, "s1")
    write(pools, xapi, vdi, [(BLOCK + 7, b"z" * 10), (3 * BLOCK, b"w" * 100)])
    s2 = xapi.xenapi.VM.snapshot(vm, "s2")
    write(pools, xapi, vdi, [(6 * BLOCK, b"v" * 10)])
    s1_vdi = scenario.disks(xapi, s1)["0"]
    s2_vdi = scenario.disks(xapi, s2)["0"]
    uuid, s1_uuid, s2_uuid = (xapi.xenapi.VDI.get_uuid(v) for v in (vdi, s1_vdi, s2_vdi))

    def base_export(of, base):
        task, dummy, body = export(pools[0], xapi, {"vdi": of, "base": base, "format": "vhd"})
        assert xapi.xenapi.task.get_status(task) == "success"
        xapi.xenapi.task.destroy(task)
        assert struct.unpack(">I", body[60:64])[0] == vhd.DIFFERENCING
        path = tmp_path / ("%s-%s.vhd" % (of, base))
        path.write_bytes(body)
        return path

    assert allocated_blocks(base_export(s2_uuid, s1_uuid)) == {1, 3}          # s1 -> s2
    assert allocated_blocks(base_export(uuid, s2_uuid)) == {6}                 # s2 -> the disk
    assert allocated_blocks(base_export(uuid, s1_uuid)) == {1, 3, 6}
    assert allocated_blocks(base_export(s1_uuid, s2_uuid)) == {1, 3}          # backwards too
    delta = base_export(uuid, s1_uuid)
    raw = tmp_path / "delta.raw"
    qemu_img("convert", "-O", "raw", "--image-opts", vpc_opts(delta), str(raw))
    status, dummy, content = client.http_request(pools[0], "GET", "/export_raw_vdi", {"vdi": uuid}, xapi)
    got = raw.read_bytes()
    for block in (1, 3, 6):   # included blocks carry the VDI's current content
        assert got[block * BLOCK:(block + 1) * BLOCK] == content[block * BLOCK:(block + 1) * BLOCK]


def test_a_reader_that_drops_the_stream_after_the_table_fails_the_task(pools, xapi):
    """Xen Orchestra reads footer, header and BAT, then closes: vhd-tool fails writing and the
    task ends in VDI_IO_ERROR."""
    vm = scenario.create_vm(xapi, "vhd-drop", [64 * MiB])
    vdi = scenario.disks(xapi, vm)["0"]
    write(pools, xapi, vdi, [(i * BLOCK, b"q" * BLOCK) for i in range(32)])
    uuid = xapi.xenapi.VDI.get_uuid(vdi)
    task = xapi.xenapi.task.create("drop", "")
    url = urllib.parse.urlsplit(pools[0]["url"])
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=client.ssl_context(pools[0]))
    conn.request("GET", "/export_raw_vdi?" + urllib.parse.urlencode(
        {"vdi": uuid, "format": "vhd", "task_id": task, "session_id": xapi._session}))
    head = conn.getresponse().read(2048 + vhd.bat_bytes(32))
    assert struct.unpack(">I", head[2048:2052])[0] != vhd.UNUSED
    conn.close()
    deadline = time.monotonic() + 20
    while xapi.xenapi.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert xapi.xenapi.task.get_error_info(task) == ["VDI_IO_ERROR", "Device I/O errors"]
    xapi.xenapi.task.destroy(task)


def test_a_client_gone_before_the_answer_leaves_no_pending_task(pools, xapi):
    """Server_helpers.exec_with_context fails a caller's task on any exception of the
    handler, a write to a client that went away included; XAPI would otherwise keep the task
    pending for 24 h (db_gc_util.ml)."""
    vm = scenario.create_vm(xapi, "vhd-gone", [8 * MiB])
    uuid = xapi.xenapi.VDI.get_uuid(scenario.disks(xapi, vm)["0"])
    url = urllib.parse.urlsplit(pools[0]["url"])
    tasks = []
    for path, query in (("/export_raw_vdi", {"format": "vhd"}), ("/import_raw_vdi", {"chunked": "true"})):
        task = xapi.xenapi.task.create("gone", "")
        tasks.append(task)
        conn = http.client.HTTPSConnection(url.hostname, url.port, context=client.ssl_context(pools[0]))
        conn.putrequest("GET" if path == "/export_raw_vdi" else "PUT", path + "?" + urllib.parse.urlencode(
            dict(query, vdi=uuid, task_id=task, session_id=xapi._session)))
        conn.endheaders()
        # a reset, not a clean close: the handler's first write fails
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(xapi.xenapi.task.get_status(t) == "pending" for t in tasks):
        time.sleep(0.05)
    assert [xapi.xenapi.task.get_status(t) for t in tasks] == ["failure", "failure"]
    for task in tasks:
        xapi.xenapi.task.destroy(task)


def test_smapiv3_volumes_export_whole_but_refuse_a_base(pools, xapi):
    sr = sr_of_type(xapi, "file-v3")
    vm = scenario.create_vm(xapi, "vhd-v3", [8 * MiB], sr=sr)
    vdi = scenario.disks(xapi, vm)["0"]
    write(pools, xapi, vdi, [(5 * MiB, b"k" * 10)])
    snap = scenario.disks(xapi, xapi.xenapi.VM.snapshot(vm, "v3-s"))["0"]
    uuid, snap_uuid = xapi.xenapi.VDI.get_uuid(vdi), xapi.xenapi.VDI.get_uuid(snap)
    task, dummy, body = export(pools[0], xapi, {"vdi": uuid, "format": "vhd", "base": snap_uuid})
    assert xapi.xenapi.task.get_error_info(task) == [
        "INTERNAL_ERROR", "Cannot compute differences on non-VHD images"]
    task, dummy, body = export(pools[0], xapi, {"vdi": uuid, "format": "vhd"})
    assert xapi.xenapi.task.get_status(task) == "success"
    assert struct.unpack(">I", body[2048 + 4 * 2:2048 + 4 * 3])[0] != vhd.UNUSED   # block 2
    assert len(body) == 2048 + vhd.bat_bytes(4) + (512 + BLOCK) + 512

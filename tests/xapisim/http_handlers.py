"""XAPI's HTTP data handlers: /import_raw_vdi, /export_raw_vdi, /export_metadata, /import_metadata.

Followed from xen-api master (e2ee48d6): ``xapi_http.ml`` (credentials, task handling),
``import_raw_vdi.ml``, ``export_raw_vdi.ml``, ``importexport.ml``, ``vhd_tool_wrapper.ml``,
vhd-tool ``impl.ml`` (``serve_raw_to_raw``, ``serve_chunked_to_raw``), ``export.ml`` and
``import.ml`` (the metadata part lives in ``ova.py``). What XAPI does and the simulator copies:

* Credentials come first (``Xapi_http.add_handler`` -> ``assert_credentials_ok``): no valid
  ``session_id`` (cookie first, then query) -> HTTP 401 and a caller-given ``task_id`` is left
  untouched (only ``with_context`` fails the task, and it is not reached); a role without the
  handler's permission -> 403 and the given task fails with ``RBAC_PERMISSION_DENIED``.
  HTTP Basic auth and client certificates are not simulated.
* ``with_context``: the handler runs as the caller's ``task_id`` (completed or failed by the
  handler, never destroyed) or as a task of its own (destroyed when the handler ends, as
  ``Context`` does for the tasks it creates). The ``task-id`` header names it.
* ``import_raw_vdi`` and ``export_raw_vdi`` on a host that does not see the VDI's SR answer
  ``302 Found`` with ``Location: https://<address of a host that does><path>?<query>`` and close
  (``Importexport.return_302_redirect``), before reading any body: only the query travels, not
  the cookie. XAPI's URL has no port (443 on every host); the simulator's hosts share the
  pool's port, which its Location names.
* Responses are answered before the body is read; a failure after that point fails the task and
  closes the connection, so a client must look at the task, not at the 200.
"""

import os
import socket
import struct
import threading
import time
import urllib.parse
import uuid as uuidlib

from . import ops_vdi
from .api import Context
from .errors import XapiError
from .faults import Throttle
from .model import datamodel, now_text
from .server import route
from .storage import data_bytes
from . import ova, vhd

PIECE = 1 << 20                   # bytes moved per read/write
CHUNK_HEADER = struct.Struct("<QI")  # vhd-tool chunked.ml: {u64 offset; u32 len}, little endian
RAW_FORMATS = ("raw", "vhd", "tar", "qcow2")   # Importexport.Format.of_string
CONTENT_TYPES = {"raw": "application/octet-stream", "vhd": "application/vhd",
                 "tar": "application/x-tar", "qcow2": "application/x-qemu-disk"}
MAX_VHD_SIZE = 2040 << 30        # xapi-consts max_vhd_size: format=vhd refuses larger VDIs
IO_ERROR = ("VDI_IO_ERROR", "Device I/O errors")   # vhd_tool_wrapper: any vhd-tool failure
UNAUTHORISED_BODY = (b"<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials "
                     b"and retry.</body></html>")
FORBIDDEN_BODY = (b"<html><body><h1>HTTP 403 forbidden</h1>Access to the requested resource "
                  b"is forbidden.</body></html>")

_throttles = {}
_throttles_lock = threading.Lock()


def throttle_of(pool):
    """One token bucket per pool for the ``bandwidth`` fault, shared by its HTTP streams."""
    with _throttles_lock:
        if id(pool) not in _throttles:
            _throttles[id(pool)] = Throttle(pool.faults)
        return _throttles[id(pool)]


# ---- raw HTTP answers (XAPI writes its own status lines, some of them HTTP/1.0) --------------

def send_head(req, status_line, headers=()):
    """Status line and headers; the connection is closed after the handler (keep_alive:false)."""
    lines = [status_line, "Connection: close"] + ["%s: %s" % kv for kv in headers]
    req.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    req.handler.close_connection = True


def send_page(req, status_line, body, headers=()):
    send_head(req, status_line, list(headers) + [("Content-Type", "text/html"),
                                                 ("Cache-Control", "no-cache, no-store"),
                                                 ("Content-Length", str(len(body)))])
    req.wfile.write(body)


def cut_connection(req):
    """Drop the TCP connection without an answer (the ``cut`` variant of import_fail)."""
    req.handler.close_connection = True
    try:
        req.handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def internal_error(req, error):
    """Http_svr.response_internal_error: what an exception escaping a handler becomes."""
    body = ("<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; "
            "please wait a while and try again. If the problem persists, please contact your "
            "support representative.<h1> Additional information </h1>%s</body></html>"
            % error).encode()
    send_page(req, "HTTP/1.1 500 Internal Server Error", body)


# ---- credentials and tasks ---------------------------------------------------------------------

def check_credentials(pool, req, action):
    """Xapi_http.assert_credentials_ok; returns the session ref, or None once answered."""
    db = pool.db
    with db.lock:
        session_ref = req.param("session_id")
        session = pool.session_of_http(session_ref)
        if session is None:
            send_page(req, "HTTP/1.1 401 Unauthorised", UNAUTHORISED_BODY,
                      [("WWW-Authenticate", 'Basic realm="%s"' % action)])
            return None
        if session.get("is_local_superuser"):
            return session_ref
        roles = datamodel().http_actions[action]["roles"]
        if pool.role_of(session) not in roles:
            permission = "http/" + action
            task = req.param("task_id")
            if task and db.exists("task", task):
                finish(db, task, error=XapiError("RBAC_PERMISSION_DENIED", permission,
                                                 "No permission in user session"))
            db.save()
            send_page(req, "HTTP/1.1 403 Forbidden", FORBIDDEN_BODY)
            return None
        return session_ref


def finish(db, task, result="", error=None):
    """TaskHelper.complete / TaskHelper.failed: a task already finished is left as it is."""
    if not db.exists("task", task) or db.raw("task", task)["status"] != "pending":
        return
    if error is None:
        db.update("task", task, result=result, progress=1.0, finished=now_text(),
                  allowed_operations=[], status="success")
    else:
        db.update("task", task, error_info=error.description, progress=1.0,
                  finished=now_text(), allowed_operations=[], status="failure")


class HandlerTask:
    """The task a handler runs as (Xapi_http.with_context)."""

    def __init__(self, pool, req, session_ref, label):
        self.pool, self.db = pool, pool.db
        self.session_ref = session_ref
        with self.db.lock:
            given = req.param("task_id")
            self.own = not (given and self.db.exists("task", given))
            self.ref = pool.create_task(session_ref, label) if self.own else given
            self.db.save()
        self.reported = 0.0

    def progress(self, fraction):
        """Progress in 1 % steps, as vhd-tool reports it."""
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction - self.reported < 0.01:
            return
        self.reported = fraction
        with self.db.lock:
            if self.db.exists("task", self.ref) and self.db.raw("task", self.ref)["status"] == "pending":
                self.db.set("task", self.ref, "progress", round(fraction, 2))

    def succeed(self, result=""):
        with self.db.lock:
            finish(self.db, self.ref, result=result)
            self.db.save()

    def fail(self, error):
        with self.db.lock:
            finish(self.db, self.ref, error=error)
            self.db.save()

    def close(self):
        """A task the handler created itself goes with it; a caller's task stays. A handler
        that raised (the client went away before the 200 was written, say) left its task
        pending: it fails, as Server_helpers.exec_with_context fails a forwarded task on any
        exception (a pending task would otherwise stay 24 h, db_gc_util.ml)."""
        with self.db.lock:
            finish(self.db, self.ref, error=XapiError("INTERNAL_ERROR", "the HTTP handler ended without an answer"))
            if self.own and self.db.exists("task", self.ref):
                self.db.destroy("task", self.ref)
            self.db.save()


def vdi_of_req(db, req, name="vdi"):
    """Importexport.vdi_of_req: a valid ref, else a uuid (UUID_INVALID otherwise)."""
    value = req.param(name)
    if value is None:
        return None
    with db.lock:
        if db.exists("VDI", value):
            return value
        return db.ref_of_uuid("VDI", value)


def format_of_req(req):
    """Importexport.Format.of_req: ``raw`` by default, lower-cased, else unknown."""
    value = req.param("format")
    if value is None:
        return "raw", True
    return value.lower(), value.lower() in RAW_FORMATS


def refuse_404(req, task, message):
    """A refusal XAPI answers with HTTP/1.0 404 and a task failed with INTERNAL_ERROR."""
    task.fail(XapiError("INTERNAL_ERROR", message))
    send_head(req, "HTTP/1.0 404 Not Found")


# ---- PUT /import_raw_vdi -------------------------------------------------------------------------

class ImportFault(Exception):
    """The import_fail fault fired: fail with ``error``, or cut the connection."""

    def __init__(self, error, cut):
        super().__init__(error)
        self.error, self.cut = error, cut


class DiskWriter:
    """Writes received bytes into a VDI's disk file through Storage (CBT sees them), refusing
    bytes past the VDI's size like a write past the end of the block device."""

    def __init__(self, pool, vdi_uuid, size, space):
        self.pool, self.uuid, self.size = pool, vdi_uuid, size
        self.file = pool.storage.open_write(vdi_uuid)
        # a thin SR: the file may grow by what the SR has free, then writes fail (ENOSPC in
        # tapdisk: the import fails with VDI_IO_ERROR)
        self.allocation_limit = pool.storage.allocated(vdi_uuid) + space
        # what the file can hold at most by now: measured only when it may pass the limit
        self.allocation_bound = self.allocation_limit - space
        self.fault = pool.faults.take_import_fail()
        self.corrupt = pool.faults.take_corrupt_write()
        self.cap = pool.host.https_cap()          # one connection's rate through stunnel
        self.throttle = throttle_of(pool)
        self.written = 0

    def write(self, offset, data):
        if offset + len(data) > self.size:
            raise XapiError(*IO_ERROR)
        if self.fault is not None and self.written + len(data) >= self.fault["after_bytes"]:
            keep = max(self.fault["after_bytes"] - self.written, 0)
            self._put(offset, data[:keep])
            raise ImportFault(XapiError(*self.fault["error"]), self.fault["cut"])
        self._put(offset, data)

    def _put(self, offset, data):
        if not data:
            return
        self.throttle.consume(len(data))
        self.cap.consume(len(data))
        if self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
            self.corrupt = False
        self.file.seek(offset)
        self.file.write(data)
        self.pool.storage.mark_changed(self.uuid, offset, len(data))
        self.written += len(data)
        self.allocation_bound += len(data)
        if self.allocation_bound > self.allocation_limit:
            self.file.flush()
            self.allocation_bound = data_bytes(self.file.fileno())
            if self.allocation_bound > self.allocation_limit:
                raise XapiError(*IO_ERROR)

    def close(self):
        self.file.close()


def read_exactly(rfile, n):
    """n bytes of the body; a short read is the end of the stream (vhd-tool fails)."""
    data = rfile.read(n)
    if len(data) != n:
        raise XapiError(*IO_ERROR)
    return data


def receive_raw(req, writer, length, task):
    """serve_raw_to_raw: ``length`` bytes from offset 0, progress as they arrive."""
    offset = 0
    while offset < length:
        data = read_exactly(req.rfile, min(PIECE, length - offset))
        writer.write(offset, data)
        offset += len(data)
        task.progress(offset / length)


def receive_chunked(req, writer):
    """serve_chunked_to_raw: {offset, len} headers each followed by data, ended by {0, 0}.
    vhd-tool reports no progress for this protocol."""
    while True:
        offset, length = CHUNK_HEADER.unpack(read_exactly(req.rfile, CHUNK_HEADER.size))
        if offset == 0 and length == 0:
            return
        while length > 0:
            data = read_exactly(req.rfile, min(PIECE, length))
            writer.write(offset, data)
            offset += len(data)
            length -= len(data)


def vdi_for_import(pool, req, session_ref, fmt):
    """The target VDI: ``vdi`` (ref or uuid), else a new "Imported VDI" in ``sr_id``/``sr_uuid``
    of Content-Length bytes (raw only). Returns (vdi, error message or None)."""
    db = pool.db
    vdi = vdi_of_req(db, req)
    if vdi is not None:
        return vdi, None
    with db.lock:
        sr = req.param("sr_id")
        if sr is None and req.param("sr_uuid") is not None:
            sr = db.ref_of_uuid("SR", req.param("sr_uuid"))
        if sr is None:
            return None, None
        if fmt == "raw" and req.content_length is not None:
            ctx = Context(pool, session_ref, wire_name="VDI.create")
            vdi = ctx.call("VDI.create", {
                "name_label": "Imported VDI", "name_description": "", "SR": sr,
                "virtual_size": req.content_length, "type": "user", "sharable": False,
                "read_only": False, "other_config": {}, "xenstore_data": {}, "sm_config": {},
                "tags": []})
            db.save()
            return vdi, None
        if fmt in ("vhd", "qcow2"):
            name = "VHD" if fmt == "vhd" else "QCOW2"
            return None, "Importing a %s directly into an SR not yet supported" % name
        return None, "Not enough info supplied to import"


def after_write(pool, vdi):
    """What the dom0 attach/detach leaves: fresh usage figures, and on SMAPIv1 a new
    content_id (VDI.activate read-write drops it, deactivate makes a fresh one)."""
    db = pool.db
    with db.lock:
        if not db.exists("VDI", vdi):
            return
        ctx = Context(pool, None)
        rec = db.raw("VDI", vdi)
        if ops_vdi.flavour(db, rec["SR"]) == "smapiv1":
            db.set("VDI", vdi, "other_config", dict(rec["other_config"],
                                                     content_id=str(uuidlib.uuid4())))
        ops_vdi.refresh_vdi_usage(ctx, vdi)
        ops_vdi.refresh_sr_usage(ctx, rec["SR"])
        db.save()


def sr_of_req(db, req):
    """The SR an import or export touches: the VDI's, else ``sr_id``/``sr_uuid``; or None."""
    with db.lock:
        vdi = vdi_of_req(db, req)
        if vdi is not None:
            return db.raw("VDI", vdi)["SR"]
        sr = req.param("sr_id")
        if sr is None and req.param("sr_uuid") is not None:
            sr = db.ref_of_uuid("SR", req.param("sr_uuid"))
        return sr if sr is not None and db.exists("SR", sr) else None


def redirected(pool, req):
    """Importexport.check_sr_availability, else return_302_redirect to a host that sees the SR
    (find_host_for_sr). True when the request was answered with the redirect."""
    try:
        sr = sr_of_req(pool.db, req)
    except XapiError:
        return False            # the handler reports the bad parameter
    if sr is None:
        return False
    here = req.handler.server.host_ref
    hosts = pool.hosts_with_sr(sr)
    if not hosts or here in hosts:
        return False
    address = pool.db.raw("host", hosts[0])["address"]
    url = "https://%s:%d%s?%s" % (address, req.handler.server.port, req.path,
                                  urllib.parse.urlencode(req.query_list))
    send_head(req, "HTTP/1.1 302 Found", [("Cache-Control", "no-cache, no-store"), ("Location", url)])
    return True


@route("PUT", "/import_raw_vdi")
def import_raw_vdi(pool, req):
    session_ref = check_credentials(pool, req, "put_import_raw_vdi")
    if session_ref is None or redirected(pool, req):
        return
    fmt, known = format_of_req(req)
    try:
        vdi, refusal = vdi_for_import(pool, req, session_ref, fmt if known else "")
    except XapiError as e:
        # raised before with_context: the caller's task is not touched
        internal_error(req, e)
        return
    if vdi is None and refusal is None:
        # Import_raw_vdi.import: neither VDI nor SR -> VDI_MISSING, 400, caller's task failed
        with pool.db.lock:
            task = req.param("task_id")
            if task and pool.db.exists("task", task):
                finish(pool.db, task, error=XapiError("VDI_MISSING"))
            pool.db.save()
        send_page(req, "HTTP/1.1 400 Bad Request", b"<html><body><h1>HTTP 400 bad request"
                  b"</h1>The HTTP request was malformed. Please correct and retry.</body></html>")
        return
    task = HandlerTask(pool, req, session_ref, "Importing raw VDI")
    try:
        run_import(pool, req, task, vdi, fmt, known, refusal)
    finally:
        task.close()


def run_import(pool, req, task, vdi, fmt, known, refusal):
    chunked = req.has("chunked")
    if not known:
        return refuse_404(req, task, "Unknown format " + fmt)
    if fmt != "raw" and chunked:
        return refuse_404(req, task, "Cannot handle chunked VHD")
    if fmt != "raw":
        # vhd, tar and qcow2 bodies are not decoded by the simulator: refused up front, the
        # way XAPI refuses a format it does not know, so that nothing is half-written
        return refuse_404(req, task, "xapisim does not simulate format=%s imports" % fmt)
    encoding = req.headers.get("Transfer-Encoding")
    if encoding is not None:
        return refuse_404(req, task, "Cannot handle encoding: " + encoding)
    if refusal is not None:
        task.fail(XapiError("INTERNAL_ERROR", refusal))
        return send_head(req, "HTTP/1.0 400 Bad Request")
    send_head(req, "HTTP/1.1 200 OK", [("task-id", task.ref),
                                       ("content-type", "application/octet-stream")])
    pool.faults.delay()
    db = pool.db
    with db.lock:
        rec = db.raw("VDI", vdi)
        if ops_vdi.attached_vbds(db, vdi):
            # the dom0 VBD.plug read-write (xapi_vbd_helpers): VDI_IN_USE [vdi]
            return task.fail(XapiError("VDI_IN_USE", vdi))
        vdi_uuid, size = rec["uuid"], rec["virtual_size"]
        space = ops_vdi.physical_free(Context(pool, None), rec["SR"])
    pool.host.attach("import")          # the dom0 VBD.plug read-write
    writer = DiskWriter(pool, vdi_uuid, size, space)
    with db.lock:
        logged = pool.log_import(req.handler.server.host_ref, vdi, task.session_ref)
    try:
        if chunked:
            receive_chunked(req, writer)
        else:
            # vhd-tool --destination-size is Content-Length when given, else the device size
            length = req.content_length if req.content_length is not None else size
            receive_raw(req, writer, length, task)
    except ImportFault as fault:
        task.fail(fault.error)
        if fault.cut:
            cut_connection(req)
        return
    except XapiError as e:
        return task.fail(e)
    except OSError:
        return task.fail(XapiError(*IO_ERROR))
    finally:
        writer.close()
        after_write(pool, vdi)
        logged["closed"] = time.time()
    task.succeed(ova.rpc_string(vdi))


# ---- GET /export_raw_vdi ---------------------------------------------------------------------------

@route("GET", "/export_raw_vdi")
def export_raw_vdi(pool, req):
    session_ref = check_credentials(pool, req, "get_export_raw_vdi")
    if session_ref is None or redirected(pool, req):
        return
    try:
        vdi = vdi_of_req(pool.db, req)
        if vdi is None:
            raise XapiError("INTERNAL_ERROR", "Missing vdi query parameter")
    except XapiError as e:
        internal_error(req, e)
        return
    task = HandlerTask(pool, req, session_ref, "Exporting raw VDI")
    try:
        run_export(pool, req, task, vdi)
    finally:
        task.close()


def run_export(pool, req, task, vdi):
    fmt, known = format_of_req(req)
    if not known:
        return refuse_404(req, task, "Unknown format " + fmt)
    if fmt not in ("raw", "vhd"):
        return refuse_404(req, task, "xapisim does not simulate format=%s exports" % fmt)
    db = pool.db
    with db.lock:
        rec = db.raw("VDI", vdi)
        vdi_uuid, size = rec["uuid"], rec["virtual_size"]
        vhd_sr = ops_vdi.flavour(db, rec["SR"]) == "smapiv1"
    send_head(req, "HTTP/1.1 200 OK", [
        ("task-id", task.ref), ("content-type", CONTENT_TYPES[fmt]),
        ("content-disposition", 'attachment; filename="%s.%s"' % (vdi_uuid, fmt))])
    pool.faults.delay()
    try:
        pool.host.attach("export", 2 if req.param("base") is not None else 1)   # dom0 attaches, read-only
        base = None
        if req.param("base") is not None:
            base = vdi_of_req(db, req, "base")
            if fmt != "vhd" or not vhd_sr:
                # vhd_tool_wrapper: a base needs a VHD source (SMAPIv3 volumes are not VHDs)
                raise XapiError("INTERNAL_ERROR", "Cannot compute differences on non-VHD images")
        if fmt == "vhd" and size > MAX_VHD_SIZE:
            raise XapiError("VDI_TOO_LARGE", vdi, str(MAX_VHD_SIZE))
        if not os.path.exists(pool.storage.path(vdi_uuid)):
            raise XapiError(*IO_ERROR)
        if fmt == "raw":
            send_pieces(pool, req, task, size, raw_pieces(pool, vdi_uuid, size))
        else:
            send_pieces(pool, req, task, size, vhd_pieces(pool, vdi_uuid, size, base, vhd_sr))
    except XapiError as e:
        return task.fail(e)
    except OSError:
        # the client went away (a reader that wanted only the table drops the stream) or the
        # file went: vhd-tool exits non-zero and xapi fails the task
        return task.fail(XapiError(*IO_ERROR))
    task.succeed()


def raw_pieces(pool, vdi_uuid, size):
    with open(pool.storage.path(vdi_uuid), "rb") as f:
        offset = 0
        while offset < size:
            data = f.read(min(PIECE, size - offset))
            if not data:
                data = bytes(min(PIECE, size - offset))   # beyond the file's end reads zeroes
            offset += len(data)
            yield data


def vhd_pieces(pool, vdi_uuid, size, base, vhd_sr):
    """The VHD stream: on a VHD SR the chain's allocation (relative to ``base``), elsewhere
    the blocks holding data (vhd-tool's raw and nbdhybrid inputs scan for them)."""
    storage = pool.storage
    if vhd_sr:
        with pool.db.lock:
            base_uuid = pool.db.raw("VDI", base)["uuid"] if base else None
        included = storage.chains.included(vdi_uuid, base_uuid)
        base_name = "/var/run/sr-mount/%s.vhd" % base_uuid if base_uuid else None
    else:
        included, base_name = vhd.data_blocks(storage.path(vdi_uuid), size), None
    with open(storage.path(vdi_uuid), "rb") as f:
        def read(offset, length):
            f.seek(offset)
            return f.read(length)
        for piece in vhd.stream(size, included, read, base_name):
            yield piece


def send_pieces(pool, req, task, size, pieces):
    throttle, cap = throttle_of(pool), pool.host.https_cap()
    sent = 0
    for data in pieces:
        throttle.consume(len(data))
        cap.consume(len(data))
        req.wfile.write(data)
        sent += len(data)
        task.progress(min(sent / size, 1.0) if size else 1.0)
    req.wfile.flush()


# ---- metadata ---------------------------------------------------------------------------------------

@route("GET", "/export_metadata")
def export_metadata(pool, req):
    session_ref = check_credentials(pool, req, "get_export_metadata")
    if session_ref is None:
        return
    task = HandlerTask(pool, req, session_ref, "VM.export_metadata")
    try:
        try:
            with pool.db.lock:
                data = ova.export_tar(pool, req, task.ref)
        except XapiError as e:
            task.fail(e)
            return internal_error(req, e)
        send_head(req, "HTTP/1.0 200 OK", [
            ("task-id", task.ref), ("Server", "xapi/25.6"),
            ("content-type", "application/octet-stream"), ("Content-Length", str(len(data))),
            ("Content-Disposition", 'attachment; filename="export.xva"')])
        req.wfile.write(data)
        task.succeed()
    finally:
        task.close()


@route("PUT", "/import_metadata")
def import_metadata(pool, req):
    session_ref = check_credentials(pool, req, "put_import_metadata")
    if session_ref is None:
        return
    task = HandlerTask(pool, req, session_ref, "VM.metadata_import")
    try:
        send_head(req, "HTTP/1.1 200 OK", [("task-id", task.ref),
                                           ("content-type", "application/octet-stream")])
        try:
            xml = ova.read_ova_xml(req.rfile, req.content_length)
            with pool.db.lock:
                result = ova.import_metadata(pool, session_ref, task.ref, req.query_list, xml)
                pool.db.save()
        except XapiError as e:
            return task.fail(e)
        task.succeed(result)
    finally:
        task.close()


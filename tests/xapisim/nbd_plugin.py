"""nbdkit python plugin serving one simulated pool's VDIs the way xapi-nbd does.

Run by ``nbd.py`` as ``nbdkit ... python nbd_plugin.py url=... ca=... disks=...``.
It runs inside nbdkit's embedded Python, not in the simulator process, so it only uses the
standard library and talks to the pool over its public HTTPS API, as xapi-nbd talks to xapi.

The export name is XAPI's ``/<VDI uuid>?session_id=<session ref>`` (``ocaml/nbd/src/main.ml``):
the session is validated once at connect with ``session.get_uuid``, then the VDI is looked up
with ``VDI.get_by_uuid``; any failure refuses the connection. Reads come straight from the
VDI's sparse raw file with ``preadv`` into nbdkit's buffer, so the plugin costs little.
"""

import errno
import os
import ssl
import threading
import urllib.parse
import urllib.request
import xmlrpc.client

import nbdkit

API_VERSION = 2
ALIGNMENT = 512

SETTINGS = {"url": None, "ca": None, "disks": None, "connection": None, "host": None}


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def config(key, value):
    if key not in SETTINGS:
        raise RuntimeError("unknown parameter %s" % key)
    SETTINGS[key] = value


def config_complete():
    for key in SETTINGS:
        if not SETTINGS[key]:
            raise RuntimeError("%s= is required" % key)


class Refused(Exception):
    pass


def pool_proxy():
    context = ssl.create_default_context(cafile=SETTINGS["ca"])
    return xmlrpc.client.ServerProxy(SETTINGS["url"], context=context)


def xapi_call(proxy, method, *params):
    """One XML-RPC call to the pool; the Value on success, Refused on a XAPI failure."""
    result = getattr(proxy, method)(*params)
    if result.get("Status") != "Success":
        # only the error code: its parameters may hold the session ref, which must not be logged
        raise Refused("%s failed: %s" % (method, (result.get("ErrorDescription") or ["?"])[0]))
    return result["Value"]


def parse_export_name(name):
    """``/<uuid>?session_id=<ref>`` -> (uuid, session ref or None)."""
    url = urllib.parse.urlsplit(name)
    query = urllib.parse.parse_qs(url.query)
    session = query.get("session_id", [None])[0]
    path = url.path
    uuid = path[1:] if path.startswith("/") else path
    return uuid, session


def report_opened(session, uuid):
    """Simulator-only: tell the pool whose session this connection serves (its NBD log)."""
    query = urllib.parse.urlencode({"connection": SETTINGS["connection"], "vdi": uuid})
    request = urllib.request.Request(SETTINGS["url"].rstrip("/") + "/xapisim/nbd-opened?" + query,
                                     data=b"", method="POST",
                                     headers={"Cookie": "session_id=%s" % session})
    context = ssl.create_default_context(cafile=SETTINGS["ca"])
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        response.read()


def open(readonly):  # noqa: A001 - the name nbdkit calls
    uuid, session = parse_export_name(nbdkit.export_name())
    if not session:
        raise Refused("No session_id parameter provided")
    proxy = pool_proxy()  # one HTTPS connection for the three calls
    try:
        xapi_call(proxy, "session.get_uuid", session, session)
        vdi = xapi_call(proxy, "VDI.get_by_uuid", session, uuid)
        # xapi-nbd plugs a read-only VBD into dom0; XAPI refuses that for metadata-only VDIs
        vdi_type = xapi_call(proxy, "VDI.get_type", session, vdi)
        # xapi-nbd plugs the VDI into its own host's dom0: only where the SR is attached
        sr = xapi_call(proxy, "VDI.get_SR", session, vdi)
        pbds = xapi_call(proxy, "PBD.get_all_records_where", session, 'field "SR"="%s"' % sr)
        if not any(rec["host"] == SETTINGS["host"] and rec["currently_attached"] for rec in pbds.values()):
            raise Refused("the SR of VDI %s is not attached on this host" % uuid)
    finally:
        proxy("close")()
    # beside the connection, not before it: the log must not slow the handshake down
    reporter = threading.Thread(target=report_opened, args=(session, uuid), daemon=True)
    reporter.start()
    if vdi_type == "cbt_metadata":
        raise Refused("VDI_INCOMPATIBLE_TYPE %s" % vdi_type)
    path = os.path.join(SETTINGS["disks"], uuid + ".raw")
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise Refused("no disk content for VDI %s" % uuid)
    return {"fd": fd, "reporter": reporter}


def close(h):
    os.close(h["fd"])
    h["reporter"].join(30)      # a short connection's log entry is complete before it ends


def get_size(h):
    return os.fstat(h["fd"]).st_size


def can_write(h):
    return False


def can_multi_conn(h):
    # read-only, so every connection sees the same data; the default command line masks
    # this with the multi-conn filter, as xapi-nbd offers no multi-conn
    return True


def can_cache(h):
    return nbdkit.CACHE_NONE


def pread(h, buf, offset, flags):
    # The OCaml nbd server behind xapi-nbd refuses requests not aligned to 512 bytes, without
    # advertising a block size (it has no NBD_OPT_GO), so clients only learn it from EINVAL.
    if offset % ALIGNMENT or len(buf) % ALIGNMENT:
        nbdkit.set_error(errno.EINVAL)
        raise ValueError("request not aligned to %d bytes" % ALIGNMENT)
    view = memoryview(buf)
    done = 0
    while done < len(view):
        n = os.preadv(h["fd"], [view[done:]], offset + done)
        if n == 0:  # the file shrank under us: read zeroes, as a short disk would
            view[done:] = bytes(len(view) - done)
            break
        done += n


def extents(h, count, offset, flags):
    """base:allocation from the sparse file's holes (only with ``--block-status``)."""
    fd, size = h["fd"], get_size(h)
    end = min(offset + count, size)
    out = []
    pos = offset
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            data = size
        if data > pos:
            hole_end = min(data, end)
            out.append((pos, hole_end - pos, nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO))
            pos = hole_end
            continue
        hole = min(os.lseek(fd, pos, os.SEEK_HOLE), end)
        out.append((pos, hole - pos, 0))
        pos = hole
        if flags & nbdkit.FLAG_REQ_ONE:
            break
    return out

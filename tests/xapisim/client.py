"""Client-side helpers for tests, the demo and benchmarks: log in to a simulated pool with the
real XenAPI library over HTTPS verified against the pool's CA, and call its HTTP handlers."""

import json
import ssl
import urllib.parse
import xmlrpc.client
import http.client

import XenAPI


def ssl_context(pool):
    return ssl.create_default_context(cafile=pool["ca_file"])


def login(pool, user="root"):
    """user: "root" (local superuser) or "pool-admin"."""
    if user == "root":
        uname, pwd = pool["username"], pool["password"]
    else:
        uname, pwd = pool["pool_admin"]["username"], pool["pool_admin"]["password"]
    transport = xmlrpc.client.SafeTransport(context=ssl_context(pool))
    session = XenAPI.Session(pool["url"], transport=transport)
    session.xenapi.login_with_password(uname, pwd, "2.23", "xapisim-tests")
    return session


def http_request(pool, method, path, query=None, session=None, body=None, headers=None):
    """One HTTPS request to a pool's data handler; returns (status, headers, body bytes).
    ``body`` may be bytes or an iterable of bytes (then give Content-Length in headers)."""
    url = urllib.parse.urlsplit(pool["url"])
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=ssl_context(pool),
                                       timeout=600)
    query = dict(query or {})
    if session is not None:
        query.setdefault("session_id", session._session)
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    conn.request(method, target, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def post_fault(pool, x, spec):
    """Set a simulator fault (docs/xapisim.md) with local-root session ``x``; returns the state."""
    return simulator_json(pool, x, "POST", "/xapisim/faults", json.dumps(spec).encode())


def host_costs(pool, x):
    """The host profile's costs and what it charged so far (docs/xapisim.md "Host profiles")."""
    return simulator_json(pool, x, "GET", "/xapisim/host-costs")


def simulator_json(pool, x, method, path, body=None):
    status, dummy, answer = http_request(pool, method, path, session=x, body=body)
    if status != 200:
        raise RuntimeError("%s %s answered %s: %r" % (method, path, status, answer[:200]))
    return json.loads(answer)


def nbd_chunks(x, vdi, chunk=4 << 20):
    """Yield a VDI's whole content in pieces, read over NBD from VDI.get_nbd_info with TLS
    pinned to the returned certificate (plaintext only when no network has the purpose nbd)."""
    import os
    import shutil
    import tempfile

    import nbd

    record = x.xenapi.VDI.get_nbd_info(vdi)[0]
    tls = any("nbd" in rec["purpose"] for rec in x.xenapi.network.get_all_records().values())
    h = nbd.NBD()
    h.set_export_name(record["exportname"])
    certdir = tempfile.mkdtemp()
    try:
        host = record["address"]
        if tls:
            with open(os.path.join(certdir, "ca-cert.pem"), "w") as f:
                f.write(record["cert"])
            h.set_tls(nbd.TLS_REQUIRE)
            h.set_tls_certificates(certdir)
            h.set_tls_verify_peer(True)
            host = record["subject"]
        h.connect_tcp(host, str(record["port"]))
        size, offset = h.get_size(), 0
        while offset < size:
            n = min(chunk, size - offset)
            yield bytes(h.pread(n, offset))
            offset += n
        h.shutdown()
    finally:
        shutil.rmtree(certdir, ignore_errors=True)


def nbd_digest(x, vdi):
    """sha256 of a VDI's whole content, read over NBD."""
    import hashlib
    digest = hashlib.sha256()
    for piece in nbd_chunks(x, vdi):
        digest.update(piece)
    return digest.hexdigest()


def nbd_block_digests(x, vdi, block=64 * 1024):
    """sha256 of every 64 KiB block of a VDI, read over NBD (None for an all-zero block)."""
    import hashlib
    out, zero = [], bytes(block)
    for piece in nbd_chunks(x, vdi, chunk=64 * block):
        for i in range(0, len(piece), block):
            data = piece[i:i + block]
            out.append(None if data == zero[:len(data)] else hashlib.sha256(data).digest())
    return out

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
    ``body`` may be bytes or an iterable of bytes (then give Content-Length in headers). A
    ``302 Found`` (the VDI's SR is on another host) is followed once, as ``curl -L`` would:
    the query carries the session, and a bytes body is sent again."""
    query = dict(query or {})
    if session is not None:
        query.setdefault("session_id", session._session)
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    status, answer_headers, data = one_request(pool, pool["url"], method, target, body, headers)
    if status == 302 and isinstance(body, (bytes, type(None))):
        location = urllib.parse.urlsplit(answer_headers["Location"])
        status, answer_headers, data = one_request(
            pool, "https://%s/" % location.netloc, method,
            location.path + ("?" + location.query if location.query else ""), body, headers)
    return status, answer_headers, data


def one_request(pool, base_url, method, target, body, headers):
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=ssl_context(pool),
                                       timeout=600)
    try:
        conn.request(method, target, body=body, headers=headers or {})
    except OSError:
        pass        # answered and closed before the body was read (a 302): read the answer
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
            # the subject when it resolves to the address (localhost, the master), else the
            # address, which the certificate names too (the other hosts)
            if record["address"] == "127.0.0.1":
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

"""Client-side helpers for tests, the demo and benchmarks: log in to a simulated pool with the
real XenAPI library over HTTPS verified against the pool's CA, and call its HTTP handlers."""

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

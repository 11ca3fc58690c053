# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to XAPI pools: login over verified HTTPS with the real XenAPI client, logout
always, retries of idempotent calls on transient errors, failures turned into messages that
say what happened and what to do, and the HTTP data handlers with the session as a cookie.

Plain Python: no Ansible imports, so it is unit-testable and usable from the benchmarks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
import random
import xmlrpc.client

from ansible_collections.xapi.sxm.plugins.module_utils.errors import WaitTimeout, XapiFailure

try:
    import XenAPI
    HAS_XENAPI = True
except ImportError:  # pragma: no cover - reported by the modules
    XenAPI = None
    HAS_XENAPI = False

ORIGINATOR = "xapi.sxm"
# Errors after which the same call may simply be tried again.
TRANSIENT_CODES = ("TOO_BUSY", "HOST_STILL_BOOTING", "HOST_IS_SLAVE_TRANSIENT")
READ_PREFIXES = ("get_", "list_", "event.from")
TASK_TIMEOUT = 3600           # seconds a XAPI task may stay pending before we give up on it
HTTP_TIMEOUT = 900            # seconds a data handler's socket may stay silent


def backoff(base, attempt):
    """Seconds before retry ``attempt`` (1, 2, ...): growing, with jitter."""
    return base * attempt * random.uniform(0.5, 1.5)


# What XAPI's own error codes mean for a migration, and what to do (docs/troubleshooting.md has
# an entry for each): (parameters padded with "", where) -> message.
HINTS = {
    "SESSION_AUTHENTICATION_FAILED": lambda p, where: "wrong username or password for user %r%s: check the "
                                                      "credentials of this pool" % (p[0], where),
    "SESSION_INVALID": lambda p, where: "the session expired or was logged out%s: run again" % where,
    "HANDLE_INVALID": lambda p, where: "the %s %s no longer exists%s: it was removed while we worked; run "
                                       "again to re-plan" % (p[0], p[1], where),
    "UUID_INVALID": lambda p, where: "no %s has uuid %s%s: check the name or uuid you gave" % (p[0], p[1], where),
    "RBAC_PERMISSION_DENIED": lambda p, where: "the account may not call %s%s: use an account with the "
                                               "pool-admin role, or local root" % (p[0], where),
    "PERMISSION_DENIED": lambda p, where: "XAPI refused an internal call%s: it needs a local root session" % where,
    "SR_FULL": lambda p, where: "the storage repository is full (requested %s bytes, at most %s)%s: free "
                                "space or map the disks to another SR, then run again" % (p[0], p[1], where),
    # sm's SRNoSpace: the SR ran out of space during a snapshot, clone or copy
    "SR_BACKEND_FAILURE_44": lambda p, where: "the storage repository ran out of space%s: free space on it "
                                              "or map the disks to another SR (sr_map, default_sr), then run "
                                              "again to continue" % where,
    "VDI_IO_ERROR": lambda p, where: "a disk write or read failed on the host (%s)%s; on a destination this is "
                                     "most often an SR that is full: check its free space, then run again "
                                     "to continue" % (p[0] or "I/O error", where),
    "DUPLICATE_MAC_SEED": lambda p, where: "a VM with the same mac_seed as this one (%s) already runs%s: the "
                                           "source VM may have been started on the destination; halt one of "
                                           "them, then run again" % (p[0], where),
    "VM_BAD_POWER_STATE": lambda p, where: "VM %s is %s but must be %s%s" % (p[0], p[2], p[1], where),
    "VDI_IN_USE": lambda p, where: "disk %s is in use (%s)%s: stop what uses it, then run again" % (p[0], p[1], where),
    "MESSAGE_METHOD_UNKNOWN": lambda p, where: "this pool does not know %s%s: its XAPI is too old for this "
                                               "feature" % (p[0], where),
}


def explain(code, params, pool_url, call=""):
    """A message for an XAPI failure: what happened, on which object, and what to do."""
    where = " (pool %s%s)" % (pool_url, ", call %s" % call if call else "")
    if code in HINTS:
        return HINTS[code](list(params) + [""] * 4, where)
    return "XAPI error %s %s%s" % (code, list(params), where)


def ssl_context(validate_certs=True, ca_path=None):
    if not validate_certs:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()


class Connection:
    """One logged-in session on one pool. Use as a context manager so that it always logs out.

    ``session_ref`` is a secret (it unlocks the pool's NBD exports): never log or return it."""

    def __init__(self, url, username, password, validate_certs=True, ca_path=None,
                 originator=ORIGINATOR, retries=3, retry_delay=1.0, guard=None):
        if not HAS_XENAPI:
            raise XapiFailure("the XenAPI Python library is missing: pip install XenAPI")
        if "://" not in url:
            url = "https://" + url
        self.url = url.rstrip("/") + "/"
        self.username = username
        self._password = password
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.originator = originator
        self.retries = retries
        self.retry_delay = retry_delay
        self.ssl = ssl_context(validate_certs, ca_path) if self.url.startswith("https") else None
        self.session = None
        # every session ref this connection had: XenAPI logs in again by itself when XAPI
        # expired one (24 h unused), and each is a secret to keep out of any output
        self.session_refs = set()
        # a session_guard.SessionGuard, told of every session, logs out after a kill
        self.guard = guard
        # one XML-RPC connection: the data path's writer thread calls too
        self.lock = threading.Lock()
        self._sr_urls = {}      # SR ref -> URL of the host that serves its disks' HTTP handlers

    # ---- session ----------------------------------------------------------------------------
    def login(self):
        transport = xmlrpc.client.SafeTransport(context=self.ssl) if self.ssl else None
        session = XenAPI.Session(self.url, transport=transport)
        try:
            self._with_retries(lambda: session.xenapi.login_with_password(
                self.username, self._password, "2.0", self.originator), "session.login_with_password",
                retry=True)
        except ssl.SSLError as e:
            raise XapiFailure("the certificate of %s is not trusted (%s): give its CA in ca_path, "
                              "or set validate_certs to false only on a trusted network"
                              % (self.url, getattr(e, "reason", e)))
        self.session = session
        self._held(session._session)
        return self

    def _held(self, ref):
        if ref not in self.session_refs:
            self.session_refs.add(ref)
            if self.guard is not None:
                self.guard.hold(self, ref)

    def logout(self):
        if self.session is not None:
            try:
                self.session.xenapi.session.logout()
            except Exception:  # noqa: BLE001 - logging out is best effort
                pass
            self.session = None
            if self.guard is not None:
                for ref in self.session_refs:
                    self.guard.forget(self, ref)

    def __enter__(self):
        return self.login()

    def __exit__(self, *exc):
        self.logout()
        return False

    @property
    def session_ref(self):
        return self.session._session

    @property
    def is_local_superuser(self):
        return bool(self.call("session.get_is_local_superuser", self.session_ref))

    # ---- calls ------------------------------------------------------------------------------
    def call(self, name, *args):
        """Call ``Class.message`` (or ``Async.Class.message``) with the session prepended.
        Reads are retried on transient failures; writes are not, because a retried write whose
        first attempt reached the pool would be done twice."""
        fn = self.session.xenapi
        for part in name.split("."):
            fn = getattr(fn, part)
        retry = name.split(".")[-1].startswith(READ_PREFIXES) or name == "event.from"

        def locked():
            with self.lock:
                try:
                    return fn(*args)
                finally:
                    if self.session is not None:
                        self._held(self.session._session)
        return self._with_retries(locked, name, retry)

    def _with_retries(self, thunk, name, retry):
        attempts = self.retries if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return thunk()
            except XenAPI.Failure as e:
                details = list(e.details)
                code, params = (details[0] if details else "UNKNOWN"), details[1:]
                if code in TRANSIENT_CODES and attempt < attempts:
                    time.sleep(backoff(self.retry_delay, attempt))
                    continue
                raise XapiFailure(explain(code, params, self.url, name), code, params)
            except (socket.error, http.client.HTTPException, xmlrpc.client.ProtocolError) as e:
                if isinstance(e, ssl.SSLCertVerificationError):
                    raise
                if attempt < attempts:
                    time.sleep(backoff(self.retry_delay, attempt))
                    continue
                raise XapiFailure("cannot reach %s (%s): check the url and the network"
                                  % (self.url, e), "CONNECTION_FAILED", [str(e)])

    def wait_task(self, task, poll=0.5, timeout=TASK_TIMEOUT, on_progress=None, first_poll=None):
        """Wait for a task; return its decoded result text or raise its error. The task is
        destroyed afterwards (clients should destroy the tasks they own). Polling starts at
        ``first_poll`` seconds and doubles up to ``poll``, with jitter so that many jobs do
        not poll a pool in step. After ``timeout`` seconds the task is cancelled (where XAPI
        allows) and WaitTimeout raised: a task stuck in ``pending`` never holds a job for ever."""
        deadline = time.monotonic() + timeout
        delay = first_poll or poll
        try:
            while True:
                rec = self.call("task.get_record", task)
                if on_progress:
                    on_progress(float(rec["progress"]))
                if rec["status"] == "success":
                    return parse_task_result(rec["result"])
                if rec["status"] in ("failure", "cancelled"):
                    info = list(rec["error_info"]) or ["UNKNOWN"]
                    raise XapiFailure(explain(info[0], info[1:], self.url, rec["name_label"]),
                                      info[0], info[1:])
                if time.monotonic() > deadline:
                    self._cancel_quietly(task)
                    raise WaitTimeout("the task %r did not finish within %d s on %s"
                                      % (rec["name_label"], timeout, self.url))
                time.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(poll, delay * 2)
        finally:
            try:
                self.call("task.destroy", task)
            except XapiFailure:
                pass

    def _cancel_quietly(self, task):
        try:
            self.call("task.cancel", task)
        except XapiFailure:
            pass

    # ---- HTTP data handlers -----------------------------------------------------------------
    def http(self, method, path, query, body=None, length=None, task=None, sr=None):
        """Open a request to a data handler with the session as a cookie (never in the URL,
        which proxies and logs keep). ``body`` is bytes or an iterable of bytes with
        ``length``; ``sr`` as in ``open_request``. Returns the http.client response (caller
        reads and closes)."""
        conn = self.open_request(method, path, query, task=task,
                                 length=None if body is None else (length if length is not None else len(body)),
                                 has_body=body is not None, sr=sr)
        if body is not None:
            if isinstance(body, (bytes, bytearray, memoryview)):
                conn.send(body)
            else:
                for piece in body:
                    conn.send(piece)
        response = conn.getresponse()
        response.connection = conn
        return response

    def url_for_sr(self, sr):
        """The URL of a host that sees ``sr``: the master when it does, else the first other
        host with the SR attached, at its ``address`` on the pool URL's port. XAPI answers an
        import or export of a VDI on an SR the host cannot see with ``302 Found`` before it
        reads the body (Importexport.return_302_redirect), so a streamed import must go to
        the right host from its first byte. Asked once per SR."""
        if sr not in self._sr_urls:
            url = self.url
            pbds = self.call("PBD.get_all_records_where", 'field "SR"="%s"' % sr)
            hosts = {rec["host"] for rec in pbds.values() if rec.get("currently_attached")}
            if hosts and self.call("pool.get_master", self.call("pool.get_all")[0]) not in hosts:
                address = self.call("host.get_address", sorted(hosts)[0])
                parts = urllib.parse.urlsplit(self.url)
                netloc = "[%s]" % address if ":" in address else address
                if parts.port:
                    netloc += ":%d" % parts.port
                url = urllib.parse.urlunsplit((parts.scheme, netloc, "/", "", ""))
            self._sr_urls[sr] = url
        return self._sr_urls[sr]

    def open_request(self, method, path, query, task=None, length=None, has_body=True, sr=None):
        """The http.client connection of a request whose headers are sent: the caller sends
        the body with ``send`` and reads ``getresponse()``. Without ``length`` the body's end
        is the caller's to mark: the chunked import reads frames up to its terminator, and
        XAPI refuses ``Transfer-Encoding``. With ``sr`` (a ref), the request goes to a host
        that sees that SR (``url_for_sr``)."""
        parts = urllib.parse.urlsplit(self.url_for_sr(sr) if sr else self.url)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, context=self.ssl,
                                               timeout=HTTP_TIMEOUT)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=HTTP_TIMEOUT)
        cookie = "session_id=%s" % self.session_ref
        if task:
            cookie += "; task_id=%s" % task
        conn.putrequest(method, path + "?" + urllib.parse.urlencode(query))
        conn.putheader("Cookie", cookie)
        if has_body:
            if length is not None:
                conn.putheader("Content-Length", str(length))
            conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        return conn


def remove_stale_tasks(conn, label, description):
    """Destroy the pending tasks named ``label`` with ``description``: those a run killed
    before its request reached XAPI left behind (XAPI keeps a pending task for 24 h). Only
    for names a single run at a time uses, under its job's lock."""
    try:
        tasks = conn.call("task.get_all_records_where", 'field "name__label"="%s"' % label.replace('"', '\\"'))
        for ref, rec in tasks.items():
            if rec["status"] == "pending" and rec["name_description"] == description:
                conn.call("task.destroy", ref)
    except XapiFailure:
        pass  # a task we may not remove stays, and does no harm but its 24 h


def parse_task_result(text):
    """task.result is an XML-RPC value fragment: a ref, a string, or an array of them."""
    if not text:
        return ""
    try:
        value = xmlrpc.client.loads(
            "<?xml version='1.0'?><methodResponse><params><param>%s</param></params>"
            "</methodResponse>" % text)[0]
        return value[0]
    except Exception:  # noqa: BLE001 - an unexpected shape is returned as text
        return text

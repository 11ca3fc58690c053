"""The pool's NBD server, as XAPI's xapi-nbd serves VDIs, plus ``VDI.get_nbd_info`` and
``network.add_purpose``/``remove_purpose``.

What xapi-nbd does (xen-api ``ocaml/nbd/src/main.ml``, ``ocaml/nbd/lib/consts.ml``,
``scripts/nbd-firewall-config.sh``) and how it is reproduced here:

* The port (10809 on a real host, a free port per simulated pool) is only reachable when some
  network has the purpose ``nbd`` or ``insecure_nbd``: XAPI's firewall script REJECTs it
  otherwise, open connections included. Here the listening socket is closed then (clients get
  "connection refused") and open connections are cut.
* On every connection xapi-nbd asks xapi for the purposes of all networks: ``nbd`` -> TLS
  required (FORCEDTLS), ``insecure_nbd`` -> plaintext, both or neither -> the connection is
  closed. The same decision is taken here per connection, so purpose changes apply to the next
  connection; open ones go on (unless the port closes, above).
* One server per host (xapi-nbd runs on every host), at the host's address: a VDI is served by
  the hosts where its SR is attached, so a local SR's disks only by their host.
* At most 16 concurrent connections per host (``Consts.connection_limit``); xapi-nbd accepts and
  closes the 17th before any handshake. Same here (counted here, as every connection has its own
  nbdkit process, so nbdkit's ``limit`` filter cannot count them).
* Simulator-only: every connection is logged (``pool.nbd_log``, GET /xapisim/nbd-connections)
  with its host, the times it opened and closed, and, once the export name was accepted, the
  VDI and the session's uuid and originator: caps are checked from the pool's side.
* The export name ``/<VDI uuid>?session_id=<ref>`` is checked once at connect (session.get_uuid,
  VDI.get_by_uuid): see ``nbd_plugin.py``.
* Read-only, fixed newstyle, no structured replies, no block status, no multi-conn, no
  NO_ZEROES flag, requests must be 512-byte aligned (EINVAL; no block size advertised).
  ``--block-status`` offers structured replies, base:allocation and multi-conn instead, so that
  both client paths can be tested. Not reproduced: xapi-nbd answers NBD_OPT_GO/INFO with
  ERR_UNSUP (libnbd then falls back to NBD_OPT_EXPORT_NAME); nbdkit always implements
  NBD_OPT_GO, so a refused export is reported by an option error rather than by a closed
  connection.

Each connection is served by its own ``nbdkit -s`` process (real nbdkit with the python plugin)
that gets the accepted socket as stdin/stdout, so that bytes flow between nbdkit and the client
with no copy through this process. Measured on this 2-core machine, 1 GiB to ``nbdcopy ...
null:``: nbdkit listening itself ~0.7-1.0 s, the same through a Python relay (splice or
recv_into/sendall) 1.2-1.9 s; per-connection nbdkit ~1.0-1.3 s including ~0.15 s to start it.
Only a connection opened while an NBD fault is set (``nbd_drop``, ``latency``, ``bandwidth``)
goes through a relay here that shapes it; a fault set later leaves open connections alone.
"""

import itertools
import os
import socket
import subprocess
import threading
import time

from cryptography import x509
from cryptography.x509.oid import NameOID

from .api import implements
from .errors import XapiError
from .faults import Throttle

CONNECTION_LIMIT = 16
NBD_PURPOSES = ("nbd", "insecure_nbd")
PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nbd_plugin.py")
RELAY_CHUNK = 256 * 1024


# ---- which server, by network purpose --------------------------------------------------------

def pool_purposes(db):
    with db.lock:
        return {p for ref in db.refs("network") for p in db.raw("network", ref)["purpose"]}


def connection_mode(purposes):
    """xapi-nbd's ``xapi_says_use_tls``: "tls", "plain", or None (refuse the connection)."""
    tls, plain = "nbd" in purposes, "insecure_nbd" in purposes
    if tls == plain:
        return None
    return "tls" if tls else "plain"


class NbdServer:
    def __init__(self, pool, host=None, address="127.0.0.1", port=0, block_status=False):
        self.pool = pool
        self.host = host or pool.master
        self.address = address
        self.block_status = block_status
        self.port = port
        self.lock = threading.Lock()
        self.reserve = None
        self.listener = None
        self.children = []          # [(Popen, pid file)] of live nbdkit processes
        self.stopping = threading.Event()
        self.thread = None
        self.throttle = pool_throttle(pool)
        self.serial = itertools.count()

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self):
        # A bound socket that never listens keeps the port ours while the server is off:
        # connections are refused, yet no outgoing connection can take it as its local port.
        self.reserve = reusable_socket()
        # a restarted pool keeps its port, as a host keeps 10809
        self.reserve.bind((self.address, self.port))
        self.port = self.reserve.getsockname()[1]
        self.reconfigure()
        # nbdkit's --exit-with-parent follows the thread that started it: this one lives as
        # long as the server, so every nbdkit is started here.
        self.thread = threading.Thread(target=self._accept_loop, name="nbd-accept", daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self._set_listening(False)
        if self.thread:
            self.thread.join(5)
        for child, pidfile in self.children:
            child.terminate()
        # nbdkit -s waits for an idle client's next request before it exits on SIGTERM;
        # it has nothing to save (read-only), so it is killed after a short grace
        deadline = time.monotonic() + 0.5
        for child, pidfile in self.children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            remove(pidfile)
        self.children = []
        if self.reserve is not None:
            self.reserve.close()
            self.reserve = None

    def reconfigure(self):
        """Open the port when some network has an NBD purpose, close it otherwise (as XAPI's
        firewall does); called after every purpose change."""
        self._set_listening(bool(pool_purposes(self.pool.db) & set(NBD_PURPOSES)))

    def _set_listening(self, wanted):
        with self.lock:
            if wanted and self.listener is None and not self.stopping.is_set():
                sock = reusable_socket()
                sock.bind((self.address, self.port))
                sock.listen(64)
                sock.settimeout(0.2)
                self.listener = sock
            elif not wanted and self.listener is not None:
                # shutdown first: it stops the listening at once, even while the accept
                # thread is still blocked on this socket
                try:
                    self.listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.listener.close()
                self.listener = None
                # XAPI's firewall also rejects the packets of open connections: cut them
                for child, pidfile in self.children:
                    child.kill()
                    child.wait()

    # ---- connections --------------------------------------------------------------------------
    def _accept_loop(self):
        while not self.stopping.is_set():
            self._reap()
            listener = self.listener
            if listener is None:
                self.stopping.wait(0.2)
                continue
            try:
                conn, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                self._serve(conn)
            except Exception as e:  # noqa: BLE001 - never stop accepting
                print("xapisim nbd: connection failed: %r" % e, flush=True)
                conn.close()

    def _serve(self, conn):
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mode = connection_mode(pool_purposes(self.pool.db))
        if mode is None or len(self.children) >= CONNECTION_LIMIT:
            self.pool.log_nbd(self.host, refused=True)
            conn.close()
            return
        faults, host = self.pool.faults, self.pool.host
        drop_after = faults.take_nbd_drop()
        if drop_after is None and not faults.latency and not faults.bandwidth and not host.shapes_nbd:
            host.attach("nbd")        # counted; an instant host charges nothing
            self._spawn(conn, mode)
            conn.close()
            return
        server_end, relay_end = socket.socketpair()
        self._spawn(server_end, mode)
        server_end.close()
        Relay(conn, relay_end, faults, self.throttle, drop_after,
              attach=lambda: host.attach("nbd"), cap=host.nbd_cap()).start()

    def _spawn(self, sock, mode):
        entry = self.pool.log_nbd(self.host)
        pidfile = os.path.join(self.pool.dir, "nbdkit-%s.pid" % entry["id"])
        child = subprocess.Popen(self.nbdkit_command(mode, pidfile, entry["id"]), stdin=sock.fileno(),
                                 stdout=sock.fileno(), stderr=None, close_fds=True)
        with self.lock:
            self.children.append((child, pidfile))
        # the close time to the millisecond: caps are computed from overlaps in this log
        threading.Thread(target=self._log_close, args=(child, entry), daemon=True).start()

    @staticmethod
    def _log_close(child, entry):
        child.wait()
        entry["closed"] = time.time()

    def _reap(self):
        with self.lock:
            alive = []
            for child, pidfile in self.children:
                if child.poll() is None:
                    alive.append((child, pidfile))
                else:
                    remove(pidfile)
            self.children = alive

    def nbdkit_command(self, mode, pidfile, connection):
        pool = self.pool
        cmd = ["nbdkit", "-s", "--exit-with-parent", "-P", pidfile, "-r"]
        if mode == "tls":
            cmd += ["--tls=require", "--tls-certificates=%s" % pool.pki_dir]
        else:
            cmd += ["--tls=off"]
        if not self.block_status:
            # xapi-nbd: simple replies only, no NO_ZEROES flag, no multi-conn, no block status
            cmd += ["--no-sr", "--mask-handshake=1", "--filter=multi-conn", "--filter=noextents"]
        cmd += ["python", PLUGIN, "url=%s" % pool.url, "ca=%s" % pool.cert_file,
                "disks=%s" % pool.storage.dir, "connection=%s" % connection,
                "host=%s" % self.host]
        if not self.block_status:
            cmd.append("multi-conn-mode=disable")
        return cmd


def pool_throttle(pool):
    """One token bucket per pool for the ``bandwidth`` fault, shared by every host's server."""
    if getattr(pool, "nbd_throttle", None) is None:
        pool.nbd_throttle = Throttle(pool.faults)
    return pool.nbd_throttle


def reusable_socket():
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Relay:
    """Carries one NBD connection between the client and its nbdkit while faults are set:
    ``nbd_drop`` cuts it after N bytes sent to the client (handshake and TLS records
    included), ``latency`` delays each batch of requests, ``bandwidth`` caps the bytes sent
    (a token bucket shared by the pool's NBD connections); a host profile's dom0 attach
    delays the connection's first byte and its per-connection rate caps each one."""

    def __init__(self, client, server, faults, throttle, drop_after, attach=None, cap=None):
        self.client, self.server = client, server
        self.faults, self.throttle = faults, throttle
        self.attach, self.cap = attach, cap
        self.left = drop_after
        self.cut_done = threading.Event()

    def start(self):
        threading.Thread(target=self._requests, daemon=True).start()
        threading.Thread(target=self._replies, daemon=True).start()

    def _requests(self):
        try:
            while True:
                data = self.client.recv(RELAY_CHUNK)
                if not data:
                    break
                self.faults.delay()
                self.server.sendall(data)
        except OSError:
            pass
        self._cut()

    def _replies(self):
        buf = bytearray(RELAY_CHUNK)
        if self.attach is not None:
            self.attach()                 # xapi-nbd's VBD.create + VBD.plug in dom0
        try:
            while True:
                n = self.server.recv_into(buf)
                if not n:
                    break
                if self.left is not None and n >= self.left:
                    self.client.sendall(memoryview(buf)[:self.left])
                    break
                self.throttle.consume(n)
                if self.cap is not None:
                    self.cap.consume(n)
                self.client.sendall(memoryview(buf)[:n])
                if self.left is not None:
                    self.left -= n
        except OSError:
            pass
        self._cut()

    def _cut(self):
        if self.cut_done.is_set():
            return
        self.cut_done.set()
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


# ---- XenAPI messages --------------------------------------------------------------------------

def certificate_subject(pem):
    """XAPI's choice of ``subject``: the first strict DNS name of the certificate (its SAN
    DNS names, else its CN), else the first wildcard name; None when there is none."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    try:
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    strict = sorted(n for n in names if not n.startswith("*."))
    wildcard = sorted(n for n in names if n.startswith("*."))
    chosen = strict or wildcard
    return chosen[0] if chosen else None


@implements("VDI.get_nbd_info")
def vdi_get_nbd_info(ctx, vdi):
    """``xapi_vdi.ml`` ``_get_nbd_info``: one record per IP of each currently attached PIF on a
    network with purpose nbd or insecure_nbd, on each host with the VDI's SR attached."""
    db = ctx.db
    rec = db.raw("VDI", vdi)
    if rec["type"] == "cbt_metadata":
        raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, "cbt_metadata")
    nbd_networks = {ref for ref in db.refs("network")
                    if set(db.raw("network", ref)["purpose"]) & set(NBD_PURPOSES)}
    hosts = [db.raw("PBD", pbd)["host"]
             for pbd in db.where("PBD", SR=rec["SR"], currently_attached=True)]
    exportname = "/%s?session_id=%s" % (rec["uuid"], ctx.session_ref)
    records = []
    for host in hosts:
        if not db.exists("host", host):
            continue
        ips = []
        for pif in db.where("PIF", host=host, currently_attached=True):
            p = db.raw("PIF", pif)
            if p["network"] in nbd_networks:
                ips += ([p["IP"]] if p["IP"] else []) + [a for a in p.get("IPv6", []) if a]
        if not ips:
            continue
        cert = ctx.call("host.get_server_certificate", host)
        subject = certificate_subject(cert) or db.raw("host", host)["hostname"]
        server = ctx.pool.nbd_servers.get(host)
        port = server.port if server else 10809
        records += [{"exportname": exportname, "address": ip, "port": port, "cert": cert,
                     "subject": subject} for ip in ips]
    return records


CONFLICTING_PURPOSE = {"nbd": "insecure_nbd", "insecure_nbd": "nbd"}


@implements("network.add_purpose")
def network_add_purpose(ctx, network, value):
    """``xapi_network.ml`` add_purpose: nbd and insecure_nbd never coexist in a pool."""
    db = ctx.db
    if not db.raw("network", network).get("managed", True):
        raise XapiError("NETWORK_UNMANAGED", network)
    current = db.raw("network", network)["purpose"]
    if value not in current:
        conflicting = CONFLICTING_PURPOSE.get(value)
        for ref in db.refs("network"):
            if conflicting in db.raw("network", ref)["purpose"]:
                raise XapiError("NETWORK_INCOMPATIBLE_PURPOSES", value, conflicting)
        db.set("network", network, "purpose", [value] + current)
    for server in ctx.pool.nbd_servers.values():
        server.reconfigure()


@implements("network.remove_purpose")
def network_remove_purpose(ctx, network, value):
    db = ctx.db
    current = db.raw("network", network)["purpose"]
    if value in current:
        db.set("network", network, "purpose", [p for p in current if p != value])
    for server in ctx.pool.nbd_servers.values():
        server.reconfigure()

"""Running the pools: the ``serve`` process, pools.json, simulator-only control endpoints."""

import glob
import json
import os
import signal
import ssl
import threading
import urllib.request
import xmlrpc.client

from . import ops_core  # noqa: F401  (registers implementations)
from . import ops_vdi  # noqa: F401
from . import ops_vm  # noqa: F401
from . import ops_devices  # noqa: F401
from . import ops_vm_settings  # noqa: F401
from . import http_handlers  # noqa: F401
from .host_profile import HostProfile
from .nbd import NbdServer
from .pool import Pool
from .server import PoolServer, route
from .storage import Storage


def serve(state_dir, count, block_status=False, host_costs=None, hosts=1):
    os.makedirs(state_dir, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    pools, servers, entries = [], [], []
    try:
        for i in range(count):
            pool = Pool(i, state_dir, {"hosts": hosts})
            pool.storage = Storage(pool)
            pool.host = HostProfile(host_costs)
            servers += start_hosts(pool, block_status)
            pool.remember_ports(servers[-len(pool.hosts())].port, pool.nbd.port)
            pools.append(pool)
            users = pool.config["users"]
            entries.append({
                "name": pool.name, "url": pool.url,
                "username": "root", "password": users["root"]["password"],
                "ca_file": pool.cert_file,
                "pool_admin": {"username": "pool-admin",
                               "password": users["pool-admin"]["password"]},
                # every account with a role, by user name (= its role's name)
                "accounts": {name: {"username": name, "password": user["password"], "role": user["role"]}
                             for name, user in sorted(users.items()) if user["role"]},
                "nbd_port": pool.nbd.port, "state_dir": pool.dir,
                "hosts": [{"name": pool.db.raw("host", ref)["name_label"],
                           "uuid": pool.db.raw("host", ref)["uuid"],
                           "address": pool.db.raw("host", ref)["address"]} for ref in pool.hosts()],
            })
        with open(os.path.join(state_dir, "xapisim.pid"), "w") as f:
            f.write(str(os.getpid()))
        tmp = os.path.join(state_dir, "pools.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"pools": entries}, f, indent=1)
        os.replace(tmp, os.path.join(state_dir, "pools.json"))
        while not stop.wait(1.0):
            for pool in pools:
                pool.db.save()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for pool in pools:
            for nbd in pool.nbd_servers.values():
                nbd.stop()
            pool.db.save()
    return 0


def start_hosts(pool, block_status):
    """Each host's HTTPS front and NBD server, on its own address with the pool's ports (the
    master's come first: a restarted pool keeps its ports, as a host keeps 443 and 10809, so
    clients reconnect). Returns the HTTPS servers."""
    servers = []
    https_port, nbd_port = pool.config.get("https_port", 0), pool.config.get("nbd_port", 0)
    for host in pool.hosts():
        address = pool.db.raw("host", host)["address"]
        server = PoolServer(pool, host=address, port=https_port, host_ref=host)
        https_port = server.port
        server.serve_in_thread()
        servers.append(server)
        nbd = NbdServer(pool, host=host, address=address, port=nbd_port, block_status=block_status)
        nbd.start()
        nbd_port = nbd.port
        pool.nbd_servers[host] = nbd
    pool.url = "https://%s:%d/" % (pool.db.raw("host", pool.master)["address"], servers[0].port)
    pool.nbd = pool.nbd_servers[pool.master]
    return servers


def kill_leftovers(state_dir):
    """Stop NBD servers a crashed ``serve`` may have left behind (their pid files)."""
    for pidfile in glob.glob(os.path.join(state_dir, "pool*", "*.pid")):
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        try:
            os.unlink(pidfile)
        except OSError:
            pass


def require_root_session(pool, req):
    session = pool.session_of_http(req.param("session_id"))
    if session is None or not session.get("is_local_superuser"):
        req.respond(401, b"a local root session is required\n")
        return None
    return session


@route("POST", "/xapisim/faults")
def faults_endpoint(pool, req):
    """Simulator-only: add a fault (JSON body, see faults.py); answers the fault state."""
    if require_root_session(pool, req) is None:
        return
    length = req.content_length or 0
    spec = json.loads(req.rfile.read(length) or b"{}")
    try:
        if spec:
            pool.faults.add(spec)
    except (KeyError, ValueError) as e:
        req.respond(400, ("bad fault: %s\n" % e).encode())
        return
    req.respond(200, json.dumps(pool.faults.state()).encode(), content_type="application/json")


@route("GET", "/xapisim/calls")
def calls_endpoint(pool, req):
    """Simulator-only: the API calls made since ``since`` (seconds since the epoch), as
    [time, method, originator] (sessions' refs are left out)."""
    if require_root_session(pool, req) is None:
        return
    since = float(req.param("since", "0"))
    calls = [list(entry) for entry in list(pool.call_log) if entry[0] >= since]
    req.respond(200, json.dumps(calls).encode(), content_type="application/json")


@route("GET", "/xapisim/host-costs")
def host_costs_endpoint(pool, req):
    """Simulator-only: the host profile's costs and what it charged since the pool started
    (``calls``, ``attach_import``, ``attach_export``, ``attach_nbd``, one count per costed
    call such as ``VDI.snapshot``)."""
    if require_root_session(pool, req) is None:
        return
    body = {"costs": pool.host.costs, "charged": pool.host.charged()}
    req.respond(200, json.dumps(body).encode(), content_type="application/json")


@route("GET", "/xapisim/nbd-connections")
def nbd_connections_endpoint(pool, req):
    """Simulator-only: every NBD connection of every host since the pool started, as
    ``{id, host, opened, closed, refused, vdi, session, originator}`` (session = its uuid)."""
    if require_root_session(pool, req) is None:
        return
    req.respond(200, json.dumps(list(pool.nbd_log)).encode(), content_type="application/json")


@route("GET", "/xapisim/imports")
def imports_endpoint(pool, req):
    """Simulator-only: every raw import since the pool started, as ``{host, vdi, sr, session,
    originator, opened, closed}`` (session = its uuid)."""
    if require_root_session(pool, req) is None:
        return
    req.respond(200, json.dumps(list(pool.import_log)).encode(), content_type="application/json")


@route("POST", "/xapisim/nbd-opened")
def nbd_opened_endpoint(pool, req):
    """Simulator-only, called by nbd_plugin.py once it accepted an export name: the session
    is the client's, checked like any other."""
    session = pool.session_of_http(req.param("session_id"))
    if session is None:
        req.respond(401, b"no session\n")
        return
    found = pool.nbd_opened(req.param("connection"), req.param("session_id"), req.param("vdi"))
    req.respond(200 if found else 404, b"")


def inject_fault_cli(state_dir, index, spec):
    with open(os.path.join(state_dir, "pools.json")) as f:
        p = json.load(f)["pools"][index]
    ctx = ssl.create_default_context(cafile=p["ca_file"])
    login = ("<?xml version='1.0'?><methodCall><methodName>session.login_with_password</methodName>"
             "<params><param><value>%s</value></param><param><value>%s</value></param></params>"
             "</methodCall>" % (p["username"], p["password"])).encode()
    with urllib.request.urlopen(urllib.request.Request(p["url"], data=login), context=ctx) as r:
        session_ref = xmlrpc.client.loads(r.read())[0][0]["Value"]
    req = urllib.request.Request(p["url"].rstrip("/") + "/xapisim/faults",
                                 data=json.dumps(spec).encode(), method="POST",
                                 headers={"Cookie": "session_id=%s" % session_ref})
    with urllib.request.urlopen(req, context=ctx) as r:
        print(r.read().decode())
    return 0

"""One simulated pool: its database, disks, NBD server, faults, accounts and first objects."""

import collections
import itertools
import json
import os
import secrets
import subprocess
import time

from . import inventory
from .db import Database
from .errors import XapiError
from .faults import Faults
from .host_profile import HostProfile
from .model import NULL_REF, datamodel, now_text

GiB = 1 << 30
ALL_ROLES = ["pool-admin", "pool-operator", "vm-power-admin", "vm-admin", "vm-operator", "read-only"]
# XAPI waits before answering a failed login; shorter here so that tests stay quick.
AUTH_FAILURE_DELAY = 1.0
CALL_LOG_LIMIT = 200000


def host_address(index):
    """Host N of a pool answers at 127.0.0.(N+1): every address of 127.0.0.0/8 reaches the
    loopback, so each host has an address of its own with the pool's ports on it, as real hosts
    each have 443 and 10809."""
    return "127.0.0.%d" % (index + 1)


def make_host_certificate(folder, name, hosts=1):
    """A self-signed certificate, as a XenServer host has by default. Its DNS name is what
    VDI.get_nbd_info reports as ``subject``; it also names the hosts' addresses so that
    clients may verify it by address. One certificate serves every host of a simulated pool
    (real hosts have one each): a client's ca_path then covers the pool."""
    cert, key = os.path.join(folder, "server-cert.pem"), os.path.join(folder, "server-key.pem")
    if not os.path.exists(cert):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", cert, "-days", "3650", "-subj", "/CN=%s" % name,
             "-addext", "subjectAltName=DNS:localhost,%s"
             % ",".join("IP:%s" % host_address(i) for i in range(hosts)),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign"],
            check=True, capture_output=True)
        # nbdkit wants ca-cert.pem beside its server certificate
        with open(cert) as src, open(os.path.join(folder, "ca-cert.pem"), "w") as dst:
            dst.write(src.read())
    return cert, key


class Pool:
    def __init__(self, index, state_dir, config=None):
        self.index = index
        self.name = "pool%d" % index
        self.dir = os.path.join(state_dir, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "config.json")
        self.config = self._load_config(config or {})
        self.pki_dir = os.path.join(self.dir, "pki")
        os.makedirs(self.pki_dir, exist_ok=True)
        self.cert_file, self.key_file = make_host_certificate(self.pki_dir, "xapisim-%s" % self.name,
                                                              self.config.get("hosts", 1))
        self.db = Database(os.path.join(self.dir, "db.json"))
        self.faults = Faults()
        self.host = HostProfile()          # a real host's fixed costs, when asked for
        self.call_log = collections.deque(maxlen=CALL_LOG_LIMIT)
        self.url = None
        self.nbd = None             # the master's NBD server
        self.nbd_servers = {}       # host ref -> its NBD server
        self.nbd_log = collections.deque(maxlen=CALL_LOG_LIMIT)   # every NBD connection, see nbd.py
        self.nbd_serial = itertools.count(1)
        self.import_log = collections.deque(maxlen=CALL_LOG_LIMIT)   # every raw import, see log_import
        self.storage = None
        if not self.db.tables["pool"]:
            self.bootstrap()

    def _load_config(self, given):
        if os.path.exists(self.config_path):
            with open(self.config_path) as f:
                return json.load(f)
        # passwords of their own per state dir: a secret scan of one run never mistakes another
        # run's pools (same names, same ports reused) for a leak
        def password(name):
            return "xapisim-%s-%d-%s" % (name, self.index, secrets.token_hex(6))
        config = {
            "users": {
                "root": {"password": password("root"), "role": None},
                "pool-admin": {"password": password("admin"), "role": "pool-admin"},
                "vm-admin": {"password": password("vm-admin"), "role": "vm-admin"},
            },
            "sr_size": 64 * GiB,
            "hosts": 1,
        }
        config.update(given)
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=1)
        return config

    def remember_ports(self, https_port, nbd_port):
        self.config.update(https_port=https_port, nbd_port=nbd_port)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=1)

    # ---- first objects ----------------------------------------------------------------------
    def bootstrap(self):
        db = self.db
        network = db.create("network", {
            "name_label": "Pool-wide network associated with eth0", "bridge": "xenbr0",
            "other_config": {}, "purpose": ["nbd"], "MTU": 1500,
        })
        db.create("network", {"name_label": "Host internal management network",
                              "bridge": "xenapi", "other_config": {"is_host_internal_management_network": "true"}})
        hosts, pifs, srs = [], [], []
        for index in range(self.config.get("hosts", 1)):
            host, pif = self.create_host(index, network)
            hosts.append(host)
            pifs.append(pif)
            # the master has a SMAPIv1 and a SMAPIv3 local SR, the other hosts one SMAPIv1 each
            kinds = ((("Local storage", "ext", "smapiv1"), ("Local storage (SMAPIv3)", "file-v3", "smapiv3"))
                     if index == 0 else (("Local storage", "ext", "smapiv1"),))
            for label, sr_type, flavour in kinds:
                srs.append(self.create_local_sr(host, label, sr_type, flavour))
        db.create("pool", {"name_label": "xapisim-%s" % self.name, "master": hosts[0],
                           "default_SR": srs[0], "suspend_image_SR": srs[0],
                           "crash_dump_SR": srs[0], "other_config": {}})
        inventory.populate(self, hosts, pifs)
        db.save()

    def create_host(self, index, network):
        db = self.db
        name = "xapisim-%s-host%d" % (self.name, index)
        address = host_address(index)
        host = db.create("host", {
            "name_label": name, "hostname": name, "address": address, "enabled": True,
            "API_version_major": 2, "API_version_minor": 23, "API_version_vendor": "XenSource",
            "software_version": {"product_brand": "XCP-ng", "product_version": "8.3.0",
                                 "platform_name": "XCP", "xapi": "25.6", "xen": "4.17",
                                 "xapisim": "1"},
            "capabilities": [], "cpu_info": {"cpu_count": "2"},
            "other_config": {},
        })
        pif = db.create("PIF", {"device": "eth0", "network": network, "host": host,
                                "MAC": "02:00:00:%02x:%02x:01" % (index, self.index), "IP": address,
                                "netmask": "255.0.0.0", "management": True, "currently_attached": True})
        return host, pif

    def create_local_sr(self, host, label, sr_type, flavour):
        """A local SR: one PBD, on its host; its disks are reached through that host only."""
        db = self.db
        sr = db.create("SR", {
            "name_label": label, "type": sr_type, "content_type": "user", "shared": False,
            "physical_size": self.config["sr_size"], "physical_utilisation": 0,
            "virtual_allocation": 0,
            "sm_config": {"xapisim-flavour": flavour},
            "other_config": {},
            "allowed_operations": ["vdi_create", "vdi_destroy", "vdi_resize", "vdi_clone",
                                   "vdi_snapshot", "vdi_introduce", "vdi_enable_cbt",
                                   "vdi_disable_cbt", "vdi_data_destroy",
                                   "vdi_list_changed_blocks", "vdi_mirror", "scan",
                                   "update", "plug", "unplug"],
        })
        db.create("PBD", {"host": host, "SR": sr, "device_config": {"location": sr},
                          "currently_attached": True})
        return sr

    # ---- handy lookups ----------------------------------------------------------------------
    @property
    def master(self):
        return self.db.raw("pool", self.db.refs("pool")[0])["master"]

    def hosts(self):
        """The hosts' refs, the master first."""
        master = self.master
        return [master] + sorted(ref for ref in self.db.refs("host") if ref != master)

    def host_of_address(self, address):
        for ref in self.db.refs("host"):
            if self.db.raw("host", ref)["address"] == address:
                return ref
        return None

    def hosts_with_sr(self, sr):
        """The hosts on which ``sr`` is attached, the master first (XAPI's find_host_for_sr
        takes one of them)."""
        attached = {self.db.raw("PBD", pbd)["host"]
                    for pbd in self.db.where("PBD", SR=sr, currently_attached=True)}
        return [host for host in self.hosts() if host in attached]

    def role_of(self, session):
        user = self.config["users"].get(session.get("auth_user_name"), {})
        return user.get("role")

    # ---- sessions ---------------------------------------------------------------------------
    def login(self, uname, pwd, originator=""):
        user = self.config["users"].get(uname)
        if user is None or user["password"] != pwd:
            time.sleep(AUTH_FAILURE_DELAY)
            raise XapiError("SESSION_AUTHENTICATION_FAILED", uname,
                            "Authentication failure")
        return self.db.create("session", {
            "this_host": self.master, "this_user": NULL_REF, "last_active": now_text(),
            "pool": False, "is_local_superuser": user["role"] is None,
            "auth_user_name": uname, "originator": originator, "validation_time": now_text(),
            "_last_active_t": time.time(),
            # local root has none: it is allowed everything without them
            "rbac_permissions": [] if user["role"] is None else datamodel().permissions_of(user["role"]),
        })

    def log_call(self, method, session_ref):
        """Who called what, when (simulator-only, GET /xapisim/calls): the originator is the
        one the client gave at login ("xapi.sxm" for the collection)."""
        originator = self.db.raw("session", session_ref).get("originator", "")
        self.call_log.append((time.time(), method, originator))

    def log_nbd(self, host, refused=False):
        """A new entry of the NBD connection log (simulator-only): the accept time now, the
        close time and what the connection read once known (nbd.py, ``nbd_opened``)."""
        entry = {"id": "%d-%d" % (self.index, next(self.nbd_serial)),
                 "host": self.db.raw("host", host)["name_label"], "opened": time.time(),
                 "closed": time.time() if refused else None, "refused": refused,
                 "vdi": None, "session": None, "originator": None}
        self.nbd_log.append(entry)
        return entry

    def log_import(self, host, vdi, session_ref):
        """A new entry of the import log (simulator-only, GET /xapisim/imports): which host
        wrote into which VDI and SR for which session (its uuid), from when to when."""
        db = self.db
        rec = db.raw("VDI", vdi)
        session = db.raw("session", session_ref) if db.exists("session", session_ref) else {}
        entry = {"host": db.raw("host", host)["name_label"], "vdi": rec["uuid"],
                 "sr": db.raw("SR", rec["SR"])["uuid"], "session": session.get("uuid"),
                 "originator": session.get("originator"), "opened": time.time(), "closed": None}
        self.import_log.append(entry)
        return entry

    def nbd_opened(self, connection, session_ref, vdi_uuid):
        """The export name of ``connection`` was accepted: record whose session reads what.
        The session's uuid, never its ref (a secret)."""
        for entry in reversed(self.nbd_log):
            if entry["id"] == connection:
                session = self.db.raw("session", session_ref)
                entry.update(vdi=vdi_uuid, session=session["uuid"],
                             originator=session.get("originator", ""))
                return True
        return False

    def session_alive(self, ref):
        """A session exists until logged out or unused for longer than the inactivity timeout
        (then XAPI's session GC destroys it)."""
        if not self.db.exists("session", ref):
            return False
        rec = self.db.raw("session", ref)
        idle = time.time() - rec.get("_last_active_t", time.time())
        if idle > self.faults.session_timeout:
            self.db.destroy("session", ref)
            self.faults.sessions_expired += 1
            return False
        return True

    def touch_session(self, ref):
        rec = self.db.raw("session", ref)
        rec["last_active"] = now_text()
        rec["_last_active_t"] = time.time()

    def session_of_http(self, session_ref):
        if session_ref and self.session_alive(session_ref):
            self.touch_session(session_ref)
            return self.db.raw("session", session_ref)
        return None

    def create_task(self, session_ref, label, description=""):
        return self.db.create("task", {
            "name_label": label, "name_description": description, "created": now_text(),
            "finished": "19700101T00:00:00Z", "status": "pending", "resident_on": self.master,
            "progress": 0.0, "type": "<none/>", "result": "", "error_info": [],
            "allowed_operations": ["cancel"], "other_config": {}, "subtask_of": NULL_REF,
        })

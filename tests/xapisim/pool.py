"""One simulated pool: its database, disks, NBD server, faults, accounts and first objects."""

import collections
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


def make_host_certificate(folder, name):
    """A self-signed host certificate, as a XenServer host has by default. Its DNS name is
    what VDI.get_nbd_info reports as ``subject``; it also names 127.0.0.1 so that clients may
    verify it by address."""
    cert, key = os.path.join(folder, "server-cert.pem"), os.path.join(folder, "server-key.pem")
    if not os.path.exists(cert):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", cert, "-days", "3650", "-subj", "/CN=%s" % name,
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
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
        self.cert_file, self.key_file = make_host_certificate(self.pki_dir, "xapisim-%s" % self.name)
        self.db = Database(os.path.join(self.dir, "db.json"))
        self.faults = Faults()
        self.host = HostProfile()          # a real host's fixed costs, when asked for
        self.call_log = collections.deque(maxlen=CALL_LOG_LIMIT)
        self.url = None
        self.nbd = None
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
        host = db.create("host", {
            "name_label": "xapisim-%s-host0" % self.name, "hostname": "xapisim-%s-host0" % self.name,
            "address": "127.0.0.1", "enabled": True, "API_version_major": 2,
            "API_version_minor": 23, "API_version_vendor": "XenSource",
            "software_version": {"product_brand": "XCP-ng", "product_version": "8.3.0",
                                 "platform_name": "XCP", "xapi": "25.6", "xen": "4.17",
                                 "xapisim": "1"},
            "capabilities": [], "cpu_info": {"cpu_count": "2"},
            "other_config": {},
        })
        srs = []
        for label, sr_type, flavour in (("Local storage", "ext", "smapiv1"),
                                        ("Local storage (SMAPIv3)", "file-v3", "smapiv3")):
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
            srs.append(sr)
        network = db.create("network", {
            "name_label": "Pool-wide network associated with eth0", "bridge": "xenbr0",
            "other_config": {}, "purpose": ["nbd"], "MTU": 1500,
        })
        pif = db.create("PIF", {"device": "eth0", "network": network, "host": host,
                          "MAC": "02:00:00:00:%02x:01" % self.index, "IP": "127.0.0.1",
                          "netmask": "255.0.0.0", "management": True, "currently_attached": True})
        db.create("network", {"name_label": "Host internal management network",
                              "bridge": "xenapi", "other_config": {"is_host_internal_management_network": "true"}})
        db.create("pool", {"name_label": "xapisim-%s" % self.name, "master": host,
                           "default_SR": srs[0], "suspend_image_SR": srs[0],
                           "crash_dump_SR": srs[0], "other_config": {}})
        inventory.populate(self, host, pif)
        db.save()

    # ---- handy lookups ----------------------------------------------------------------------
    @property
    def master(self):
        return self.db.raw("pool", self.db.refs("pool")[0])["master"]

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

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of every module of the collection: shared argument specs (documented once, in
doc_fragments), logging in to one or two pools and always out, one way to fail (``fail_json``
with the error's code, advice and the partial result: never a traceback), check mode, diff,
and the guard of a job: its lock, its keepalive and signals, so that a job nobody waits for
stops itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import time
import traceback
from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.xapi.sxm.plugins.module_utils import cancel as cancelling, lock as locking, secret_channel
from ansible_collections.xapi.sxm.plugins.module_utils import slots as slotting, warm
from ansible_collections.xapi.sxm.plugins.module_utils.progress import write_json_atomically
from ansible_collections.xapi.sxm.plugins.module_utils.errors import InputError, error_from
from ansible_collections.xapi.sxm.plugins.module_utils.plan import AlreadyMigrated, Options, param_problems
from ansible_collections.xapi.sxm.plugins.module_utils.session_guard import SessionGuard
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import HAS_XENAPI, Connection

ORPHAN_TIMEOUT = 60      # seconds without a poll after which a job stops itself
LOCK_TIMEOUT = 120       # seconds without a heartbeat after which a job's lock is taken over


def connection_spec():
    """The options of a one-pool module (doc fragment xapi.sxm.connection)."""
    return dict(
        url=dict(type="str", required=True, fallback=(env_fallback, ["XAPI_URL"])),
        username=dict(type="str", required=True, fallback=(env_fallback, ["XAPI_USERNAME"])),
        password=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["XAPI_PASSWORD"])),
        validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["XAPI_VALIDATE_CERTS"])),
        ca_path=dict(type="path", fallback=(env_fallback, ["XAPI_CA_PATH"])),
    )


def pool_spec():
    """One pool as a dict option (doc fragment xapi.sxm.pools): the connection options,
    without environment fallbacks (two pools cannot share one XAPI_URL)."""
    options = connection_spec()
    for spec in options.values():
        spec.pop("fallback", None)
    return dict(type="dict", required=True, options=options)


def vm_spec():
    """Which VM and where its parts go (doc fragment xapi.sxm.migration)."""
    return dict(
        vm=dict(type="str", required=True),
        sr_map=dict(type="dict", default={}),
        default_sr=dict(type="str"),
        network_map=dict(type="dict", default={}),
        mode=dict(type="str", choices=["auto", "cold", "warm"], default="auto"),
        unmovable_devices=dict(type="str", choices=["refuse", "warn"], default="refuse"),
    )


def data_path_spec():
    """How disk data is read (doc fragment xapi.sxm.data_path)."""
    return dict(
        use_cbt=dict(type="bool", default=True),
        use_vhd_maps=dict(type="bool", default=True),
        bandwidth_limit=dict(type="int", default=0),
        nbd_connections=dict(type="int", default=1),
    )


def warm_spec():
    """How a running VM is moved (doc fragment xapi.sxm.warm)."""
    return dict(
        max_passes=dict(type="int", default=5, no_log=False),   # not a password
        cutover_bytes=dict(type="int", default=64 << 20),
        cutover=dict(type="str", choices=list(warm.CUTOVERS), default="auto"),
        shutdown_timeout=dict(type="int", default=300),
        hard_shutdown=dict(type="bool", default=False),
        cutover_after=dict(type="str"),
        cutover_before=dict(type="str"),
        sync_interval=dict(type="int", default=60),
    )


def job_spec():
    """How a long job is watched (doc fragment xapi.sxm.job)."""
    return dict(
        lock_timeout=dict(type="int", default=LOCK_TIMEOUT),
        keepalive_file=dict(type="path"),
        orphan_timeout=dict(type="int", default=ORPHAN_TIMEOUT),
        progress_file=dict(type="path"),
        slots=dict(type="dict", options=dict(
            concurrency=dict(type="int", default=0),
            per_host=dict(type="int", default=0),
            per_sr=dict(type="int", default=0),
            timeout=dict(type="int", default=slotting.SLOT_TIMEOUT),
            evacuation=dict(type="str"),
            rank=dict(type="int", default=0),
        )),
    )


class SxmModule:
    """``SxmModule(spec, pools=2).run(work)``: ``work(self)`` returns the result dict."""

    def __init__(self, argument_spec, pools=2, job=False, **kwargs):
        spec = {}
        if pools == 2:
            spec.update(source=pool_spec(), destination=pool_spec())
        elif pools == 1:
            spec.update(connection_spec())
        if job:
            spec.update(job_spec())
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.partial = {}          # what is done so far: the partial result of a failure
        self.connections = []
        self.guard = SessionGuard()    # logs out of the sessions if this process is killed
        if pools:
            self.guard.start()
        self.cancel = cancelling.Cancel()
        self.fetch_passwords()
        problems = param_problems(self.params)
        if problems:
            self.fail(InputError("; ".join(problems), advice="fix the options named; nothing was changed"))

    def fetch_passwords(self):
        """Where the action plugin sent a channel reference instead of the passwords, fetch
        them (they then exist only in this process's memory) and keep them out of any output."""
        reference = secret_channel.reference_in(self.params)
        if reference is None:
            return
        try:
            found = secret_channel.fetch(reference)
        except secret_channel.SecretChannelError as e:
            self.fail(InputError(str(e), advice="nothing was changed"))
        self.module.no_log_values.update(value for value in found.values() if value)
        secret_channel.fill_in(self.params, found)

    # ---- pools ------------------------------------------------------------------------------
    def connect(self, params):
        if not HAS_XENAPI:
            raise InputError("the XenAPI Python library is missing on this host: pip install XenAPI")
        url = params["url"]
        if "://" in url and not url.startswith("https://"):
            raise InputError("url %s: only https:// pool URLs are accepted, the session and "
                             "passwords travel over it" % url)
        if not params["validate_certs"]:
            self.module.warn("validate_certs is off for %s: the pool's identity is not checked" % url)
        conn = Connection(url, params["username"], params["password"], validate_certs=params["validate_certs"],
                          ca_path=params["ca_path"], guard=self.guard).login()
        self.connections.append(conn)
        # a session ref unlocks the pool's NBD exports: never in any output
        self.module.no_log_values.add(conn.session_ref)
        return conn

    def options(self):
        """The migration options this module was given, checked (plan.Options)."""
        names = ("vm", "sr_map", "default_sr", "network_map", "mode", "source_disposition", "use_cbt", "use_vhd_maps",
                 "verify", "verify_depth", "bandwidth_limit", "progress_file", "nbd_connections", "userdevices",
                 "unmovable_devices")
        given = dict((name, self.params[name]) for name in names if name in self.params)
        if "max_passes" in self.params:
            given["warm_settings"] = warm.Settings(
                **dict((name, self.params[name]) for name in warm_spec()))
        return Options(**given)

    def pools(self):
        return self.connect(self.params["source"]), self.connect(self.params["destination"])

    def pool(self):
        return self.connect(self.params)

    # ---- the job ----------------------------------------------------------------------------
    @contextmanager
    def job(self, dst, job_id, watch=False):
        """Hold the job's lock on ``dst`` while the block runs; signals cancel the job; with
        ``watch`` the job also stops itself when nobody touches its keepalive file. Check
        mode changes nothing, so it takes no lock."""
        if self.check_mode:
            yield self.cancel
            return
        holder = "%s on %s pid %d" % (self.module._name, socket.gethostname(), os.getpid())
        job_lock = locking.JobLock(dst, job_id, holder, timeout=self.params.get("lock_timeout") or LOCK_TIMEOUT,
                                   on_lost=lambda reason: self.cancel.cancel("the job's lock was lost: %s" % reason))
        previous = cancelling.install_signal_handlers(self.cancel)
        watcher = None
        if watch:
            folder = os.path.dirname(self.params.get("keepalive_file") or "")
            if folder:
                os.makedirs(folder, exist_ok=True)
            watcher = cancelling.KeepaliveWatch(self.params.get("keepalive_file"),
                                                self.params.get("orphan_timeout") or ORPHAN_TIMEOUT,
                                                self.cancel)
            watcher.start()
        try:
            with job_lock:
                yield self.cancel
        finally:
            if watcher is not None:
                watcher.stop()
            cancelling.restore_signal_handlers(previous)

    @contextmanager
    def slots(self, src, dst, the_plan, drainable=False, wanted=True):
        """Hold a slot of every capped place the data step touches (option ``slots``: the
        source pool, the source host serving the VM's disks, each destination SR) while the
        block runs; waits for them, telling the progress file why. Yields the Slots (its
        ``waited_s``), or None without caps or in check mode."""
        caps = self.params.get("slots") or {}
        if not wanted or self.check_mode or not any(caps.get(k) for k in ("concurrency", "per_host", "per_sr")):
            yield None
            return
        if caps["timeout"] < locking.MIN_TIMEOUT:
            raise InputError("slots.timeout must be at least %d seconds" % locking.MIN_TIMEOUT)
        holder = "%s of VM %s on %s pid %d" % (self.module._name, the_plan["job"], socket.gethostname(), os.getpid())
        held = slotting.Slots(slotting.places_of(src, dst, the_plan, caps), holder, timeout=caps["timeout"],
                              evacuation=caps.get("evacuation"), rank=caps["rank"], job=the_plan["job"],
                              cancel=self.cancel, on_wait=self._tell_waiting, drainable=drainable,
                              on_lost=self.cancel.cancel)
        with held.acquire():
            yield held

    def _tell_waiting(self, text):
        path = self.params.get("progress_file")
        if path:
            write_json_atomically(path, {"phase": text, "elapsed_s": 0, "pid": os.getpid(),
                                         "updated": time.time()})

    # ---- results ----------------------------------------------------------------------------
    def run(self, work):
        try:
            result = work(self)
        except AlreadyMigrated as done:
            result = done.result()
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 - every failure ends in fail_json
            self.logout()
            self.fail(e)
        self.logout()
        self.exit(result)

    def logout(self):
        for conn in self.connections:
            # sessions renewed during the work are secrets too
            self.module.no_log_values.update(conn.session_refs)
            conn.logout()
        self.connections = []
        self.guard.close()

    def fail(self, exc):
        error = error_from(exc)
        partial = dict(self.partial)
        partial.update(error.partial)
        self.module.fail_json(msg="%s. What to do: %s" % (error.message.rstrip("."), error.advice),
                              error_code=error.code, advice=error.advice, partial_result=partial,
                              changed=bool(partial.get("changed")),
                              exception="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def exit(self, result):
        """``result["diff_texts"]`` (before, after), if a step set it, becomes ``--diff``."""
        # AnsibleModule returns what module.warn() collected as `warnings`
        for warning in result.pop("warnings", []):
            self.module.warn(warning)
        texts = result.pop("diff_texts", None)
        if self.module._diff and texts is not None:
            result["diff"] = {"before": texts[0], "after": texts[1]}
        self.module.exit_json(**result)

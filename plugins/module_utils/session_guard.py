# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logging out of a module's sessions even when the module is killed. SIGKILL leaves a process
no moment to log out, and XAPI keeps an unused session for 24 hours (and counts it against
the 500 sessions an originator may hold). So each module starts a small guardian process
before its first login: the module tells it, over a pipe, of every session it holds and of
every one it logged out of; when the pipe closes without the word ``done`` (the module
died), the guardian logs out of what is left, removes the folder AnsiballZ extracted the
module into (its own ``finally`` never ran), then exits.

The session refs travel only over the pipe and live only in the guardian's memory: nothing on
a command line, in the environment or on disk (the guardian's code on its command line holds
no secret). It runs in a session of its own, so that a kill of the module's process group
does not take it along.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import tempfile
import threading


def payload_folder():
    """The folder AnsiballZ extracted this module into (``ansible_<module>_payload_*`` in the
    system temp dir, on sys.path as its zip), or None when not run by Ansible."""
    for entry in sys.path:
        folder = os.path.dirname(entry)
        if entry.endswith("_payload.zip") and os.path.basename(folder).startswith("ansible_"):
            return folder
    return None


def private_folder(prefix):
    """A new folder only this user can read, for a module's own files (an NBD server's
    certificate): inside the payload folder when Ansible runs the module, so that the
    guardian removes it with the payload if the module is killed before removing it."""
    folder = tempfile.mkdtemp(prefix=prefix, dir=payload_folder())
    os.chmod(folder, 0o700)
    return folder


GUARDIAN = r"""
import json, shutil, ssl, sys, xmlrpc.client
held, done, payload = {}, False, None
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("done"):
        done = True
        break
    if "payload" in msg:
        payload = msg["payload"]
        continue
    key = (msg["url"], msg["validate_certs"], msg["ca_path"])
    refs = held.setdefault(key, set())
    if msg.get("forget"):
        refs.discard(msg["ref"])
    else:
        refs.add(msg["ref"])
if not done:
    for (url, validate, ca_path), refs in held.items():
        if validate:
            context = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
        else:
            context = ssl._create_unverified_context()
        proxy = xmlrpc.client.ServerProxy(url, context=context) if url.startswith("https") \
            else xmlrpc.client.ServerProxy(url)
        for ref in refs:
            try:
                proxy.session.logout(ref)
            except Exception:
                pass
    if payload:
        shutil.rmtree(payload, ignore_errors=True)
"""


class SessionGuard:
    """The module's side of the guardian. Every method is best effort: a guardian that cannot
    start or has gone costs only the logout after a kill, never the job."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc = None
        self._broken = False

    def start(self):
        """Start the guardian now, before the first login: starting an interpreter takes tens
        of milliseconds, and a module killed while its first session existed but its guardian
        did not yet left that session for 24 h and its payload for good (seen in the fault
        matrix, 2026-12-02)."""
        self._send(None)

    def _send(self, message):
        with self._lock:
            if self._broken:
                return
            try:
                if self._proc is None:
                    self._proc = subprocess.Popen([sys.executable, "-c", GUARDIAN], stdin=subprocess.PIPE,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                  close_fds=True, start_new_session=True)
                    self._write({"payload": payload_folder()})
                if message is not None:
                    self._write(message)
            except (OSError, ValueError):
                self._broken = True

    def _write(self, message):
        self._proc.stdin.write((json.dumps(message) + "\n").encode())
        self._proc.stdin.flush()

    def hold(self, conn, ref):
        """``conn`` (xapi.Connection) now holds session ``ref``."""
        self._send(self._message(conn, ref))

    def forget(self, conn, ref):
        """``conn`` logged out of ``ref``."""
        if self._proc is not None:
            self._send(dict(self._message(conn, ref), forget=True))

    @staticmethod
    def _message(conn, ref):
        return {"url": conn.url, "validate_certs": conn.validate_certs, "ca_path": conn.ca_path, "ref": ref}

    def close(self):
        """The module logged out of everything: the guardian exits without a call."""
        if self._proc is None:
            return
        self._send({"done": True})
        with self._lock:
            try:
                self._proc.stdin.close()
                self._proc.wait(10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            self._proc = None

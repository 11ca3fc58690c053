# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passwords travel from the controller to a module without touching a disk.

Ansible writes a module's arguments to a file for as long as the module runs whenever it does
not pipe them (always for ``async`` tasks; for every task without pipelining), and leaves that
file behind when it is killed. So the collection's action plugin takes the passwords out of
the arguments, puts a *reference* in their place (``sxm-secret-channel:<socket>:<token>``) and
serves them once over a UNIX socket of its own (in a 0700 folder, to the same user only,
checked with SO_PEERCRED); the module fetches them when it starts. The reference is useless
once used: the socket is gone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import secrets
import shutil
import socket
import struct
import tempfile
import threading

MARKER = "sxm-secret-channel:"
# where a password can be in a module's arguments
SECRET_PATHS = (("password",), ("source", "password"), ("destination", "password"))
FETCH_TIMEOUT = 30.0
MAX_MESSAGE = 1 << 16


class SecretChannelError(Exception):
    pass


def get_path(args, path):
    value = args
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def set_path(args, path, value):
    for key in path[:-1]:
        args = args[key]
    args[path[-1]] = value


def split_secrets(args):
    """(args with each password replaced by ``None`` placeholders, {path text: password})."""
    out = json.loads(json.dumps(args))
    found = {}
    for path in SECRET_PATHS:
        value = get_path(out, path)
        if isinstance(value, str) and value:
            found[".".join(path)] = value
            set_path(out, path, None)
    return out, found


def with_reference(args, found, reference):
    """Put the reference where each password was."""
    for path_text in found:
        set_path(args, tuple(path_text.split(".")), reference)
    return args


def reference_in(params):
    """The channel reference a module was given instead of its passwords, or None."""
    for path in SECRET_PATHS:
        value = get_path(params, path)
        if isinstance(value, str) and value.startswith(MARKER):
            return value
    return None


def peer_uid(conn):
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class SecretServer:
    """Serves ``found`` once, to a process of the same user that knows the token."""

    def __init__(self, found):
        self.found = found
        self.token = secrets.token_hex(16)
        self.folder = tempfile.mkdtemp(prefix="sxm-secrets-")
        os.chmod(self.folder, 0o700)
        self.address = os.path.join(self.folder, "s")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.address)
        os.chmod(self.address, 0o600)
        self.sock.listen(4)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="sxm-secrets", daemon=True)
        self.thread.start()

    @property
    def reference(self):
        return "%s%s:%s" % (MARKER, self.address, self.token)

    def _serve(self):
        try:
            while True:
                try:
                    conn, dummy = self.sock.accept()
                except OSError:
                    return  # closed
                with conn:
                    if self._answer(conn):
                        return
        finally:
            # gone before anyone is told it was served: the reference is dead by then
            self.close()
            self.done.set()

    def _answer(self, conn):
        """True when this connection got the secrets."""
        try:
            conn.settimeout(5)
            if peer_uid(conn) != os.getuid():
                return False
            if conn.recv(256).decode("ascii", "replace").strip() != self.token:
                return False
            conn.sendall(json.dumps(self.found).encode())
            return True
        except OSError:
            return False

    def wait(self, timeout):
        """Until the module fetched the secrets (or the channel was closed)."""
        return self.done.wait(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def fetch(reference, timeout=FETCH_TIMEOUT):
    """{path text: password} from the controller's channel."""
    try:
        address, token = reference[len(MARKER):].rsplit(":", 1)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        with sock:
            sock.connect(address)
            sock.sendall((token + "\n").encode("ascii"))
            data = b""
            while len(data) < MAX_MESSAGE:
                piece = sock.recv(4096)
                if not piece:
                    break
                data += piece
        return json.loads(data.decode())
    except (OSError, ValueError) as e:
        raise SecretChannelError(
            "the passwords could not be fetched from the controller (%s): the module must run "
            "on the controller as the same user (no become to another user, no remote host)"
            % type(e).__name__)


def fill_in(params, found):
    """The module's parameters with each reference replaced by its password."""
    for path_text, value in found.items():
        set_path(params, tuple(path_text.split(".")), value)
    return params

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A job nobody waits for stops itself: a cancel token the work checks at its safe points, set
when the controller's poller stops touching a keepalive file, when the process is signalled
(SIGTERM, SIGINT, SIGHUP), or when the job's lock is taken over.

Plain Python: no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import threading
import time

from ansible_collections.xapi.sxm.plugins.module_utils.errors import JobCancelled

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class Cancel:
    """A threading.Event-like token with a reason; the first reason wins."""

    def __init__(self):
        # list.append is atomic under the GIL: cancel() needs no lock of its own
        self._reasons = []
        self._event = threading.Event()

    def cancel(self, reason):
        if not self._reasons:
            self._reasons.append(reason)
        self._event.set()

    @property
    def cancelled(self):
        return bool(self._reasons)

    @property
    def reason(self):
        return self._reasons[0] if self._reasons else None

    def check(self):
        """Raise JobCancelled at a safe point once cancelled."""
        if self._reasons:
            raise JobCancelled(self._reasons[0])

    def wait(self, seconds):
        """Sleep up to ``seconds``; True if cancelled (then at once)."""
        return self._event.wait(seconds)


class KeepaliveWatch:
    """Cancels the job when the file at ``path`` was not touched for ``timeout`` seconds, or
    disappeared: the controller's poller touches it on every poll, so either means nobody waits
    for the job any more. Local clock: the poller and the job run on the same machine.
    With ``path`` None it does nothing."""

    def __init__(self, path, timeout, cancel, interval=1.0):
        self.path = path
        self.timeout = timeout
        self.cancel = cancel
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if self.path is None:
            return self
        # 0600: the file names a job of this user; nobody else needs to touch it
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.utime(self.path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sxm-keepalive", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _run(self):
        while not self._stop.wait(self.interval):
            reason = self.expired()
            if reason:
                self.cancel.cancel(reason)
                return

    def expired(self):
        """Why nobody waits for the job any more, or None while somebody does."""
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return ("the keepalive file %s was removed (the controller gave up on this job): stopping at "
                    "the next safe point" % self.path)
        except OSError:
            return None     # unreadable for a moment (e.g. a network file system): look again
        if age > self.timeout:
            return ("nobody has polled this job for %d s (the controller was stopped or interrupted): "
                    "stopping at the next safe point" % age)
        return None


class PreviousHandlers(dict):
    """The handlers install_signal_handlers replaced, by signal number, plus the pipe of the
    relay thread that restore_signal_handlers closes."""
    relay_fd = None


def install_signal_handlers(cancel):
    """SIGTERM, SIGINT and SIGHUP cancel the job ("received SIGTERM"). Returns the previous
    handlers for restore_signal_handlers. Python allows handlers only in the main thread: from
    any other thread nothing is installed (and an empty mapping returned).

    The handler only writes the signal number to a pipe; a relay thread calls cancel(). A
    handler runs between two bytecodes of the main thread, possibly while that thread holds the
    lock inside Event.wait: calling Event.set from the handler itself could deadlock."""
    previous = PreviousHandlers()
    if threading.current_thread() is not threading.main_thread():
        return previous
    read_fd, write_fd = os.pipe()
    # a full pipe must never block the handler: a cancel is on its way already
    os.set_blocking(write_fd, False)

    def handler(signum, frame):
        try:
            os.write(write_fd, bytes([signum]))
        except OSError:
            pass    # full (a cancel is pending) or closed (handlers being restored)

    threading.Thread(target=_relay, args=(read_fd, cancel), name="sxm-signals", daemon=True).start()
    previous.relay_fd = write_fd
    for signum in SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    return previous


def _relay(read_fd, cancel):
    """Turn the signal numbers written by the handler into cancels, until the pipe closes."""
    try:
        while True:
            data = os.read(read_fd, 16)
            if not data:
                return
            for signum in data:
                cancel.cancel("received %s" % signal.Signals(signum).name)
    finally:
        os.close(read_fd)


def restore_signal_handlers(previous):
    """Put back the handlers install_signal_handlers replaced; the relay thread then ends."""
    for signum, old in previous.items():
        signal.signal(signum, old if old is not None else signal.SIG_DFL)
    fd = getattr(previous, "relay_fd", None)
    if fd is not None:
        previous.relay_fd = None
        os.close(fd)

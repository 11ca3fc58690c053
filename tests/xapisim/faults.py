"""Fault injection and link shaping, simulator-only (see docs/xapisim.md).

Faults are set through ``POST /xapisim/faults`` (JSON) with a local-root session, or with
``python -m xapisim fault``. Kinds:

* ``call``: the ``nth`` next call (1 = the very next) of ``method`` fails with ``error``
  (a list: code then parameters); ``count`` consecutive calls fail (default 1).
* ``nbd_drop``: the next NBD connection (or every one, with ``count``) is cut after
  ``after_bytes`` bytes sent to the client.
* ``import_fail``: the next ``/import_raw_vdi`` fails after ``after_bytes`` bytes of body
  were written, with ``error`` (default ``VDI_IO_ERROR``); ``cut: true`` drops the connection
  instead of answering.
* ``corrupt_write``: the next ``/import_raw_vdi`` (``count`` of them) succeeds but stores the
  first byte of its data inverted: a storage that did not keep what was written.
* ``latency``: every API call and NBD reply waits ``seconds`` more.
* ``bandwidth``: NBD and HTTP data are capped at ``bytes_per_second``.
* ``session_timeout``: sessions unused for ``seconds`` expire (XAPI: 24 h), to test renewal.
* ``clear``: forget every fault.
"""

import threading
import time

from .errors import XapiError
from .host_profile import Cap


SESSION_TIMEOUT = 86400.0


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {}          # method -> list of [countdown, remaining, error]
        self.nbd_drops = []      # list of [after_bytes, remaining]
        self.import_fails = []   # list of dicts
        self.corrupt_writes = 0  # imports left that store a wrong byte
        self.latency = 0.0
        self.bandwidth = 0       # bytes per second, 0 = unlimited
        # XAPI's inactive_session_timeout (xapi_globs.ml): a session unused this long is gone
        self.session_timeout = SESSION_TIMEOUT
        self.sessions_expired = 0

    def add(self, spec):
        kind = spec.get("kind")
        with self.lock:
            if kind == "call":
                self.calls.setdefault(spec["method"], []).append(
                    [int(spec.get("nth", 1)), int(spec.get("count", 1)), list(spec["error"])])
            elif kind == "nbd_drop":
                self.nbd_drops.append([int(spec["after_bytes"]), int(spec.get("count", 1))])
            elif kind == "import_fail":
                self.import_fails.append({"after_bytes": int(spec.get("after_bytes", 0)),
                                          "error": list(spec.get("error") or ["VDI_IO_ERROR", "Device I/O errors"]),
                                          "cut": bool(spec.get("cut", False))})
            elif kind == "corrupt_write":
                self.corrupt_writes += int(spec.get("count", 1))
            elif kind == "latency":
                self.latency = float(spec["seconds"])
            elif kind == "bandwidth":
                self.bandwidth = int(spec["bytes_per_second"])
            elif kind == "session_timeout":
                self.session_timeout = float(spec["seconds"])
            elif kind == "clear":
                self.__init__()
            else:
                raise ValueError("unknown fault kind %r" % kind)

    def state(self):
        with self.lock:
            return {"calls": self.calls, "nbd_drops": self.nbd_drops,
                    "import_fails": self.import_fails, "corrupt_writes": self.corrupt_writes, "latency": self.latency,
                    "bandwidth": self.bandwidth, "session_timeout": self.session_timeout,
                    "sessions_expired": self.sessions_expired}

    def on_call(self, method):
        """Raise the injected error if this call of ``method`` is the one chosen to fail."""
        with self.lock:
            for entry in self.calls.get(method, []):
                entry[0] -= 1
                if entry[0] <= 0 and entry[1] > 0:
                    entry[1] -= 1
                    error = entry[2]
                    self.calls[method] = [e for e in self.calls[method] if e[1] > 0]
                    raise XapiError(error[0], *error[1:])

    def delay(self):
        if self.latency:
            time.sleep(self.latency)

    def take_nbd_drop(self):
        """Bytes after which to cut the next NBD connection, or None."""
        with self.lock:
            if not self.nbd_drops:
                return None
            entry = self.nbd_drops[0]
            entry[1] -= 1
            if entry[1] <= 0:
                self.nbd_drops.pop(0)
            return entry[0]

    def take_import_fail(self):
        with self.lock:
            return self.import_fails.pop(0) if self.import_fails else None

    def take_corrupt_write(self):
        with self.lock:
            if self.corrupt_writes <= 0:
                return False
            self.corrupt_writes -= 1
            return True


class Throttle(Cap):
    """A token bucket shared by the streams of one pool, for the ``bandwidth`` fault (its
    rate is read at each use: the fault may be set or cleared while streams run)."""

    def __init__(self, faults):
        super(Throttle, self).__init__(0)
        self.faults = faults

    def current_rate(self):
        return self.faults.bandwidth

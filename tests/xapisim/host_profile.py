"""What a real host charges that a simulated one need not: ``xapisim up --host-profile real``.

Off by default (``instant``), so that tests stay fast. The figures of ``real`` are estimates
(docs/xapisim.md "Host profiles" says where each comes from); ``--host-cost NAME=VALUE``
overrides one, for benchmarks that need, say, a per-connection cap low enough that this
machine carries several streams at once.

- ``api_latency_s``: every API call (a LAN round trip through stunnel to xapi and its
  database), paid before the call takes the pool's lock, as calls on a real pool run side by
  side.
- ``attach_s``: one dom0 attach (VBD.create + VBD.plug, SM attach/activate): paid by each
  ``/import_raw_vdi`` and ``/export_raw_vdi`` request (twice with ``base=``) and by each NBD
  connection before its first byte.
- ``vdi_snapshot_s``, ``vm_snapshot_s``, ``sr_scan_s``: those calls' own work.
- ``https_bytes_per_s``: one HTTPS connection's data rate (stunnel); ``nbd_bytes_per_s``: one
  NBD connection's (xapi-nbd copies 512 KiB at a time, one request at a time).
"""

import collections
import threading
import time

PROFILES = {
    "instant": {"api_latency_s": 0.0, "attach_s": 0.0, "vdi_snapshot_s": 0.0, "vm_snapshot_s": 0.0,
                "sr_scan_s": 0.0, "https_bytes_per_s": 0, "nbd_bytes_per_s": 0},
    "real": {"api_latency_s": 0.005, "attach_s": 0.5, "vdi_snapshot_s": 1.5, "vm_snapshot_s": 3.0,
             "sr_scan_s": 2.0, "https_bytes_per_s": 80 * 10 ** 6, "nbd_bytes_per_s": 100 * 10 ** 6},
}
CALL_COSTS = {"VDI.snapshot": "vdi_snapshot_s", "VM.snapshot": "vm_snapshot_s",
              "VM.checkpoint": "vm_snapshot_s", "SR.scan": "sr_scan_s"}


def parse(name, overrides=()):
    """The costs of profile ``name`` with ``NAME=VALUE`` overrides."""
    if name not in PROFILES:
        raise ValueError("unknown host profile %r (choose %s)" % (name, ", ".join(sorted(PROFILES))))
    costs = dict(PROFILES[name])
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in costs:
            raise ValueError("--host-cost %r: give NAME=VALUE with NAME one of %s" % (item, ", ".join(sorted(costs))))
        costs[key] = type(PROFILES["real"][key])(float(value))
    return costs


class HostProfile:
    def __init__(self, costs=None):
        self.costs = dict(costs or PROFILES["instant"])
        # what was charged, for benchmarks that compare a run with the profile's model
        # (GET /xapisim/host-costs): counts per kind of attach and per costed call
        self.paid = collections.Counter()
        self.paid_lock = threading.Lock()

    def _charge(self, kind, count=1):
        with self.paid_lock:
            self.paid[kind] += count

    def call(self, method):
        """Charge an API call; returns the seconds it takes on a real host, which the
        dispatcher makes it last (outside the pool's lock) counting the simulator's own work:
        a real VDI.snapshot takes its 1.5 s whether or not the simulator copies a file."""
        name = method[len("Async."):] if method.startswith("Async.") else method
        self._charge("calls")
        if name in CALL_COSTS:
            self._charge(name)
        return self.costs["api_latency_s"] + self.costs.get(CALL_COSTS.get(name, ""), 0.0)

    def attach(self, kind, count=1):
        """One dom0 attach (``kind``: import, export or nbd) before the request's first byte."""
        self._charge("attach_" + kind, count)
        if self.costs["attach_s"]:
            time.sleep(self.costs["attach_s"] * count)

    def charged(self):
        with self.paid_lock:
            return dict(self.paid)

    def https_cap(self):
        return Cap(self.costs["https_bytes_per_s"])

    def nbd_cap(self):
        return Cap(self.costs["nbd_bytes_per_s"])

    @property
    def shapes_nbd(self):
        return bool(self.costs["attach_s"] or self.costs["nbd_bytes_per_s"])


class Cap:
    """One connection's rate (a token bucket; 0 = unlimited)."""

    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def current_rate(self):
        return self.rate

    def consume(self, nbytes):
        rate = self.current_rate()
        if not rate:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + nbytes / rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)

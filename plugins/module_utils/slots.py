# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Concurrency caps that hold across forks, playbooks and controllers: the pools hold the slots.

A *place* is an object with a cap: the source pool (the evacuation's concurrency), the source
host that serves a VM's disks over NBD (XAPI's NBD server takes 16 connections per host), a
destination SR. Slot *i* of a place is a lock of lock.py in that object's ``other_config``
(``sxm:lock:slot:<kind>:<i>``, with its ``sxm:beat:`` heartbeats), so it has the same
guarantees: taken with an atomic add, beaten while held, freed at release, and taken over
``timeout`` seconds after a dead holder's last beat. A job takes a slot of every place it
touches before data moves, all or none (it never waits while holding some, so two jobs cannot
hold each other's), and releases them when its data step ends.

Waiting jobs keep their order: in an evacuation, each waits with a queue key
``sxm:queue:<evacuation>:<rank>:<job>`` in the source pool's ``other_config`` (value: the pool
time it last wrote it and which place it waits for). A job does not take a concurrency slot
while a job of a lower rank waits for one; a job that waits for its host or SR does not hold
the others back. A queue key older than ``timeout`` is a dead waiter's and is ignored.

An evacuation is paused or drained by a key ``sxm:evacuation:<name>`` in the source pool's
``other_config`` (``paused`` or ``draining``): paused, no job takes a slot until the key goes;
draining, a job that has not started its data step gives up (Drained) and the others finish.

Plain Python: no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import random
import time

from ansible_collections.xapi.sxm.plugins.module_utils import lock as locking
from ansible_collections.xapi.sxm.plugins.module_utils.errors import Drained, LockHeld, XapiFailure

SLOT_TIMEOUT = 120
POLL_S = 3.0
QUEUE_PREFIX = "sxm:queue:"
CONTROL_PREFIX = "sxm:evacuation:"
CONTROL_STATES = ("running", "paused", "draining")
KINDS = ("concurrency", "host", "sr")


def slot_job(kind, index):
    return "slot:%s:%d" % (kind, index)


def control_key(evacuation):
    return CONTROL_PREFIX + evacuation


def queue_key(evacuation, rank, job):
    return "%s%s:%06d:%s" % (QUEUE_PREFIX, evacuation, rank, job)


def parse_queue_key(key):
    """``(evacuation, rank, job)`` of a queue key, or None."""
    if not key.startswith(QUEUE_PREFIX):
        return None
    parts = key[len(QUEUE_PREFIX):].rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


def slot_keys(other_config):
    """Every key of slots, queues and evacuation controls in ``other_config``: leftovers when
    no evacuation runs."""
    locks = set(locking.lock_keys(other_config))
    return sorted(k for k in other_config
                  if k.startswith((QUEUE_PREFIX, CONTROL_PREFIX)) or (k in locks and ":slot:" in k))


def pool_now(conn):
    """The pool's time (epoch seconds), from its master: movers' clocks may be skewed."""
    pool = conn.call("pool.get_all")[0]
    return locking.parse_time(conn.call("host.get_servertime", conn.call("pool.get_master", pool))) or time.time()


def control_state(conn, evacuation):
    """``running``, ``paused`` or ``draining``: the evacuation's control key on the source."""
    if not evacuation:
        return "running"
    config = conn.call("pool.get_other_config", conn.call("pool.get_all")[0])
    value = config.get(control_key(evacuation), "running")
    return value if value in CONTROL_STATES else "running"


def set_control_state(conn, evacuation, state):
    """Pause, drain or resume an evacuation. Returns the previous state."""
    pool = conn.call("pool.get_all")[0]
    before = control_state(conn, evacuation)
    conn.call("pool.remove_from_other_config", pool, control_key(evacuation))
    if state != "running":
        conn.call("pool.add_to_other_config", pool, control_key(evacuation), state)
    return before


class Place:
    """One capped object: ``kind`` (concurrency, host, sr), the connection of its pool, its
    class and ref, a label for messages, the cap."""

    def __init__(self, conn, kind, obj_class, ref, label, cap):
        self.conn, self.kind, self.obj_class, self.ref = conn, kind, obj_class, ref
        self.label, self.cap = label, int(cap)

    def free_indexes(self, timeout):
        """Slot indexes worth trying: free, or held by a holder silent for ``timeout`` s."""
        config = self.conn.call("%s.get_other_config" % self.obj_class, self.ref)
        now = None
        out = []
        for index in range(self.cap):
            job = slot_job(self.kind, index)
            value = config.get(locking.lock_key(job))
            if value is None:
                out.append(index)
                continue
            claim = locking.decode_claim(value)
            if claim is None:
                continue
            now = now if now is not None else pool_now(self.conn)
            last = locking.newest_beat(config, job, claim["holder"]) or claim["since_epoch"] or 0
            if now - last >= timeout:
                out.append(index)
        return out


class Queue:
    """This job's place in its evacuation's queue (see the module doc)."""

    def __init__(self, conn, evacuation, rank, job, timeout):
        self.conn, self.evacuation, self.rank, self.job = conn, evacuation, int(rank), job
        self.timeout = timeout
        self.key = queue_key(evacuation, rank, job)
        self.written = None         # (pool time, blocked kind) of our key, once written
        self._pool = conn.call("pool.get_all")[0]

    def wait_for(self, kind, now):
        """Write our key (again when what we wait for changed, or before it would look
        stale)."""
        if self.written and self.written[1] == kind and now - self.written[0] < self.timeout / 3.0:
            return
        self.leave()
        self.conn.call("pool.add_to_other_config", self._pool, self.key,
                       json.dumps({"since": locking.format_time(now), "waits_for": kind}, sort_keys=True))
        self.written = (now, kind)

    def ahead(self, now):
        """The jobs of lower rank that wait for a concurrency slot, alive. The keys of dead
        waiters (not rewritten for twice the timeout; a live one rewrites its own every
        timeout/3) are removed on the way: they would be leftovers."""
        config = self.conn.call("pool.get_other_config", self._pool)
        out = []
        for key, value in config.items():
            parsed = parse_queue_key(key)
            if not parsed or parsed[0] != self.evacuation or key == self.key:
                continue
            try:
                entry = json.loads(value)
            except ValueError:
                entry = {}
            since = locking.parse_time(entry.get("since"))
            if since is None or now - since >= 2 * self.timeout:
                self.conn.call("pool.remove_from_other_config", self._pool, key)
                continue
            if (parsed[1], parsed[2]) < (self.rank, self.job) and entry.get("waits_for") == "concurrency" \
                    and now - since < self.timeout:
                out.append(parsed[2])
        return out

    def leave(self):
        if self.written is not None:
            self.conn.call("pool.remove_from_other_config", self._pool, self.key)
            self.written = None


class Slots:
    """The slots of one job's data step: ``with Slots(places, holder, ...).acquire():``.

    ``on_wait(text)`` is told why the job waits; ``cancel`` (cancel.Cancel) is checked while it
    waits; ``on_lost(reason)`` is called if a slot is taken from us (our beats failed for
    ``timeout`` s). ``drainable``: the job has not started yet, so a draining evacuation stops
    it (Drained). ``waited_s`` says how long it waited."""

    def __init__(self, places, holder, timeout=SLOT_TIMEOUT, evacuation=None, rank=0, job="",
                 cancel=None, on_wait=None, on_lost=None, drainable=False, poll=POLL_S,
                 sleep=time.sleep, clock=time.monotonic):
        self.places = [p for p in places if p.cap > 0]
        self.holder, self.timeout = holder, timeout
        self.evacuation, self.rank, self.job = evacuation, rank, job
        self.cancel, self.on_wait, self.on_lost = cancel, on_wait, on_lost
        self.drainable, self.poll = drainable, poll
        self.sleep, self.clock = sleep, clock
        self.held = []
        self.waited_s = 0.0
        self.taken_at = None
        self.queue = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def acquire(self):
        if not self.places:
            return self
        source = self.places[0].conn
        if self.evacuation:
            self.queue = Queue(source, self.evacuation, self.rank, self.job, self.timeout)
        started = self.clock()
        try:
            while True:
                if self.cancel is not None:
                    self.cancel.check()
                state = control_state(source, self.evacuation)
                if state == "draining" and self.drainable:
                    raise Drained("the evacuation %s is draining: this VM was not started" % self.evacuation)
                if state == "paused":
                    self._wait("the evacuation %s is paused" % self.evacuation, "paused",
                               pool_now(source) if self.queue is not None else None)
                    continue
                # the source pool's time, read once per round: the queue compares against it
                now = pool_now(source) if self.queue is not None else None
                blocked = self._try_all(now)
                if blocked is None:
                    self.waited_s = round(self.clock() - started, 1)
                    self.taken_at = time.time()
                    return self
                self._wait(blocked[1], blocked[0].kind, now)
        except BaseException:
            self.release()          # a failed call between two takes must not leave one beating
            raise
        finally:
            if self.queue is not None:
                try:
                    self.queue.leave()
                except XapiFailure:
                    pass        # a dead waiter's key: ignored once older than the timeout

    def _wait(self, why, kind, now):
        if self.queue is not None:
            self.queue.wait_for(kind, now)
        if self.on_wait is not None:
            self.on_wait("waiting: %s" % why)
        self.sleep(self.poll * (0.75 + random.random() / 2))

    def _try_all(self, now):
        """Take one slot of every place, or none: None when all are ours, else (the place
        that is full, why). ``now``: the source pool's time, for the queue."""
        if self.queue is not None:
            ahead = self.queue.ahead(now)
            if ahead:
                return self.places[0], "%d job(s) of the evacuation come first" % len(ahead)
        for place in self.places:
            taken = self._take(place)
            if taken is None:
                self.release()
                return place, "every slot of %s (%d) is taken" % (place.label, place.cap)
            self.held.append(taken)
        return None

    def _take(self, place):
        for index in place.free_indexes(self.timeout):
            slot = locking.JobLock(place.conn, slot_job(place.kind, index), self.holder, timeout=self.timeout,
                                   on_lost=self._lost, target=(place.obj_class, place.ref))
            try:
                return slot.acquire()
            except LockHeld:
                continue        # another job took it between our read and our add
        return None

    def _lost(self, reason):
        if self.on_lost is not None:
            self.on_lost("a slot was taken from this job: %s" % reason)

    def summary(self):
        """What a result says of the slots: how long the job waited, when it got them."""
        return {"waited_s": self.waited_s, "taken_at": self.taken_at,
                "places": [p.label for p in self.places]}

    def release(self):
        """Release every slot we hold (idempotent); a slot that cannot be reached now is freed
        by the timeout."""
        held, self.held = self.held, []
        for slot in held:
            slot.release()


# ---- the places of one job -------------------------------------------------------------------

def source_host(conn, vm_rec, sr_refs):
    """The host whose NBD server serves a VM's disks: the one host that sees all their SRs
    (local storage), else the host it runs on, else its affinity, else the master."""
    hosts = None
    for sr in set(sr_refs):
        pbds = conn.call("PBD.get_all_records_where", 'field "SR"="%s"' % sr)
        seen = {rec["host"] for rec in pbds.values() if rec.get("currently_attached")}
        hosts = seen if hosts is None else hosts & seen
    if hosts is not None and len(hosts) == 1:
        return next(iter(hosts))
    for field in ("resident_on", "affinity"):
        ref = vm_rec.get(field)
        if ref and ref != "OpaqueRef:NULL" and (hosts is None or ref in hosts):
            return ref
    return conn.call("pool.get_master", conn.call("pool.get_all")[0])


def places_of(src, dst, the_plan, caps):
    """The capped places of a job's data step, in the order they are taken: the source pool,
    the source host, each destination SR (sorted)."""
    places = []
    if caps.get("concurrency"):
        pool = src.call("pool.get_all")[0]
        places.append(Place(src, "concurrency", "pool", pool, "the evacuation's concurrency", caps["concurrency"]))
    if caps.get("per_host"):
        source_srs = [src.call("SR.get_by_uuid", d["source_sr"]) for d in the_plan["disks"]]
        host = source_host(src, the_plan["vm"], source_srs)
        places.append(Place(src, "host", "host", host, "source host %s" % src.call("host.get_name_label", host),
                            caps["per_host"]))
    if caps.get("per_sr"):
        srs = {d["destination_sr_ref"] for d in the_plan["disks"] + the_plan.get("memory_images", [])}
        for sr in sorted(srs):
            places.append(Place(dst, "sr", "SR", sr, "destination SR %s" % dst.call("SR.get_name_label", sr),
                                caps["per_sr"]))
    return places

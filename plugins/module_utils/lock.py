# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One job at a time per source VM, across processes, playbooks and controllers: a lock kept in
the destination pool's ``other_config``, the one place every mover of that pool can see.

Protocol
--------
XAPI has no compare-and-swap. Its only atomic primitive is ``pool.add_to_other_config``, which
fails with MAP_DUPLICATE_KEY when the key exists; changing a value is remove-then-add, two calls
that another client can interleave. So no key is ever updated in place:

``sxm:lock:<job>``
    The lock. Value (JSON): ``{"holder": <holder id>, "since": <pool time taken>,
    "description": <who>}``; the holder id is a uuid4 hex of the JobLock object. Written once,
    by an add, and removed only by its holder or by the taker of a stale lock.
``sxm:beat:<job>:<holder id>:<seq>``
    A heartbeat of that holder. Value: the pool time of the beat (``20261201T20:55:01Z``). A
    beat adds the key of the next seq first and only then removes the previous one, so a reader
    always sees at least one beat key of a live holder.
``sxm:takeover:<job>``
    Present while a run takes a stale lock over. Value: like the lock's. Its add is what makes
    one taker win among several.

Times are the pool's clock (``host.get_servertime`` on the pool master), never the local one:
movers on different machines have skewed clocks and each compares the others' beats against it.

acquire
    Add the lock key. If it exists, its holder is alive when its newest beat (or, without a beat
    key, the lock's ``since``) is younger than ``timeout`` seconds: LockHeld. Otherwise take
    over: add the takeover key (a loser gets LockHeld; a takeover key older than ``timeout`` is
    a dead taker's, removed and retried once), re-read the lock key and check it still names
    the stale holder and that holder is still stale, remove it, add ours (if that add fails,
    someone took the lock legitimately meanwhile: LockHeld), remove the stale holder's beat
    keys and the takeover key.
beats
    A daemon thread beats every ``timeout / 6`` seconds (at least 1 s, at most 20 s apart) and
    first checks that the lock key still names us; when it does not, it calls ``on_lost(reason)``
    once and stops beating. Failed calls are retried at the next beat; the thread never raises.
release
    Stop the thread, remove our beat keys, and the lock key only if it still names us.

Races
-----
Every step is an add, which is atomic, or a read followed by a remove, which is not. The known
race: a takeover key was stale, two takers both removed it and both passed the takeover step,
and both go on. The final add of the lock key is atomic, so at most one lock key exists; a taker
may, however, have removed the key the other just added, and each then holds the lock in its own
belief until its next beat, when the one the lock key does not name learns it (``on_lost``)
and stops. The same holds when a holder that was stale but alive releases at the moment it is
taken over. In every case: two runs believe they hold the lock for at most one beat interval.

Time bounds (``timeout`` T, beat interval I = min(20, max(1, T / 6)), pool time in whole seconds)
------------------------------------------------------------------------------------------------
* A live holder that reaches its pool beats every I s, so its newest beat is at most I s (plus
  the call's time) old; it can be taken over only after it could not beat for T s, i.e. after
  missing about T / I - 1 beats (5 at T = 120).
* A dead holder's lock can be taken over T s after its last beat, so at most T s (+1 s of
  clock resolution) after its death.
* A holder whose lock was taken over learns it within I s of the takeover (if it reaches the
  pool), calls ``on_lost`` and stops beating.

Plain Python: no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import json
import re
import threading
import time
import uuid

from ansible_collections.xapi.sxm.plugins.module_utils.errors import InputError, LockHeld, XapiFailure

LOCK_PREFIX = "sxm:lock:"
BEAT_PREFIX = "sxm:beat:"
TAKEOVER_PREFIX = "sxm:takeover:"
DUPLICATE = "MAP_DUPLICATE_KEY"
MIN_TIMEOUT = 3         # below it the 1 s beat floor leaves no missed beat before a takeover
TIME_FORMAT = "%Y%m%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2}):(\d{2}):(\d{2})")


# ---- keys and values --------------------------------------------------------------------------

def lock_key(job):
    return LOCK_PREFIX + job


def takeover_key(job):
    return TAKEOVER_PREFIX + job


def beat_key(job, holder, seq):
    return "%s%s:%s:%d" % (BEAT_PREFIX, job, holder, seq)


def parse_beat_key(key):
    """``(job, holder id, seq)`` of a beat key, or None. The job is split off from the right:
    holder ids and seqs never hold a colon, a job name might."""
    if not key.startswith(BEAT_PREFIX):
        return None
    parts = key[len(BEAT_PREFIX):].rsplit(":", 2)
    if len(parts) != 3 or not parts[2].isdigit() or not parts[1]:
        return None
    return parts[0], parts[1], int(parts[2])


def lock_keys(other_config, job=None):
    """The sxm lock, beat and takeover keys present in ``other_config`` (of ``job`` only, when
    given), sorted: for leftover checks and cleanup."""
    found = []
    for key in other_config:
        if key.startswith(BEAT_PREFIX):
            parsed = parse_beat_key(key)
            if parsed and (job is None or parsed[0] == job):
                found.append(key)
        elif key.startswith((LOCK_PREFIX, TAKEOVER_PREFIX)):
            if job is None or key in (lock_key(job), takeover_key(job)):
                found.append(key)
    return sorted(found)


def format_time(epoch):
    return time.strftime(TIME_FORMAT, time.gmtime(epoch))


def parse_time(value):
    """Seconds since the epoch of a XAPI time (an XML-RPC DateTime or its text, UTC), or None."""
    match = _TIME_RE.match(str(getattr(value, "value", value) or ""))
    if not match:
        return None
    return calendar.timegm(tuple(int(g) for g in match.groups()) + (0, 0, 0))


def encode_claim(holder, since, description):
    """The value of a lock or takeover key."""
    return json.dumps({"holder": holder, "since": since, "description": description}, sort_keys=True)


def decode_claim(value):
    """The dict of a lock or takeover key's value, or None when it is not one of ours."""
    try:
        claim = json.loads(value)
    except (TypeError, ValueError):
        return None
    if not isinstance(claim, dict) or not isinstance(claim.get("holder"), str):
        return None
    claim.setdefault("description", "an unnamed run")
    claim["since_epoch"] = parse_time(claim.get("since"))
    return claim


def newest_beat(other_config, job, holder):
    """Pool time (epoch) of ``holder``'s newest beat of ``job``, or None if it has none."""
    times = [parse_time(value) for key, value in other_config.items()
             if (parse_beat_key(key) or (None, None))[:2] == (job, holder)]
    times = [t for t in times if t is not None]
    return max(times) if times else None


def beat_interval(timeout):
    return min(20.0, max(1.0, timeout / 6.0))


# ---- the lock -----------------------------------------------------------------------------------

class JobLock:
    """The lock of one job (the source VM uuid) on the destination pool; see the module doc.

    ``with JobLock(conn, vm_uuid, "vdi_mirror on host mover1 pid 1234") as lock:`` ...
    ``taken_over_from`` is the description of the stale holder we took the lock from (or None);
    ``lost`` the reason once the lock was taken from us (``on_lost`` is then called once)."""

    def __init__(self, conn, job, holder, timeout=120, on_lost=None, target=None):
        if timeout < MIN_TIMEOUT:
            raise InputError("lock_timeout must be at least %d seconds (got %s)" % (MIN_TIMEOUT, timeout))
        self.conn = conn
        self.job = job
        self.description = holder
        self.holder_id = uuid.uuid4().hex
        self.timeout = timeout
        self.interval = beat_interval(timeout)
        self.on_lost = on_lost
        self.key = lock_key(job)
        # (class, ref) of the object whose other_config holds the keys: the pool by default,
        # a host or an SR for the slots of slots.py
        self.target_class, self._target = target or ("pool", None)
        self.taken_over_from = None
        self.lost = None
        self.acquired = False
        self._pool = None
        self._master = None
        self._seq = 0
        self._beat_keys = []        # ours that may exist: a failed add may still have reached the pool
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False

    # ---- pool access --------------------------------------------------------------------------
    def _pool_ref(self):
        if self._pool is None:
            self._pool = self.conn.call("pool.get_all")[0]
        return self._pool

    def _target_ref(self):
        if self._target is None:
            self._target = self._pool_ref()
        return self._target

    def _config(self):
        return self.conn.call("%s.get_other_config" % self.target_class, self._target_ref())

    def _add(self, key, value):
        self.conn.call("%s.add_to_other_config" % self.target_class, self._target_ref(), key, value)

    def _remove(self, key):
        # XAPI removes a missing key silently
        self.conn.call("%s.remove_from_other_config" % self.target_class, self._target_ref(), key)

    def _now(self):
        """The pool's time in epoch seconds. The master is asked again after a failure: it may
        have changed (HA, designate-new-master)."""
        try:
            if self._master is None:
                self._master = self.conn.call("pool.get_master", self._pool_ref())
            value = self.conn.call("host.get_servertime", self._master)
        except XapiFailure:
            self._master = None
            raise
        now = parse_time(value)
        if now is None:
            raise XapiFailure("pool %s gave an unreadable time %r" % (self.conn.url, value), "SXM_BAD_TIME")
        return now

    # ---- acquire ------------------------------------------------------------------------------
    def acquire(self):
        if self.acquired:
            return self
        self.taken_over_from = self.lost = None
        for _attempt in range(3):
            if self._try_add_lock():
                return self._start()
            config = self._config()
            value = config.get(self.key)
            if value is None:
                continue        # released between our add and our read: try again
            self._take_over(value, self._judge(value, config))
            return self._start()
        raise LockHeld("the lock of job %s on %s keeps changing hands: another run is starting on "
                       "it; wait for it and run again" % (self.job, self.conn.url))

    def _try_add_lock(self):
        now = self._now()
        try:
            self._add(self.key, encode_claim(self.holder_id, format_time(now), self.description))
            return True
        except XapiFailure as e:
            if e.code != DUPLICATE:
                raise
            return False

    def _judge(self, value, config):
        """The decoded claim of the lock's holder when it is stale; LockHeld when it is alive."""
        claim = decode_claim(value)
        if claim is None:
            raise LockHeld("the lock key %s of pool %s holds %r, which is not a lock of this collection: "
                           "if no run works on this job, remove the key (xe pool-param-remove "
                           "param-name=other-config param-key=%s) and run again"
                           % (self.key, self.conn.url, value, self.key))
        last = newest_beat(config, self.job, claim["holder"]) or claim["since_epoch"] or 0
        age = self._now() - last
        if age < self.timeout:
            raise LockHeld("job %s is locked on %s by %s since %s (pool time); it last beat %d s ago, less "
                           "than the lock timeout of %d s, so it is running: wait for it to finish (or stop "
                           "it), then run again" % (self.job, self.conn.url, claim["description"],
                                                    claim.get("since"), max(0, age), self.timeout))
        return claim

    def _take_over(self, value, stale):
        self._claim_takeover()
        try:
            config = self._config()
            current = config.get(self.key)
            if current is not None:
                if current != value:
                    raise LockHeld("the lock of job %s on %s changed hands while we were taking it over "
                                   "from %s: another run holds it now; wait for it and run again"
                                   % (self.job, self.conn.url, stale["description"]))
                self._judge(current, config)       # it may have come back meanwhile
                self._remove(self.key)
            if not self._try_add_lock():
                raise LockHeld("another run took the lock of job %s on %s while we were taking it over "
                               "from %s: wait for it and run again" % (self.job, self.conn.url,
                                                                       stale["description"]))
            self.taken_over_from = stale["description"]
            try:
                self._remove_beats(lambda holder: holder == stale["holder"])
            except XapiFailure:
                pass    # the lock is ours now: _start removes leftover beats again
        finally:
            self._drop_takeover()

    def _claim_takeover(self):
        """Add the takeover key: only one taker wins. A dead taker's key (older than the
        timeout) is removed and the add retried once."""
        key = takeover_key(self.job)
        for attempt in (1, 2):
            now = self._now()
            try:
                self._add(key, encode_claim(self.holder_id, format_time(now), self.description))
                return
            except XapiFailure as e:
                if e.code != DUPLICATE:
                    raise
            value = self._config().get(key)
            if value is None:
                continue        # that taker finished meanwhile
            claim = decode_claim(value) or {}
            if attempt == 1 and now - (claim.get("since_epoch") or 0) >= self.timeout:
                self._remove(key)       # a dead taker's
                continue
            raise LockHeld("another run (%s) is taking over the stale lock of job %s on %s since %s: wait "
                           "for it and run again" % (claim.get("description", "of unknown origin"), self.job,
                                                     self.conn.url, claim.get("since")))
        raise LockHeld("other runs are taking over the stale lock of job %s on %s: wait for them and "
                       "run again" % (self.job, self.conn.url))

    def _drop_takeover(self):
        # only ours: in the known race another taker's key may stand here
        key = takeover_key(self.job)
        try:
            claim = decode_claim(self._config().get(key))
            if claim and claim["holder"] == self.holder_id:
                self._remove(key)
        except XapiFailure:
            pass        # a dead taker's key: the next taker removes it after the timeout

    def _start(self):
        """We hold the lock: first beat now (so a beat key exists at once), forget the beat keys
        of other holders of this job (dead, or losers that learn from the lock key), and beat."""
        self.acquired = True
        if not self._beat_safely():
            return self         # taken from us at once: on_lost was called
        try:
            self._remove_beats(lambda holder: holder != self.holder_id)
        except XapiFailure:
            pass                # mere leftovers: the next holder removes them
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sxm-lock-%s" % self.job, daemon=True)
        self._thread.start()
        return self

    # ---- beats --------------------------------------------------------------------------------
    def _run(self):
        while not self._stop.wait(self.interval):
            if not self._beat_safely():
                return

    def _beat_safely(self):
        """One check and beat; False once the lock is lost. Never raises: the pool may be
        briefly unreachable, and the next beat tries again."""
        try:
            return self._beat_once()
        except Exception:  # noqa: BLE001 - a beat thread must never die of a transient failure
            return True

    def _beat_once(self):
        current = self._config().get(self.key)
        claim = decode_claim(current) if current is not None else None
        if claim is None or claim["holder"] != self.holder_id:
            self._lose(claim)
            return False
        self._seq += 1
        key = beat_key(self.job, self.holder_id, self._seq)
        self._beat_keys.append(key)
        self._add(key, format_time(self._now()))
        # the new beat is in: only now drop the older ones
        for old in self._beat_keys[:-1]:
            self._remove(old)
        self._beat_keys = [key]
        return True

    def _lose(self, claim):
        if self.lost is not None:
            return
        if claim is None:
            reason = "the lock key %s of job %s was removed from pool %s" % (self.key, self.job, self.conn.url)
        else:
            reason = ("the lock of job %s on pool %s was taken over by %s at %s (pool time)"
                      % (self.job, self.conn.url, claim["description"], claim.get("since")))
        self.lost = reason
        try:
            self._remove_beats(lambda holder: holder == self.holder_id)
        except Exception:  # noqa: BLE001 - leftovers of ours are removed by the next holder
            pass
        if self.on_lost is not None:
            try:
                self.on_lost(reason)
            except Exception:  # noqa: BLE001 - the callback's failure must not kill the thread
                pass

    def _remove_beats(self, which):
        for key in lock_keys(self._config(), self.job):
            parsed = parse_beat_key(key)
            if parsed and which(parsed[1]):
                self._remove(key)
        if which(self.holder_id):
            self._beat_keys = []

    # ---- release ------------------------------------------------------------------------------
    def _stop_thread(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def release(self):
        """Stop beating, remove our beat keys and our lock key. Idempotent. Returns False when
        the pool could not be reached: the lock then is taken over once ``timeout`` has passed."""
        self._stop_thread()
        if not self.acquired:
            return True
        try:
            for key in self._beat_keys:
                self._remove(key)
            self._remove_beats(lambda holder: holder == self.holder_id)
            claim = decode_claim(self._config().get(self.key))
            if claim and claim["holder"] == self.holder_id:
                self._remove(self.key)
        except XapiFailure:
            return False
        self.acquired = False
        return True

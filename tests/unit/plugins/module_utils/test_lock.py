"""The job lock in the destination pool's other_config, against a simulated pool: one holder at a
time, across connections and threads; a dead holder's lock is taken over after the timeout, a
live one's never; a holder whose lock was taken learns it at its next beat."""

import json
import threading
import time
import uuid

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import lock as lockmod
from ansible_collections.xapi.sxm.plugins.module_utils.errors import LockHeld
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection

DEST = 1
TIMEOUT = 3


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


class Pool:
    """Connections to the destination pool and the JobLocks of one test; ``cleanup`` stops every
    lock's thread and removes every sxm key of the test's jobs, whatever the test left."""

    def __init__(self, entry):
        self.entry = entry
        self.conns = []
        self.locks = []
        self.jobs = []
        self.conn = self.connect()
        self.ref = self.conn.call("pool.get_all")[0]

    def connect(self):
        conn = connection(self.entry)
        self.conns.append(conn)
        return conn

    def job(self):
        job = str(uuid.uuid4())
        self.jobs.append(job)
        return job

    def lock(self, job, holder, conn=None, **kwargs):
        lock = lockmod.JobLock(conn or self.conn, job, holder, **kwargs)
        self.locks.append(lock)
        return lock

    def config(self):
        return self.conn.call("pool.get_other_config", self.ref)

    def keys(self, job):
        return lockmod.lock_keys(self.config(), job)

    def add(self, key, value):
        self.conn.call("pool.add_to_other_config", self.ref, key, value)

    def remove(self, key):
        self.conn.call("pool.remove_from_other_config", self.ref, key)

    def beats(self, job, holder_id):
        """{seq: pool time} of a holder's beat keys."""
        found = {}
        for key, value in self.config().items():
            parsed = lockmod.parse_beat_key(key)
            if parsed and parsed[:2] == (job, holder_id):
                found[parsed[2]] = value
        return found

    def cleanup(self):
        for lock in self.locks:
            lock._stop_thread()
        for job in self.jobs:
            for key in self.keys(job):
                self.remove(key)
        for conn in self.conns:
            conn.logout()


@pytest.fixture
def dest(pools):
    pool = Pool(pools[DEST])
    yield pool
    pool.cleanup()


def kill(lock):
    """What a killed process leaves: its keys, and no thread beating."""
    lock._stop_thread()


def test_acquire_release_leaves_no_key(dest):
    job = dest.job()
    with dest.lock(job, "test holder", timeout=TIMEOUT) as held:
        keys = dest.keys(job)
        assert lockmod.lock_key(job) in keys
        claim = json.loads(dest.config()[lockmod.lock_key(job)])
        assert claim["holder"] == held.holder_id and claim["description"] == "test holder"
        assert lockmod.parse_time(claim["since"]) is not None
        assert len(dest.beats(job, held.holder_id)) >= 1, "no beat key right after acquire"
        assert held.taken_over_from is None
    assert dest.keys(job) == []
    assert held.release() is True   # idempotent
    assert lockmod.lock_keys(dest.config(), job) == []


def test_second_lock_on_the_same_job_is_refused(dest):
    job = dest.job()
    first = dest.lock(job, "vdi_mirror on host mover1 pid 1234", timeout=TIMEOUT).acquire()
    second = dest.lock(job, "vdi_mirror on host mover2 pid 99", conn=dest.connect(), timeout=TIMEOUT)
    with pytest.raises(LockHeld) as info:
        second.acquire()
    message = str(info.value)
    assert "vdi_mirror on host mover1 pid 1234" in message
    assert "last beat" in message and "wait for it" in message
    assert info.value.code == "SXM_LOCK_HELD"
    # the refused one changed nothing: the first still holds its lock
    assert json.loads(dest.config()[lockmod.lock_key(job)])["holder"] == first.holder_id
    first.release()
    # and once released, the job is free again
    with second:
        pass
    assert dest.keys(job) == []


def test_two_racing_acquirers_exactly_one_wins(dest):
    for _round in range(5):
        job = dest.job()
        barrier = threading.Barrier(2)
        outcome = {}

        def contend(name, lock, barrier, outcome):
            barrier.wait()
            try:
                lock.acquire()
                outcome[name] = "won"
            except LockHeld:
                outcome[name] = "refused"

        locks = {name: dest.lock(job, name, conn=dest.connect(), timeout=TIMEOUT) for name in ("a", "b")}
        threads = [threading.Thread(target=contend, args=(n, lk, barrier, outcome)) for n, lk in locks.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcome.values()) == ["refused", "won"], outcome
        winner = [n for n, o in outcome.items() if o == "won"][0]
        assert json.loads(dest.config()[lockmod.lock_key(job)])["holder"] == locks[winner].holder_id
        for lk in locks.values():
            lk.release()
        assert dest.keys(job) == []


def wait_for_takeover(lock, limit):
    """Acquire again and again until the stale lock is taken over; the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            lock.acquire()
            return time.monotonic() - started
        except LockHeld:
            if time.monotonic() - started > limit:
                raise
            time.sleep(0.3)


def test_a_dead_holder_is_taken_over_after_the_timeout(dest):
    job = dest.job()
    lost = []
    dead = dest.lock(job, "killed mover pid 1", timeout=TIMEOUT, on_lost=lost.append).acquire()
    kill(dead)
    killed_at = time.monotonic()
    taker = dest.lock(job, "new mover pid 2", conn=dest.connect(), timeout=TIMEOUT)
    with pytest.raises(LockHeld):
        taker.acquire()     # not yet: it beat less than the timeout ago
    waited = wait_for_takeover(taker, TIMEOUT + 5)
    # pool time has whole seconds: the last beat may look up to 1 s older or younger
    assert TIMEOUT - 1.5 <= time.monotonic() - killed_at <= TIMEOUT + 3, waited
    assert taker.taken_over_from == "killed mover pid 1"
    keys = dest.keys(job)
    assert lockmod.takeover_key(job) not in keys
    assert dest.beats(job, dead.holder_id) == {}, "the dead holder's beat keys were left"
    assert json.loads(dest.config()[lockmod.lock_key(job)])["holder"] == taker.holder_id
    # had the old holder only been frozen, its next beat tells it the lock is gone
    assert dead._beat_once() is False
    assert len(lost) == 1 and "taken over by new mover pid 2" in lost[0]
    assert dead.release() is True
    assert lockmod.lock_key(job) in dest.keys(job), "the loser removed the winner's lock"
    taker.release()
    assert dest.keys(job) == []


def test_a_live_holder_is_never_taken_over(dest):
    job = dest.job()
    holder = dest.lock(job, "live mover", timeout=TIMEOUT).acquire()
    other = dest.lock(job, "eager mover", conn=dest.connect(), timeout=TIMEOUT)
    deadline = time.monotonic() + 2 * TIMEOUT
    while time.monotonic() < deadline:
        with pytest.raises(LockHeld):
            other.acquire()
        time.sleep(0.5)
    assert holder.lost is None
    holder.release()


def test_two_takers_of_a_stale_lock_exactly_one_wins(dest):
    job = dest.job()
    # a holder that died long ago, by the pool's clock: no need to wait for the timeout
    dest.add(lockmod.lock_key(job), lockmod.encode_claim("0" * 32, "20000101T00:00:00Z", "long dead"))
    dest.add(lockmod.beat_key(job, "0" * 32, 7), "20000101T00:00:01Z")
    barrier = threading.Barrier(2)
    outcome = {}

    def contend(name, lock):
        barrier.wait()
        try:
            lock.acquire()
            outcome[name] = lock.taken_over_from
        except LockHeld:
            outcome[name] = "refused"

    locks = {name: dest.lock(job, name, conn=dest.connect(), timeout=TIMEOUT) for name in ("a", "b")}
    threads = [threading.Thread(target=contend, args=(n, lk)) for n, lk in locks.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcome.values()) == ["long dead", "refused"], outcome
    assert dest.beats(job, "0" * 32) == {}
    assert lockmod.takeover_key(job) not in dest.keys(job)
    for lk in locks.values():
        lk.release()
    assert dest.keys(job) == []


def test_takeover_keys_fresh_refuse_stale_are_replaced(dest):
    job = dest.job()
    dest.add(lockmod.lock_key(job), lockmod.encode_claim("1" * 32, "20000101T00:00:00Z", "long dead"))
    dest.add(lockmod.takeover_key(job), lockmod.encode_claim("2" * 32, lockmod.format_time(time.time()),
                                                             "busy taker"))
    taker = dest.lock(job, "me", timeout=TIMEOUT)
    with pytest.raises(LockHeld) as info:
        taker.acquire()
    assert "busy taker" in str(info.value)
    assert json.loads(dest.config()[lockmod.lock_key(job)])["holder"] == "1" * 32, "the lock was touched"
    # a taker that died mid-way left its takeover key long ago: removed, and the takeover goes on
    dest.remove(lockmod.takeover_key(job))
    dest.add(lockmod.takeover_key(job), lockmod.encode_claim("2" * 32, "20000101T00:00:05Z", "dead taker"))
    taker.acquire()
    assert taker.taken_over_from == "long dead"
    ours = {lockmod.beat_key(job, taker.holder_id, seq) for seq in dest.beats(job, taker.holder_id)}
    assert ours and set(dest.keys(job)) == {lockmod.lock_key(job)} | ours, "the takeover key was left"
    taker.release()
    assert dest.keys(job) == []


def test_on_lost_is_called_once_when_the_lock_is_replaced(dest):
    job = dest.job()
    lost = []
    holder = dest.lock(job, "live mover", timeout=TIMEOUT, on_lost=lost.append).acquire()
    assert holder.interval == 1.0
    dest.remove(lockmod.lock_key(job))
    dest.add(lockmod.lock_key(job), lockmod.encode_claim("3" * 32, lockmod.format_time(time.time()),
                                                         "hand-made holder"))
    deadline = time.monotonic() + holder.interval + 2
    while not lost and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(lost) == 1 and "hand-made holder" in lost[0], lost
    assert holder.lost == lost[0]
    time.sleep(holder.interval * 2.5)
    assert len(lost) == 1, "on_lost was called again"
    assert dest.beats(job, holder.holder_id) == {}, "the loser kept beating"
    holder.release()
    assert json.loads(dest.config()[lockmod.lock_key(job)])["holder"] == "3" * 32, "release removed a foreign lock"


def test_on_lost_when_the_lock_key_is_removed(dest):
    job = dest.job()
    lost = []
    holder = dest.lock(job, "live mover", timeout=TIMEOUT, on_lost=lost.append).acquire()
    dest.remove(lockmod.lock_key(job))
    deadline = time.monotonic() + holder.interval + 2
    while not lost and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(lost) == 1 and "was removed" in lost[0], lost
    holder.release()
    assert dest.keys(job) == []


def test_beats_advance(dest):
    job = dest.job()
    holder = dest.lock(job, "beating mover", timeout=TIMEOUT).acquire()
    first = dest.beats(job, holder.holder_id)
    time.sleep(holder.interval * 3.5)
    second = dest.beats(job, holder.holder_id)
    assert first and second
    assert len(second) <= 2, "old beat keys are not removed"
    assert max(second) >= max(first) + 2, (first, second)
    assert lockmod.parse_time(second[max(second)]) > lockmod.parse_time(first[max(first)])
    assert min(first) not in second, "the first beat key was not replaced"
    holder.release()
    assert dest.keys(job) == []


def test_interval_bounds_and_minimum_timeout():
    assert lockmod.beat_interval(3) == 1.0
    assert lockmod.beat_interval(60) == 10.0
    assert lockmod.beat_interval(120) == 20.0
    assert lockmod.beat_interval(3600) == 20.0
    with pytest.raises(Exception) as info:
        lockmod.JobLock(None, "job", "me", timeout=1)
    assert info.value.code == "SXM_INVALID_INPUT"


def test_lock_keys_and_times():
    config = {
        "sxm:lock:a": "x", "sxm:takeover:a": "x", "sxm:beat:a:%s:3" % ("f" * 32): "x",
        "sxm:lock:b": "x", "sxm:beat:b:%s:1" % ("e" * 32): "x", "sxm:beat:a:b:%s:1" % ("e" * 32): "x",
        "other": "x", "sxm:unrelated": "x",
    }
    assert lockmod.lock_keys(config, "a") == sorted(["sxm:lock:a", "sxm:takeover:a", "sxm:beat:a:%s:3" % ("f" * 32)])
    assert len(lockmod.lock_keys(config)) == 6
    assert lockmod.parse_time("20261201T20:55:01Z") == lockmod.parse_time("20261201T20:55:00Z") + 1
    assert lockmod.format_time(lockmod.parse_time("20261201T20:55:01Z")) == "20261201T20:55:01Z"
    assert lockmod.parse_time("garbage") is None

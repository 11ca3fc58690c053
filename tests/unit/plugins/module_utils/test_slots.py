"""The slots of slots.py against a simulated pool: a cap is never exceeded, across connections and
threads; a job takes every slot it needs or none; a dead holder's slot is free after the timeout;
waiting jobs keep the evacuation's order; paused and draining evacuations; nothing left behind."""

import threading
import time
import uuid

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import lock as lockmod, slots as slotmod
from ansible_collections.xapi.sxm.plugins.module_utils.errors import Drained
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection

TIMEOUT = 3


@pytest.fixture
def conns(pools):
    made = []

    def connect():
        conn = Connection(pools[0]["url"], pools[0]["username"], pools[0]["password"],
                          ca_path=pools[0]["ca_file"]).login()
        made.append(conn)
        return conn
    yield connect
    conn = connect()
    for cls in ("pool", "host"):
        for ref in conn.call("%s.get_all" % cls):
            for key in slotmod.slot_keys(conn.call("%s.get_other_config" % cls, ref)):
                conn.call("%s.remove_from_other_config" % cls, ref, key)
    for c in made:
        c.logout()


def host_place(conn, cap, kind="host"):
    host = conn.call("host.get_all")[0]
    return slotmod.Place(conn, kind, "host", host, "the test host", cap)


def pool_place(conn, cap):
    return slotmod.Place(conn, "concurrency", "pool", conn.call("pool.get_all")[0], "the test pool", cap)


def left(conn):
    found = []
    for cls in ("pool", "host"):
        for ref in conn.call("%s.get_all" % cls):
            found += slotmod.slot_keys(conn.call("%s.get_other_config" % cls, ref))
    return found


def test_a_cap_of_two_is_never_exceeded_by_five_jobs(conns):
    holding, most, lock = [0], [0], threading.Lock()

    def job(index):
        conn = conns()
        with slotmod.Slots([host_place(conn, 2)], "job %d" % index, timeout=TIMEOUT, poll=0.2).acquire():
            with lock:
                holding[0] += 1
                most[0] = max(most[0], holding[0])
            time.sleep(0.5)
            with lock:
                holding[0] -= 1
    threads = [threading.Thread(target=job, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 2
    assert left(conns()) == []


def test_all_or_nothing_a_job_waiting_for_one_place_holds_no_other(conns):
    conn = conns()
    host_full = slotmod.Slots([host_place(conn, 1)], "the holder", timeout=TIMEOUT).acquire()
    waits = []
    both = slotmod.Slots([pool_place(conn, 1), host_place(conn, 1)], "the waiter", timeout=TIMEOUT, poll=0.2,
                         on_wait=waits.append)
    waiter = threading.Thread(target=both.acquire)
    waiter.start()
    time.sleep(1.0)
    # while it waits for the host, the pool's slot is free for others
    other = slotmod.Slots([pool_place(conns(), 1)], "another", timeout=TIMEOUT, poll=0.2).acquire()
    other.release()
    assert any("every slot of the test host (1) is taken" in w for w in waits)
    host_full.release()
    waiter.join(10)
    assert len(both.held) == 2 and both.waited_s >= 1.0
    both.release()
    assert left(conn) == []


def test_a_dead_holders_slot_is_free_after_the_timeout(conns):
    conn = conns()
    place = host_place(conn, 1)
    dead = lockmod.JobLock(conn, slotmod.slot_job("host", 0), "a killed mover", timeout=TIMEOUT,
                           target=("host", place.ref)).acquire()
    dead._stop_thread()          # it stops beating, as a killed process does
    started = time.monotonic()
    taken = slotmod.Slots([place], "the next job", timeout=TIMEOUT, poll=0.2).acquire()
    assert TIMEOUT - 1.5 <= time.monotonic() - started <= TIMEOUT + 4
    taken.release()
    assert left(conn) == []


def test_waiting_jobs_keep_the_evacuations_order(conns):
    conn = conns()
    name = "order-" + uuid.uuid4().hex[:6]
    holder = slotmod.Slots([pool_place(conn, 1)], "the first", timeout=TIMEOUT, evacuation=name, rank=0,
                           job="j0").acquire()
    order = []

    def job(rank, delay):
        time.sleep(delay)
        c = conns()
        with slotmod.Slots([pool_place(c, 1)], "rank %d" % rank, timeout=TIMEOUT, evacuation=name, rank=rank,
                           job="j%d" % rank, poll=0.2).acquire():
            order.append(rank)
            time.sleep(0.3)
    # the later rank starts waiting first; the lower rank still goes first
    threads = [threading.Thread(target=job, args=(2, 0.0)), threading.Thread(target=job, args=(1, 0.6))]
    for t in threads:
        t.start()
    time.sleep(1.5)
    holder.release()
    for t in threads:
        t.join(20)
    assert order == [1, 2]
    assert left(conn) == []


def test_paused_waits_and_draining_stops_jobs_that_had_not_started(conns):
    conn = conns()
    name = "ctl-" + uuid.uuid4().hex[:6]
    assert slotmod.set_control_state(conn, name, "paused") == "running"
    waits, got = [], []
    job = slotmod.Slots([pool_place(conns(), 2)], "paused job", timeout=TIMEOUT, evacuation=name, poll=0.2,
                        on_wait=waits.append)
    runner = threading.Thread(target=lambda: got.append(job.acquire()))
    runner.start()
    time.sleep(1.0)
    assert not got and any("is paused" in w for w in waits)
    slotmod.set_control_state(conn, name, "running")
    runner.join(10)
    assert got and job.held
    job.release()
    slotmod.set_control_state(conn, name, "draining")
    with pytest.raises(Drained):
        slotmod.Slots([pool_place(conn, 2)], "not started", timeout=TIMEOUT, evacuation=name,
                      drainable=True).acquire()
    # a job that already moved data (its verification) is not drained
    finishing = slotmod.Slots([pool_place(conn, 2)], "started", timeout=TIMEOUT, evacuation=name).acquire()
    finishing.release()
    assert slotmod.control_state(conn, name) == "draining"
    slotmod.set_control_state(conn, name, "running")
    assert left(conn) == []


def test_a_dead_waiters_queue_key_is_removed_by_the_next_waiter(conns):
    conn = conns()
    name = "dead-" + uuid.uuid4().hex[:6]
    pool = conn.call("pool.get_all")[0]
    old = lockmod.format_time(slotmod.pool_now(conn) - 3 * TIMEOUT)
    conn.call("pool.add_to_other_config", pool, slotmod.queue_key(name, 0, "dead-job"),
              '{"since": "%s", "waits_for": "concurrency"}' % old)
    # the dead waiter had the lower rank: it neither holds the next one back nor stays behind
    job = slotmod.Slots([pool_place(conn, 1)], "alive", timeout=TIMEOUT, evacuation=name, rank=5, job="alive",
                        poll=0.2).acquire()
    job.release()
    assert left(conn) == []

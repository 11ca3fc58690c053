"""Issue 12: XAPI destroys a session unused for 24 h (inactive_session_timeout). A job that
outlives its sessions' idleness renews them and finishes; here the simulator's timeout is cut
to one second, so the source session dies while a node is read over NBD."""

import json
import uuid

from xapisim import client, scenario

from checks import assert_migrated

MiB = 1 << 20


def faults(pool, x, spec):
    x.xenapi.pool.get_all()  # a call first: renews the test's own session if it expired
    status, dummy, body = client.http_request(pool, "POST", "/xapisim/faults", session=x,
                                              body=json.dumps(spec).encode())
    assert status == 200, body
    return json.loads(body)


def test_expired_sessions_are_renewed_without_failing_the_job(pools, connect, migrate):
    src, dst = connect(0), connect(1)
    vm, dummy = scenario.build_tree(pools[0], src, "sessions-%s" % uuid.uuid4().hex[:6], [16 * MiB],
                                    [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"),
                                     ("write", "c")])
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    expired = [faults(p, x, {"kind": "session_timeout", "seconds": 1})["sessions_expired"]
               for p, x in ((pools[0], src), (pools[1], dst))]
    try:
        # 4 MiB/s: each 16 MiB node takes about 4 s to read, with no API call on its session
        stats, dummy = migrate(vm_uuid, sxm_bandwidth_limit=4 * MiB)
        assert stats["failed"] == 0
    finally:
        after = [faults(p, x, {"kind": "session_timeout", "seconds": 86400})["sessions_expired"]
                 for p, x in ((pools[0], src), (pools[1], dst))]
    assert after[0] > expired[0], "no session of the job expired: the test proves nothing"
    assert_migrated(src, dst, vm_uuid)

"""Issue 12: no window in which the destination VM is unmarked or startable. A failure right
after the metadata import (the next call fails, as a lost connection would make it) leaves a
VM that is already marked as the job's, in state imported, with start blocked; the re-run
continues from it."""

import json
import uuid

from xapisim import client, scenario

from checks import assert_migrated, assert_nothing_left_behind, inventory

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"), ("write", "c")]


def test_a_failure_right_after_the_import_is_resumed(pools, connect, migrate):
    src, dst = connect(0), connect(1)
    vm, _ = scenario.build_tree(pools[0], src, "import-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    before_dst = inventory(dst)
    # the first call the metadata step makes on the destination after /import_metadata
    status, dummy, body = client.http_request(
        pools[1], "POST", "/xapisim/faults", session=dst,
        body=json.dumps({"kind": "call", "method": "VM.get_blocked_operations", "nth": 1,
                         "error": ["INTERNAL_ERROR", "the connection was lost"]}).encode())
    assert status == 200, body
    stats, output = migrate(vm_uuid, expect_failure=True)
    assert "the connection was lost" in output, output[-3000:]
    copy = dst.xenapi.VM.get_by_uuid(vm_uuid)
    rec = dst.xenapi.VM.get_record(copy)
    assert rec["other_config"]["sxm:job"] == vm_uuid and rec["other_config"]["sxm:state"] == "imported"
    assert "start" in rec["blocked_operations"]
    assert dst.xenapi.VM.get_allowed_operations(copy).count("start") == 0
    stats, result = migrate(vm_uuid)
    assert stats["failed"] == 0
    assert_migrated(src, dst, vm_uuid)
    assert_nothing_left_behind(dst, vm_uuid, before_dst)

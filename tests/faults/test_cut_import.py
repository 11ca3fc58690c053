"""A run cut during the copy (the destination's import connection dropped) is continued by the
next one, which duplicates nothing; a third run changes nothing. Moved here from the
integration layer: the fault matrix covers the same fault in every run of make test-faults."""

import json

from xapisim import client

from checks import assert_migrated, assert_nothing_left_behind, inventory
from test_migrate_safety import build


def test_a_run_cut_during_the_copy_is_continued_by_the_next(pools, connect, migrate):
    """A dropped import mid-way: the run fails, the source is untouched, the re-run completes
    without duplicating anything, and a third run changes nothing."""
    src, dst = connect(0), connect(1)
    vm_uuid = build(pools, src, "resume")
    before_src, before_dst = inventory(src), inventory(dst)
    status, _, body = client.http_request(
        pools[1], "POST", "/xapisim/faults", session=dst,
        body=json.dumps({"kind": "import_fail", "after_bytes": 100000, "cut": True}).encode())
    assert status == 200, body
    stats, output = migrate(vm_uuid, expect_failure=True)
    assert inventory(src) == before_src
    stats, result = migrate(vm_uuid)
    assert stats["failed"] == 0
    assert_migrated(src, dst, vm_uuid)
    assert_nothing_left_behind(dst, vm_uuid, before_dst)
    assert inventory(src) == before_src
    stats, _ = migrate(vm_uuid)
    assert stats["changed"] == 0

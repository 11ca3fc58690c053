"""Issue 8: a run that failed (mid-node, or after the leaf sync) and a source that changed
before the re-run - reverted, a snapshot deleted, the halted disk written through
import_raw_vdi. Every re-run ends with the destination equal to the source's new state, tree
and bytes, and nothing left behind."""

import json
import os
import sys
import uuid

import pytest
from xapisim import client, scenario

from checks import assert_migrated, assert_nothing_left_behind, inventory
from harness import REPO

sys.path.insert(0, os.path.join(REPO, "build", "collections"))

from ansible_collections.xapi.sxm.plugins.module_utils import migrate as migration  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.errors import DataPathError  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.lock import lock_keys  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection  # noqa: E402

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"),
        ("write", "c"), ("snap", "s3"), ("write", "d")]


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


def fail_mid_node(pools, dst_session, src, dst, vm_uuid):
    status, dummy, body = client.http_request(
        pools[1], "POST", "/xapisim/faults", session=dst_session,
        body=json.dumps({"kind": "import_fail", "after_bytes": 100000, "cut": True}).encode())
    assert status == 200, body
    with pytest.raises(DataPathError):
        migration.migrate(src, dst, migration.Options(vm_uuid))


def stop_after_leaf_sync(pools, dst_session, src, dst, vm_uuid):
    options = migration.Options(vm_uuid)
    result = migration.mirror_step(src, dst, migration.make_plan(src, dst, options), options)
    assert result["changed"]


def revert(pools, x, vm, snaps):
    x.xenapi.VM.revert(snaps["s2"])


def delete_snapshot(pools, x, vm, snaps):
    disks = scenario.disks(x, snaps["s3"]).values()
    x.xenapi.VM.destroy(snaps["s3"])
    for vdi in disks:
        x.xenapi.VDI.destroy(vdi)


def write_halted_disk(pools, x, vm, snaps):
    for vdi in scenario.disks(x, vm).values():
        scenario.write_disk(pools[0], x, vdi, [(0, b"written while halted" * 100), (3 * MiB, os.urandom(70000))])


@pytest.mark.parametrize("failure", [fail_mid_node, stop_after_leaf_sync])
@pytest.mark.parametrize("change", [revert, delete_snapshot, write_halted_disk])
def test_rerun_after_the_source_changed(pools, connect, failure, change):
    x, y = connect(0), connect(1)
    vm, snaps = scenario.build_tree(pools[0], x, "changed-%s" % uuid.uuid4().hex[:6], [4 * MiB, 4 * MiB], TREE)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    before_dst = inventory(y)
    src, dst = connection(pools[0]), connection(pools[1])
    try:
        failure(pools, y, src, dst, vm_uuid)
        change(pools, x, vm, snaps)
        result = migration.migrate(src, dst, migration.Options(vm_uuid))
    finally:
        src.logout()
        dst.logout()
    assert result["changed"]
    assert_migrated(x, y, vm_uuid)
    assert_nothing_left_behind(y, vm_uuid, before_dst)
    pool = y.xenapi.pool.get_all()[0]
    assert lock_keys(y.xenapi.pool.get_other_config(pool), vm_uuid) == []


def test_a_destination_sr_changed_between_runs_leaves_nothing_on_the_first(pools, connect):
    """The first run mirrors to one SR and stops after the leaf sync; the re-run is given
    another SR: the migration lands there, and nothing of it stays on the first."""
    x, y = connect(0), connect(1)
    vm, dummy = scenario.build_tree(pools[0], x, "moved-sr-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    before_dst = inventory(y)
    first, second = [y.xenapi.SR.get_by_name_label(label)[0] for label in ("Local storage", "Local storage (SMAPIv3)")]
    src, dst = connection(pools[0]), connection(pools[1])
    try:
        options = migration.Options(vm_uuid, default_sr=y.xenapi.SR.get_uuid(first))
        migration.mirror_step(src, dst, migration.make_plan(src, dst, options), options)
        assert [v for v in y.xenapi.SR.get_VDIs(first) if y.xenapi.VDI.get_other_config(v).get("sxm:job") == vm_uuid]
        migration.migrate(src, dst, migration.Options(vm_uuid, default_sr=y.xenapi.SR.get_uuid(second)))
    finally:
        src.logout()
        dst.logout()
    assert_migrated(x, y, vm_uuid)
    assert_nothing_left_behind(y, vm_uuid, before_dst)
    assert [v for v in y.xenapi.SR.get_VDIs(first) if y.xenapi.VDI.get_other_config(v).get("sxm:job") == vm_uuid] == []

"""Issue 12: a VM that arrived through xapi.sxm can move on (A → B → C) and back (B → A after
A's copy was destroyed); a re-run after a `destroy` changes nothing; a copy that is not
complete never moves on."""

import json
import os
import uuid

import pytest
from xapisim import client, scenario
from xapisim.testing import xapisim

from checks import assert_migrated, inventory
from harness import pool_vars, run_playbook

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"), ("write", "c")]


@pytest.fixture
def third_pool(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("pool-c"))
    xapisim("up", "--state-dir", state, "--pools", "1")
    with open(os.path.join(state, "pools.json")) as f:
        pool = json.load(f)["pools"][0]
    yield pool
    xapisim("down", "--state-dir", state)


def move(source, destination, vm_uuid, tmp_path, **extra):
    variables = {"sxm_source": pool_vars(source), "sxm_destination": pool_vars(destination),
                 "sxm_vm": vm_uuid, "sxm_report_dir": str(tmp_path / "reports")}
    variables.update(extra)
    stats, output = run_playbook("migrate_vm.yml", variables, tmp_path)
    with open(os.path.join(str(tmp_path / "reports"), "sxm-%s.json" % vm_uuid)) as f:
        return stats, json.load(f)


def gone(x, vm_uuid):
    return vm_uuid not in inventory(x)[0]


def test_on_and_back_after_destroy(pools, connect, third_pool, tmp_path):
    a, b = connect(0), connect(1)
    c = client.login(third_pool)
    vm, _ = scenario.build_tree(pools[0], a, "travel-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = a.xenapi.VM.get_uuid(vm)
    reference = {}

    # A -> B, destroying A's copy
    stats, result = move(pools[0], pools[1], vm_uuid, tmp_path, sxm_source_disposition="destroy")
    assert stats["failed"] == 0 and gone(a, vm_uuid)
    reference["b"] = inventory(b)

    # the same run again: nothing to do, nothing destroyed on either side
    stats, result = move(pools[0], pools[1], vm_uuid, tmp_path, sxm_source_disposition="destroy")
    assert stats["failed"] == 0 and stats["changed"] == 0
    assert "already migrated" in json.dumps(result)
    assert inventory(b) == reference["b"]

    # B -> A: back where it came from
    stats, result = move(pools[1], pools[0], vm_uuid, tmp_path)
    assert stats["failed"] == 0
    assert_migrated(b, a, vm_uuid)

    # B -> C, destroying B's copy: A's copy is untouched
    before_a = inventory(a)
    stats, result = move(pools[1], third_pool, vm_uuid, tmp_path, sxm_source_disposition="destroy")
    assert stats["failed"] == 0 and gone(b, vm_uuid)
    assert_migrated(a, c, vm_uuid)
    assert inventory(a) == before_a
    c.xenapi.session.logout()


def test_an_unfinished_copy_does_not_move_on(pools, connect, third_pool, tmp_path):
    """A copy still being migrated (state imported) on B is refused as a source for B -> C."""
    a, b = connect(0), connect(1)
    c = client.login(third_pool)
    vm, _ = scenario.build_tree(pools[0], a, "unfinished-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = a.xenapi.VM.get_uuid(vm)
    defaults = {"group/xapi.sxm.migration": {"source": pool_vars(pools[0]), "destination": pool_vars(pools[1]),
                                             "vm": vm_uuid}}
    from test_steps import run_tasks
    stats, output = run_tasks("unfinished", [{"name": "mirror", "xapi.sxm.vdi_mirror": {}},
                                             {"name": "metadata", "xapi.sxm.vm_metadata": {}}], defaults, tmp_path)
    assert stats["failed"] == 0
    before = inventory(b), inventory(c)
    variables = {"sxm_source": pool_vars(pools[1]), "sxm_destination": pool_vars(third_pool), "sxm_vm": vm_uuid,
                 "sxm_source_disposition": "destroy"}
    stats, output = run_playbook("migrate_vm.yml", variables, tmp_path, expect_failure=True)
    assert "SXM_PREFLIGHT" in output and "unfinished copy" in output, output[-3000:]
    assert (inventory(b), inventory(c)) == before
    c.xenapi.session.logout()

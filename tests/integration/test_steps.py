"""Issue 8: every step of the flow is a module that can run alone and again (the second run
reports no change), and the two action groups work with module_defaults."""

import os
import uuid

import yaml

from xapisim import scenario

from checks import assert_migrated, assert_nothing_left_behind, inventory
from harness import REPO, pool_vars, run_playbook

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"), ("write", "c")]
STEPS = ["migration_plan", "vdi_mirror", "vm_metadata", "migration_verify", "vm_cutover"]


def play(tasks, defaults):
    return [{"name": "steps", "hosts": "localhost", "gather_facts": False,
             "module_defaults": defaults, "tasks": tasks}]


def run_tasks(name, tasks, defaults, tmp_path, **kwargs):
    path = os.path.join(REPO, "playbooks", ".%s-%s.yml" % (name, uuid.uuid4().hex[:6]))
    with open(path, "w") as f:
        yaml.safe_dump(play(tasks, defaults), f)
    try:
        return run_playbook(os.path.basename(path), {}, tmp_path, **kwargs)
    finally:
        os.unlink(path)


def migration_defaults(pools, vm_uuid):
    return {"group/xapi.sxm.migration": {"source": pool_vars(pools[0]), "destination": pool_vars(pools[1]),
                                         "vm": vm_uuid}}


def test_each_step_alone_twice(pools, connect, tmp_path):
    """Each module run on its own, then again: the second run changes nothing, and after the
    last step the destination holds the migrated VM and nothing else."""
    src, dst = connect(0), connect(1)
    vm, _ = scenario.build_tree(pools[0], src, "steps-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    before_src, before_dst = inventory(src), inventory(dst)
    defaults = migration_defaults(pools, vm_uuid)
    for step in STEPS:
        stats, output = run_tasks(step, [{"name": "first", "xapi.sxm.%s" % step: {}},
                                         {"name": "again", "xapi.sxm.%s" % step: {}, "register": "again"},
                                         {"name": "unchanged", "ansible.builtin.assert": {
                                             "that": ["not again.changed"]}}], defaults, tmp_path)
        assert stats["failed"] == 0, output[-3000:]
        if step != "migration_plan":
            assert stats["changed"] == 1, (step, output[-3000:])
    assert_migrated(src, dst, vm_uuid)
    assert_nothing_left_behind(dst, vm_uuid, before_dst)
    assert inventory(src) == before_src


def test_cleanup_alone_twice_removes_an_unfinished_job(pools, connect, tmp_path):
    src, dst = connect(0), connect(1)
    vm, _ = scenario.build_tree(pools[0], src, "clean-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    before = inventory(dst)
    defaults = migration_defaults(pools, vm_uuid)
    stats, output = run_tasks("mirror", [{"name": "mirror", "xapi.sxm.vdi_mirror": {}},
                                         {"name": "metadata", "xapi.sxm.vm_metadata": {}}], defaults, tmp_path)
    assert inventory(dst) != before
    tasks = [{"name": "first", "xapi.sxm.migration_cleanup": {}, "register": "first"},
             {"name": "again", "xapi.sxm.migration_cleanup": {}, "register": "again"},
             {"name": "changed once", "ansible.builtin.assert": {"that": ["first.changed", "not again.changed"]}}]
    stats, output = run_tasks("cleanup", tasks, defaults, tmp_path)
    assert stats["failed"] == 0, output[-3000:]
    assert inventory(dst) == before


def test_module_defaults_of_both_action_groups(pools, connect, tmp_path):
    x = connect(0)
    vm, _ = scenario.build_tree(pools[0], x, "defaults-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    one = pool_vars(pools[0])
    defaults = {"group/xapi.sxm.pool": dict(one), **migration_defaults(pools, vm_uuid)}
    tasks = [{"name": "one pool", "xapi.sxm.snapshot_tree_info": {"vm": vm_uuid}, "register": "tree"},
             {"name": "two pools", "xapi.sxm.migration_plan": {}, "register": "plan"},
             {"name": "the composite", "xapi.sxm.vm_migrate": {}, "register": "migrated"},
             {"name": "all ran", "ansible.builtin.assert": {"that": [
                 "tree.tree.nodes | length == 3", "plan.plan.disks | length == 1", "migrated.changed"]}}]
    stats, output = run_tasks("defaults", tasks, defaults, tmp_path)
    assert stats["failed"] == 0, output[-3000:]


def test_the_composite_and_the_other_modules_alone_twice(pools, connect, tmp_path):
    x = connect(0)
    vm, _ = scenario.build_tree(pools[0], x, "composite-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    defaults = {"group/xapi.sxm.pool": pool_vars(pools[0]), **migration_defaults(pools, vm_uuid)}
    tasks = []
    for name, args in (("vm_migrate", {}), ("snapshot_tree_info", {"vm": vm_uuid}),
                       ("migration_report", {"results": []})):
        tasks += [{"name": "%s first" % name, "xapi.sxm.%s" % name: args, "register": "first"},
                  {"name": "%s again" % name, "xapi.sxm.%s" % name: args, "register": "again"},
                  {"name": "%s unchanged" % name, "ansible.builtin.assert": {"that": [
                      "not again.changed", "first.changed == (%r == 'vm_migrate')" % name]}}]
    stats, output = run_tasks("composite", tasks, defaults, tmp_path)
    assert stats["failed"] == 0, output[-3000:]
    assert_migrated(x, connect(1), vm_uuid)


def test_check_and_diff_through_the_role_print_the_plan_and_what_would_change(pools, connect, tmp_path):
    src, dst = connect(0), connect(1)
    vm, _ = scenario.build_tree(pools[0], src, "diff-%s" % uuid.uuid4().hex[:6], [4 * MiB], TREE)
    vm_uuid = src.xenapi.VM.get_uuid(vm)
    before = inventory(src), inventory(dst)
    variables = {"sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]), "sxm_vm": vm_uuid}
    stats, output = run_playbook("migrate_vm.yml", variables, tmp_path, check=True, diff=True)
    assert stats["failed"] == 0 and stats["changed"] >= 1
    # the plan: the tree, then a line per disk
    assert "s2  " in output and "disk 0: 2 snapshot(s) and the VM's own disk" in output, output[-3000:]
    # the diff of the mirror step: what the destination holds, and what it would hold
    assert "disk 0: 0 of 2 snapshot nodes mirrored; working disk holds nothing" in output, output[-3000:]
    assert "every disk mirrored" in output
    # and of the metadata step: no VM before, the source's tree after
    assert "no VM %s on the destination" % vm_uuid in output
    assert (inventory(src), inventory(dst)) == before

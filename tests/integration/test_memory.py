"""Memory images (issue 11): a suspended VM arrives suspended with its memory image, and a
checkpoint (a snapshot with memory) arrives with its own, so that reverting the destination to it
gives the memory the source's checkpoint holds; a running VM with checkpoints moves warm."""

import os
import sys

from xapisim import client, scenario
from xapisim.testing import guest_write, set_guest

from checks import assert_memory_images, assert_migrated, assert_nothing_left_behind, inventory
from harness import REPO

sys.path.insert(0, os.path.join(REPO, "build", "collections"))

from ansible_collections.xapi.sxm.plugins.module_utils import migrate as migration  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection  # noqa: E402

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"), ("write", "c")]


def running_vm_with_a_checkpoint(pools, x, name):
    """A tree with a reverted branch, a checkpoint taken while the VM ran, and writes since."""
    vm, dummy = scenario.build_tree(pools[0], x, name, [8 * MiB, 4 * MiB], TREE)
    x.xenapi.VM.start(vm, False, False)
    set_guest(pools[0], x, vm, tools=True, ack_timeout=1)
    checkpoint = x.xenapi.VM.checkpoint(vm, "with memory")
    guest_write(pools[0], x, vm, 0, 3 * MiB, b"written after the checkpoint")
    return vm, checkpoint


def revert_gives_the_checkpoints_memory(x, y, vm_uuid, checkpoint):
    """Revert the destination VM to the checkpoint: it is suspended, with the memory the
    source's checkpoint holds."""
    d_checkpoint = y.xenapi.VM.get_by_uuid(x.xenapi.VM.get_uuid(checkpoint))
    d_vm = y.xenapi.VM.get_by_uuid(vm_uuid)
    if y.xenapi.VM.get_power_state(d_vm) == "Running":
        y.xenapi.VM.hard_shutdown(d_vm)
    y.xenapi.VM.revert(d_checkpoint)
    assert y.xenapi.VM.get_power_state(d_vm) == "Suspended"
    assert client.nbd_digest(y, y.xenapi.VM.get_suspend_VDI(d_vm)) == \
        client.nbd_digest(x, x.xenapi.VM.get_suspend_VDI(checkpoint))


def test_a_suspended_vm_arrives_suspended_with_its_checkpoint_and_a_rerun_has_nothing_to_do(pools, connect, migrate):
    x, y = connect(0), connect(1)
    vm, checkpoint = running_vm_with_a_checkpoint(pools, x, "suspended")
    x.xenapi.VM.suspend(vm)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    image = x.xenapi.VM.get_suspend_VDI(vm)
    before = inventory(y)
    stats, result = migrate(vm_uuid)
    assert stats["failed"] == 0 and result["plan"]["mode"] == "cold"
    assert {m["name_label"] for m in result["plan"]["memory_images"]} == {"with memory", "suspended"}
    assert_migrated(x, y, vm_uuid, scan=False)
    images = assert_memory_images(x, y, vm_uuid)
    assert len(images) == 2 and y.xenapi.VM.get_power_state(y.xenapi.VM.get_by_uuid(vm_uuid)) == "Suspended"
    assert y.xenapi.VDI.get_type(images[vm_uuid]) == "suspend"
    assert_nothing_left_behind(y, vm_uuid, before)
    # the source is untouched: still suspended on the same image
    assert x.xenapi.VM.get_power_state(vm) == "Suspended" and x.xenapi.VM.get_suspend_VDI(vm) == image
    stats, again = migrate(vm_uuid)
    assert stats["failed"] == 0 and stats["changed"] == 0
    revert_gives_the_checkpoints_memory(x, y, vm_uuid, checkpoint)


def test_a_vm_suspended_again_has_its_new_memory_carried_and_destroy_removes_the_images(pools, connect):
    """Resumed and suspended again between two runs, the VM has a new image: the re-run brings
    the destination's copy to it (the old copy is not kept beside it). Destroy then removes the
    source's VM with its images."""
    x, y = connect(0), connect(1)
    vm, checkpoint = running_vm_with_a_checkpoint(pools, x, "suspended-twice")
    x.xenapi.VM.suspend(vm)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    src = Connection(pools[0]["url"], pools[0]["username"], pools[0]["password"], ca_path=pools[0]["ca_file"]).login()
    dst = Connection(pools[1]["url"], pools[1]["username"], pools[1]["password"], ca_path=pools[1]["ca_file"]).login()
    try:
        migration.mirror_step(src, dst, migration.make_plan(src, dst, migration.Options(vm_uuid)),
                              migration.Options(vm_uuid))
        x.xenapi.VM.resume(vm, False, False)
        x.xenapi.VM.suspend(vm)
        images = [x.xenapi.VM.get_suspend_VDI(vm), x.xenapi.VM.get_suspend_VDI(checkpoint)]
        result = migration.migrate(src, dst, migration.Options(vm_uuid))
        assert_migrated(x, y, vm_uuid, scan=False)
        assert len(assert_memory_images(x, y, vm_uuid)) == 2
        copies = [r for r in y.xenapi.VDI.get_all_records().values()
                  if r["other_config"].get("sxm:job") == vm_uuid and r["type"] == "suspend"]
        assert len(copies) == 2
        assert result["stale_memory_images_removed"] == []
        migration.cutover_step(src, dst, migration.make_plan(src, dst, migration.Options(vm_uuid)), "destroy")
        assert not x.xenapi.VM.get_all_records_where('field "uuid"="%s"' % vm_uuid)
        for ref in images:
            assert ref not in x.xenapi.VDI.get_all()
    finally:
        src.logout()
        dst.logout()


def test_a_running_vm_with_a_checkpoint_moves_warm_and_the_checkpoint_can_be_reverted_to(pools, connect):
    x, y = connect(0), connect(1)
    vm, checkpoint = running_vm_with_a_checkpoint(pools, x, "running-checkpoint")
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    src = Connection(pools[0]["url"], pools[0]["username"], pools[0]["password"], ca_path=pools[0]["ca_file"]).login()
    dst = Connection(pools[1]["url"], pools[1]["username"], pools[1]["password"], ca_path=pools[1]["ca_file"]).login()
    try:
        result = migration.migrate(src, dst, migration.Options(vm_uuid))
        assert result["plan"]["mode"] == "warm" and result["downtime_s"] > 0
        assert y.xenapi.VM.get_power_state(y.xenapi.VM.get_by_uuid(vm_uuid)) == "Running"
        assert_migrated(x, y, vm_uuid, scan=False)
        d_checkpoint = y.xenapi.VM.get_by_uuid(x.xenapi.VM.get_uuid(checkpoint))
        assert client.nbd_digest(y, y.xenapi.VM.get_suspend_VDI(d_checkpoint)) == \
            client.nbd_digest(x, x.xenapi.VM.get_suspend_VDI(checkpoint))
        revert_gives_the_checkpoints_memory(x, y, vm_uuid, checkpoint)
    finally:
        src.logout()
        dst.logout()

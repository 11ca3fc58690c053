"""VM and VDI snapshot semantics: snapshot, checkpoint, clone, copy, revert and the snapshot
tree they build (parent/children, snapshot_of/snapshots), as XAPI-FACTS §2 describes them."""

import os


from xapisim.testing import error_of, guest_write, set_guest
from xapisim import scenario

MiB = 1 << 20
BLOCK = 64 * 1024
NULL = "OpaqueRef:NULL"


def content(state_dir, x, vdi, offset, length):
    """What the disk holds (read from the simulator's disk file)."""
    path = os.path.join(state_dir, "pool0", "disks", x.xenapi.VDI.get_uuid(vdi) + ".raw")
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_vm_snapshot_fields(xapi):
    """Fact 1 / §2.1: snapshot VM fields, VDI snapshots, parent chain, MACs, CD not copied."""
    vm = scenario.create_vm(xapi, "snap-fields", [8 * MiB, 4 * MiB], cd=True)
    vm_disks = scenario.disks(xapi, vm)
    xapi.xenapi.VDI.add_to_other_config(vm_disks["0"], "content_id", "cid-0")
    first = xapi.xenapi.VM.snapshot(vm, "first")
    xapi.xenapi.VM.start(vm, False, False)
    snap = xapi.xenapi.VM.snapshot(vm, "second")
    rec = xapi.xenapi.VM.get_record(snap)
    assert rec["is_a_snapshot"] is True and rec["is_a_template"] is True
    assert rec["snapshot_of"] == vm and rec["power_state"] == "Halted"
    assert rec["snapshot_info"] == {"disk-snapshot-type": "crash_consistent",
                                    "power-state-at-snapshot": "Running"}
    assert rec["snapshot_metadata"] != "" and rec["transportable_snapshot_id"] == ""
    assert rec["parent"] == first, "snapshot.parent = the VM's previous parent"
    assert xapi.xenapi.VM.get_parent(vm) == snap
    assert xapi.xenapi.VM.get_children(first) == [snap]
    assert set(xapi.xenapi.VM.get_snapshots(vm)) == {first, snap}
    assert rec["snapshot_time"].value.endswith("Z")
    snap_disks = scenario.disks(xapi, snap)
    assert set(snap_disks) == {"0", "1"}
    for userdevice, vdi in snap_disks.items():
        vrec = xapi.xenapi.VDI.get_record(vdi)
        assert vrec["is_a_snapshot"] is True and vrec["snapshot_of"] == vm_disks[userdevice]
        assert vrec["virtual_size"] == xapi.xenapi.VDI.get_virtual_size(vm_disks[userdevice])
    # content_id: the snapshot's is the source's at snapshot time; a RW attach on SMAPIv1
    # drops the source's (storage_smapiv1 VDI.activate), so the running VM's snapshot has a
    # fresh one
    first_disk = scenario.disks(xapi, first)["0"]
    assert xapi.xenapi.VDI.get_other_config(first_disk)["content_id"] == "cid-0"
    assert "content_id" not in xapi.xenapi.VDI.get_other_config(vm_disks["0"])
    assert xapi.xenapi.VDI.get_other_config(snap_disks["0"])["content_id"] != "cid-0"
    cds = [v for v in rec["VBDs"] if xapi.xenapi.VBD.get_type(v) == "CD"]
    assert len(cds) == 1 and xapi.xenapi.VBD.get_empty(cds[0]) is True
    def macs(v):
        return sorted(xapi.xenapi.VIF.get_MAC(i) for i in xapi.xenapi.VM.get_VIFs(v))
    assert macs(snap) == macs(vm)
    ignored = xapi.xenapi.VM.snapshot(vm, "without disk 1", [vm_disks["1"]])
    assert set(scenario.disks(xapi, ignored)) == {"0"}


def test_revert_and_branch_tree(state_dir, pools, xapi):
    """Fact 4 / §2.3 (clone path): revert destroys the VM's disks and clones the snapshot's;
    VDIs whose snapshot_of was an old disk follow the new disk; vm.parent = snapshot; a
    running VM is shut down; taking a snapshot after that starts a branch."""
    vm = scenario.create_vm(xapi, "tree", [4 * MiB, 2 * MiB])
    xapi.xenapi.VM.start(vm, False, False)
    guest_write(pools[0], xapi, vm, 0, 0, b"A" * BLOCK)
    base = xapi.xenapi.VM.snapshot(vm, "base")
    guest_write(pools[0], xapi, vm, 0, 0, b"B" * BLOCK)
    v1 = xapi.xenapi.VM.snapshot(vm, "v1")
    old_disks = scenario.disks(xapi, vm)

    xapi.xenapi.VM.revert(base)
    new_disks = scenario.disks(xapi, vm)
    assert xapi.xenapi.VM.get_power_state(vm) == "Halted"
    assert set(new_disks) == {"0", "1"}
    assert not set(new_disks.values()) & set(old_disks.values()), "refs of the disks change"
    for vdi in old_disks.values():
        assert error_of(xapi.xenapi.VDI.get_record, vdi)[0] == "HANDLE_INVALID"
    assert content(state_dir, xapi, new_disks["0"], 0, 4) == b"AAAA"
    for snap in (base, v1):
        for userdevice, vdi in scenario.disks(xapi, snap).items():
            assert xapi.xenapi.VDI.get_snapshot_of(vdi) == new_disks[userdevice]
            assert xapi.xenapi.VDI.get_is_a_snapshot(vdi) is True
    assert xapi.xenapi.VM.get_parent(vm) == base
    new_vdi = xapi.xenapi.VDI.get_record(new_disks["0"])
    assert new_vdi["is_a_snapshot"] is False and new_vdi["snapshot_of"] == NULL

    v2 = xapi.xenapi.VM.snapshot(vm, "v2")
    assert sorted(xapi.xenapi.VM.get_children(base)) == sorted([v1, v2])
    assert xapi.xenapi.VM.get_parent(v2) == base and xapi.xenapi.VM.get_parent(vm) == v2
    assert xapi.xenapi.VM.get_parent(v1) == base
    assert set(xapi.xenapi.VM.get_snapshots(vm)) == {base, v1, v2}


def test_checkpoint_and_revert_to_it(xapi, pools):
    """Fact 2 / §2.1: checkpoint of a running VM is Suspended with a suspend VDI, the VM keeps
    running; reverting to it leaves the VM Suspended with its own suspend VDI (§2.3 step 4-5).
    Checkpoint of a halted VM: VM_BAD_POWER_STATE."""
    vm = scenario.create_vm(xapi, "checkpointed", [2 * MiB])
    set_guest(pools[0], xapi, vm, tools=True)  # an HVM guest suspends only with its tools
    assert error_of(xapi.xenapi.VM.checkpoint, vm, "cp") == \
        ["VM_BAD_POWER_STATE", vm, "paused, suspended, running", "halted"]
    xapi.xenapi.VM.start(vm, False, False)
    cp = xapi.xenapi.VM.checkpoint(vm, "cp")
    rec = xapi.xenapi.VM.get_record(cp)
    assert rec["power_state"] == "Suspended" and rec["suspend_VDI"] != NULL
    assert rec["snapshot_info"]["power-state-at-snapshot"] == "Running"
    assert rec["is_a_snapshot"] is True and xapi.xenapi.VM.get_parent(vm) == cp
    assert xapi.xenapi.VM.get_power_state(vm) == "Running"
    xapi.xenapi.VM.revert(cp)
    vm_rec = xapi.xenapi.VM.get_record(vm)
    assert vm_rec["power_state"] == "Suspended"
    assert vm_rec["suspend_VDI"] not in (NULL, rec["suspend_VDI"])
    xapi.xenapi.VM.resume(vm, False, False)
    assert xapi.xenapi.VM.get_power_state(vm) == "Running"


def test_clone_and_copy_fields(xapi):
    """Fact 3 / §2.1: VM.clone and VM.copy make non-snapshot VMs with parent=NULL,
    snapshot_of=NULL, empty snapshot fields, Halted; clone of a running VM is refused."""
    vm = scenario.create_vm(xapi, "to-clone", [2 * MiB])
    snap = xapi.xenapi.VM.snapshot(vm, "to-clone snap")
    sr = scenario.default_sr(xapi)
    for made in (xapi.xenapi.VM.clone(snap, "from snapshot"),
                 xapi.xenapi.VM.copy(snap, "copied", sr),
                 xapi.xenapi.VM.clone(vm, "from vm")):
        rec = xapi.xenapi.VM.get_record(made)
        assert rec["is_a_snapshot"] is False and rec["snapshot_of"] == NULL
        assert rec["parent"] == NULL and rec["power_state"] == "Halted"
        assert rec["snapshot_info"] == {} and rec["snapshot_metadata"] == ""
        assert rec["snapshot_time"].value == "19700101T00:00:00Z"
        assert len(scenario.disks(xapi, made)) == 1
        for vdi in scenario.disks(xapi, made).values():
            assert xapi.xenapi.VDI.get_is_a_snapshot(vdi) is False
    assert xapi.xenapi.VM.get_record(xapi.xenapi.VM.clone(snap, "t"))["is_a_template"] is True
    xapi.xenapi.VM.start(vm, False, False)
    assert error_of(xapi.xenapi.VM.clone, vm, "no") == \
        ["VM_BAD_POWER_STATE", vm, "halted", "running"]


def test_vdi_snapshot_clone_copy_resize(state_dir, pools, xapi):
    """§2.2: VDI.snapshot sets is_a_snapshot/snapshot_of and keeps content_id; VDI.clone
    does not; VDI.copy makes an independent full copy; VDI.resize grows, refuses shrinking."""
    sr = scenario.default_sr(xapi)
    vm = scenario.create_vm(xapi, "vdi-ops", [4 * MiB])
    vdi = scenario.disks(xapi, vm)["0"]
    xapi.xenapi.VDI.add_to_other_config(vdi, "content_id", "cid-x")
    snap = xapi.xenapi.VDI.snapshot(vdi, {})
    rec = xapi.xenapi.VDI.get_record(snap)
    assert rec["is_a_snapshot"] is True and rec["snapshot_of"] == vdi
    assert rec["other_config"]["content_id"] == "cid-x"
    assert xapi.xenapi.VDI.get_snapshots(vdi) == [snap]
    clone = xapi.xenapi.VDI.clone(snap, {})
    rec = xapi.xenapi.VDI.get_record(clone)
    assert rec["is_a_snapshot"] is False and rec["snapshot_of"] == NULL
    xapi.xenapi.VM.start(vm, False, False)
    guest_write(pools[0], xapi, vm, 0, BLOCK, b"C" * BLOCK)
    copy = xapi.xenapi.VDI.copy(vdi, sr, NULL, NULL)
    assert content(state_dir, xapi, copy, BLOCK, 2) == b"CC"
    assert content(state_dir, xapi, snap, BLOCK, 2) == b"\0\0"
    assert xapi.xenapi.VDI.get_is_a_snapshot(copy) is False
    assert error_of(xapi.xenapi.VDI.resize, vdi, str(8 * MiB)) == ["VDI_IN_USE", vdi, "resize"]
    xapi.xenapi.VM.hard_shutdown(vm)
    xapi.xenapi.VDI.resize(vdi, str(8 * MiB))
    assert int(xapi.xenapi.VDI.get_virtual_size(vdi)) == 8 * MiB
    assert error_of(xapi.xenapi.VDI.resize, vdi, str(2 * MiB))[0] == "SR_BACKEND_FAILURE_79"


def test_destroying_a_snapshot_reparents_its_children(xapi):
    """xapi_vm.ml VM.destroy ("rebase the children"): children of a destroyed snapshot get its
    parent; its VDIs are kept."""
    vm = scenario.create_vm(xapi, "reparent", [2 * MiB])
    a = xapi.xenapi.VM.snapshot(vm, "a")
    b = xapi.xenapi.VM.snapshot(vm, "b")
    b_disks = scenario.disks(xapi, b)
    xapi.xenapi.VM.destroy(b)
    assert xapi.xenapi.VM.get_parent(vm) == a
    for vdi in b_disks.values():
        assert xapi.xenapi.VDI.get_is_a_snapshot(vdi) is True

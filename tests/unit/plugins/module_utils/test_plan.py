"""plan.py: Options refuses what cannot work before any pool is read; against simulated pools,
the plan of a branched tree walks each disk with the inactive branch first, and a running VM,
an unknown or ambiguous VM name and an unknown disk are refused. Before anything is mirrored
the destination holds nothing of the job."""

import uuid

import pytest
from xapisim import scenario
from xapisim.testing import set_guest

from ansible_collections.xapi.sxm.plugins.module_utils import plan as planning, warm
from ansible_collections.xapi.sxm.plugins.module_utils.errors import InputError, PreflightError
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection

MiB = 1 << 20
# s1 -> {s2 (active) -> VM, s3 (newer, reverted away from)}: the walk is s1, s3, s2
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"),
        ("write", "c"), ("snap", "s3"), ("revert", "s2"), ("write", "d")]


@pytest.mark.parametrize("kwargs, words", [
    ({"vm": ""}, "vm is empty"),
    ({"vm": "x", "bandwidth_limit": -1}, "negative"),
    ({"vm": "x", "nbd_connections": 0}, "between 1 and 16"),
    ({"vm": "x", "nbd_connections": 17}, "between 1 and 16"),
    ({"vm": "x", "mode": "hot"}, "mode 'hot'"),
    ({"vm": "x", "source_disposition": "shred"}, "source_disposition 'shred'"),
])
def test_options_refuse_what_cannot_work(kwargs, words):
    with pytest.raises(InputError) as info:
        planning.Options(**kwargs)
    assert words in info.value.message and info.value.code == "SXM_INVALID_INPUT"


def test_options_accept_the_bounds():
    assert planning.Options("x", nbd_connections=16, bandwidth_limit=0).bandwidth_limit is None
    assert planning.Options("x", nbd_connections=1, userdevices=[0, 1]).userdevices == ["0", "1"]


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


def remove_vm(x, vm):
    vdis = set()
    for owner in x.xenapi.VM.get_snapshots(vm) + [vm]:
        vdis.update(scenario.disks(x, owner).values())
        x.xenapi.VM.destroy(owner)
    for vdi in vdis:
        x.xenapi.VDI.destroy(vdi)


@pytest.fixture
def env(pools, connect):
    """(src, dst product Connections, raw source session, list of VMs removed at the end)."""
    src, dst, x, made = connection(pools[0]), connection(pools[1]), connect(0), []
    yield src, dst, x, made
    for vm in made:
        if x.xenapi.VM.get_power_state(vm) != "Halted":
            x.xenapi.VM.hard_shutdown(vm)
        remove_vm(x, vm)
    src.logout()
    dst.logout()


def name():
    return "plan-%s" % uuid.uuid4().hex[:8]


def test_plan_of_a_branched_tree(pools, env):
    src, dst, x, made = env
    vm, snaps = scenario.build_tree(pools[0], x, name(), [4 * MiB, 2 * MiB], TREE)
    made.append(vm)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    the_plan = planning.make_plan(src, dst, planning.Options(vm_uuid))
    assert the_plan["job"] == vm_uuid and the_plan["vm_ref"] == vm
    default_sr = dst.call("SR.get_uuid", dst.call("pool.get_default_SR", dst.call("pool.get_all")[0]))
    assert [d["userdevice"] for d in the_plan["disks"]] == ["0", "1"]
    for disk, size in zip(the_plan["disks"], [4 * MiB, 2 * MiB]):
        assert disk["walk"] == ["s1", "s3", "s2"], "the inactive branch s3 first, the active s2 last"
        assert disk["walk_uuids"] == [x.xenapi.VM.get_uuid(snaps[s]) for s in ("s1", "s3", "s2")]
        assert disk["has_leaf"] is True and disk["virtual_size"] == size
        assert disk["bytes_to_read"] == 4 * size
        assert disk["destination_sr"] == default_sr
    summary = planning.plan_summary(the_plan)
    assert "destination_sr_ref" not in summary["disks"][0] and summary["nbd_tls"] is the_plan["tls"]

    status = planning.destination_progress(dst, the_plan)
    assert status == {"vm_state": None, "disks": [
        {"userdevice": d, "nodes_mirrored": 0, "nodes": 3, "working_vdi_holds": None} for d in ("0", "1")]}
    assert planning.progress_text(dst, the_plan).startswith("destination VM: none\ndisk 0: 0 of 3")

    only = planning.make_plan(src, dst, planning.Options(vm_uuid, userdevices=[1]))
    assert [d["userdevice"] for d in only["disks"]] == ["1"]
    with pytest.raises(InputError) as info:
        planning.make_plan(src, dst, planning.Options(vm_uuid, userdevices=[0, 7]))
    assert "no disk at userdevice 7 (it has 0, 1)" in info.value.message


def test_the_mode_follows_the_power_state(pools, env):
    """auto is warm for a running VM and cold for a halted one; cold refuses a running VM,
    before anything is read from its disks; warm on a halted VM is cold."""
    src, dst, x, made = env
    vm_name = name()
    vm = scenario.create_vm(x, vm_name, [1 * MiB])
    made.append(vm)
    x.xenapi.VM.start(vm, False, False)
    assert planning.make_plan(src, dst, planning.Options(vm_name))["mode"] == "warm"
    with pytest.raises(PreflightError) as info:
        planning.make_plan(src, dst, planning.Options(vm_name, mode="cold"))
    assert "is running: mode cold needs it halted" in info.value.message and "warm" in info.value.advice
    assert info.value.code == "SXM_PREFLIGHT"
    set_guest(pools[0], x, vm, tools=True)      # a guest without tools refuses to suspend
    x.xenapi.VM.suspend(vm)
    # suspended: its disks and memory do not change, it moves cold with its memory image
    suspended = planning.make_plan(src, dst, planning.Options(vm_name, mode="warm"))
    assert suspended["mode"] == "cold" and [m["name_label"] for m in suspended["memory_images"]] == [vm_name]
    x.xenapi.VM.resume(vm, False, False)
    x.xenapi.VM.pause(vm)
    with pytest.raises(PreflightError, match="is paused") as info:
        planning.make_plan(src, dst, planning.Options(vm_name))
    assert "unpause" in info.value.advice
    x.xenapi.VM.hard_shutdown(vm)
    assert planning.make_plan(src, dst, planning.Options(vm_name, mode="warm"))["mode"] == "cold"
    with pytest.raises(InputError, match="choose one of auto, now, manual, window"):
        warm.Settings(cutover="sometime")
    with pytest.raises(InputError, match="needs cutover_after and cutover_before"):
        warm.Settings(cutover="window", cutover_after="2026-12-24T02:00:00Z")
    with pytest.raises(InputError, match="give a UTC time"):
        warm.Settings(cutover="window", cutover_after="tomorrow", cutover_before="2026-12-24T02:00:00Z")
    with pytest.raises(InputError, match="is not before"):
        warm.Settings(cutover="window", cutover_after="2026-12-24T04:00:00Z", cutover_before="2026-12-24T02:00:00Z")
    window = warm.Settings(cutover="window", cutover_after="2026-12-24T02:00:00Z",
                           cutover_before="2026-12-24T04:00:00Z")
    opens = window.window[0]
    assert [window.decision(opens + d) for d in (-1, 0, 7199, 7200)] == ["wait", "cut over", "cut over", "hold"]
    assert warm.Settings(cutover="manual").decision(opens) == "hold" and warm.Settings().decision(opens) == "cut over"


def test_unknown_and_ambiguous_names_are_refused(pools, env):
    src, dst, x, made = env
    with pytest.raises(InputError) as info:
        planning.make_plan(src, dst, planning.Options("no-such-vm-%s" % uuid.uuid4().hex))
    assert "no VM named or with uuid" in info.value.message
    twice = name()
    made.extend(scenario.create_vm(x, twice, [1 * MiB]) for dummy in range(2))
    with pytest.raises(InputError) as info:
        planning.make_plan(src, dst, planning.Options(twice))
    assert "2 VMs are named %r" % twice in info.value.message and "give the uuid" in info.value.message
    snap = x.xenapi.VM.snapshot(made[-1], "snap")
    made.insert(0, snap)
    with pytest.raises(InputError, match="is a snapshot, template or control domain"):
        planning.make_plan(src, dst, planning.Options(x.xenapi.VM.get_uuid(snap)))


def test_space_on_the_destination_sr_is_checked_first(pools, env, connect):
    """The estimate is what the tree occupies on the source; an SR with one byte less free is
    refused before anything is read or written on the destination, one with that much free is
    accepted, and what the job already stored there counts as stored."""
    src, dst, x, made = env
    y = connect(1)
    vm, snaps = scenario.build_tree(pools[0], x, name(), [4 * MiB], TREE)
    made.append(vm)
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    the_plan = planning.make_plan(src, dst, planning.Options(vm_uuid))
    [space] = the_plan["space"]
    owners = [vm] + [snaps[s] for s in ("s1", "s2", "s3")]
    assert space["estimate_bytes"] == sum(int(x.xenapi.VDI.get_physical_utilisation(scenario.disks(x, o)["0"]))
                                          for o in owners) > 0
    assert space["needed_bytes"] == space["estimate_bytes"]
    sr = y.xenapi.SR.get_by_uuid(space["sr"])
    size = y.xenapi.SR.get_physical_size(sr)
    used = int(y.xenapi.SR.get_physical_utilisation(sr))
    try:
        y.xenapi.SR.set_physical_size(sr, str(used + space["needed_bytes"] - 1))
        with pytest.raises(PreflightError) as info:
            planning.make_plan(src, dst, planning.Options(vm_uuid))
        assert "need about" in info.value.message and "sr_map" in info.value.advice
        y.xenapi.SR.set_physical_size(sr, str(used + space["needed_bytes"]))
        assert planning.make_plan(src, dst, planning.Options(vm_uuid))["space"][0]["free_bytes"] == \
            space["needed_bytes"]
    finally:
        y.xenapi.SR.set_physical_size(sr, size)


@pytest.mark.parametrize("params, words", [
    ({"bandwidth_limit": -5}, "bandwidth_limit is -5: give at least 0"),
    ({"nbd_connections": 17}, "nbd_connections is 17: give between 1 and 16"),
    ({"lock_timeout": 1}, "lock_timeout is 1: give at least 3"),
    ({"vm": "  "}, "vm is empty"),
    ({"source": {"url": "", "username": "root"}}, "source.url is empty"),
    ({"destination": {"url": "https://x", "username": ""}}, "destination.username is empty"),
])
def test_param_problems_name_the_option(params, words):
    assert planning.param_problems(params) == [words]


def test_param_problems_accept_sane_values():
    assert planning.param_problems({"bandwidth_limit": 0, "nbd_connections": 16, "vm": "x",
                                    "default_sr": None, "use_cbt": True,
                                    "source": {"url": "https://a", "username": "root"}}) == []


def test_unmovable_devices_are_named_and_refused_or_warned():
    rec = {"name_label": "gpu-vm", "other_config": {"pci": "0/0000:03:00.0"}, "attached_PCIs": [],
           "VGPUs": ["OpaqueRef:g"], "VUSBs": ["OpaqueRef:u"]}
    assert planning.unmovable_devices(rec) == [
        "PCI passthrough 0/0000:03:00.0 (other_config:pci)", "vGPU OpaqueRef:g", "USB passthrough OpaqueRef:u"]
    with pytest.raises(PreflightError) as info:
        planning.check_devices(rec, planning.Options("x"))
    assert "vGPU OpaqueRef:g" in info.value.message and "unmovable_devices" in info.value.advice
    [warning] = planning.check_devices(rec, planning.Options("x", unmovable_devices="warn"))
    assert "USB passthrough" in warning and "assign them again" in warning
    assert planning.check_devices(dict(rec, other_config={}, VGPUs=[], VUSBs=[]), planning.Options("x")) == []
    with pytest.raises(InputError):
        planning.Options("x", unmovable_devices="ignore")


def test_a_pool_older_than_xapi_2_8_is_refused_before_anything_moves():
    class Old:
        url = "https://old.example/"

        def call(self, method, *args):
            return {"host.get_API_version_major": "2", "host.get_API_version_minor": "7"}[method]
    with pytest.raises(PreflightError, match="runs XAPI 2.7; this collection needs 2.8 or later") as refused:
        planning.check_version(Old(), "source", "OpaqueRef:master")
    assert "XenServer 7.3" in refused.value.advice

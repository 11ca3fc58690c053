"""metadata.py against simulated pools: a real metadata export read and written back unchanged,
the live VM (and only it) born marked and blocked, and networks mapped to the destination's, or
refused by name when the map names a missing network or a network has no namesake."""

import io
import tarfile
import uuid

import pytest
from xapisim import client, scenario

from ansible_collections.xapi.sxm.plugins.module_utils import markers, metadata
from ansible_collections.xapi.sxm.plugins.module_utils.errors import MetadataError
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection

MiB = 1 << 20


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


class Source:
    """A VM with two snapshots; its VIF 0 on the pools' common network, VIF 1 (added after the
    snapshots) on a network only the source pool has."""

    def __init__(self, pools):
        self.src, self.dst, self.x = connection(pools[0]), connection(pools[1]), client.login(pools[0])
        self.lonely = "meta-unit-%s" % uuid.uuid4().hex[:6]
        self.network = self.x.xenapi.network.create({
            "name_label": self.lonely, "name_description": "", "MTU": "1500", "other_config": {},
            "bridge": "xbr" + self.lonely[-6:], "managed": True, "tags": []})
        self.vm, snaps = scenario.build_tree(pools[0], self.x, self.lonely, [2 * MiB],
                                             [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2")])
        self.x.xenapi.VIF.create({
            "device": "1", "network": self.network, "VM": self.vm, "MAC": "", "MTU": "1500",
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
            "locking_mode": "network_default", "ipv4_allowed": [], "ipv6_allowed": []})
        self.vm_uuid = self.x.xenapi.VM.get_uuid(self.vm)
        self.snap_uuids = {self.x.xenapi.VM.get_uuid(s) for s in snaps.values()}
        self.tar = metadata.export_metadata(self.src, self.vm_uuid)

    def value(self):
        return metadata.read_ova(self.tar)[0]

    def close(self):
        for owner in self.x.xenapi.VM.get_snapshots(self.vm) + [self.vm]:
            vdis = scenario.disks(self.x, owner).values()
            self.x.xenapi.VM.destroy(owner)
            for vdi in vdis:
                self.x.xenapi.VDI.destroy(vdi)
        self.x.xenapi.network.destroy(self.network)
        self.x.xenapi.session.logout()
        self.src.logout()
        self.dst.logout()


@pytest.fixture(scope="module")
def source(pools):
    made = Source(pools)
    yield made
    made.close()


def test_an_export_reads_and_writes_back_unchanged(source):
    value, members = metadata.read_ova(source.tar)
    uuids = {o["snapshot"]["uuid"] for o in metadata.objects_of(value, "VM")}
    assert uuids == {source.vm_uuid} | source.snap_uuids
    assert metadata.read_ova(metadata.write_ova(value, members)) == (value, members)


def test_an_export_without_ova_xml_is_refused():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("other")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(MetadataError, match="no ova.xml"):
        metadata.read_ova(out.getvalue())


def test_only_the_live_vm_is_born_marked_and_blocked(source):
    value = metadata.born_marked(source.value(), source.vm_uuid)
    by_uuid = {o["snapshot"]["uuid"]: o["snapshot"] for o in metadata.objects_of(value, "VM")}
    live = by_uuid.pop(source.vm_uuid)
    assert live["other_config"][markers.JOB] == source.vm_uuid
    assert live["other_config"][markers.STATE] == "imported"
    assert live["blocked_operations"]["start"] == markers.BLOCK_REASON
    assert len(by_uuid) == 2
    for snap in by_uuid.values():
        assert markers.JOB not in snap["other_config"] and markers.STATE not in snap["other_config"]
        assert "start" not in snap["blocked_operations"]


def test_networks_are_mapped_by_the_map_then_by_name(source):
    dst_networks = source.dst.call("network.get_all_records")
    common = source.x.xenapi.network.get_name_label(scenario.nbd_network(source.x))
    target = [ref for ref, rec in dst_networks.items() if rec["name_label"] == common][0]
    value = source.value()
    chosen = metadata.map_networks(value, {source.lonely: dst_networks[target]["uuid"]}, dst_networks)
    assert chosen == {source.lonely: common, common: common}
    vifs = metadata.objects_of(value, "VIF")
    assert len(vifs) == 4 and {v["snapshot"]["other_config"]["maps_to"] for v in vifs} == {target}
    assert metadata.objects_of(value, "network") == []


def test_a_map_to_a_missing_network_is_refused_by_name(source):
    dst_networks = source.dst.call("network.get_all_records")
    with pytest.raises(MetadataError) as info:
        metadata.map_networks(source.value(), {source.lonely: "no-such-network"}, dst_networks)
    assert "'no-such-network'" in info.value.message and repr(source.lonely) in info.value.message


def test_an_unmatched_network_is_refused_with_the_option_to_use(source):
    dst_networks = source.dst.call("network.get_all_records")
    with pytest.raises(MetadataError) as info:
        metadata.map_networks(source.value(), {}, dst_networks)
    assert repr(source.lonely) in info.value.message and "no namesake" in info.value.message
    assert "sxm_network_map" in info.value.message


def test_host_devices_stay_behind():
    """Only a VM let through with unmovable_devices: warn has any; none reaches the import."""
    value = {"objects": [
        {"class": "VM", "id": "Ref:0", "snapshot": {"uuid": "vm", "other_config": {"pci": "0/0000:03:00.0", "k": "v"},
                                                    "VGPUs": ["Ref:1"], "VUSBs": ["Ref:2"], "attached_PCIs": []}},
        {"class": "VGPU", "id": "Ref:1", "snapshot": {}},
        {"class": "VUSB", "id": "Ref:2", "snapshot": {}},
        {"class": "VDI", "id": "Ref:3", "snapshot": {}}]}
    out = metadata.without_host_devices(value)
    assert [o["class"] for o in out["objects"]] == ["VM", "VDI"]
    vm = out["objects"][0]["snapshot"]
    assert vm["other_config"] == {"k": "v"} and vm["VGPUs"] == [] and vm["VUSBs"] == []


def test_an_import_replaces_the_pending_task_a_killed_run_left(pools, source):
    """A run killed between task.create and its import leaves the task pending for 24 h (XAPI's
    db_gc_util.ml): the next import of the job removes it, and only it."""
    y = client.login(pools[1])
    job = source.vm_uuid
    stale = y.xenapi.task.create(metadata.IMPORT_TASK, metadata.import_description(job))
    other = y.xenapi.task.create(metadata.IMPORT_TASK, metadata.import_description("another"))
    sr = scenario.default_sr(y)
    pairs = {}
    for owner in source.x.xenapi.VM.get_snapshots(source.vm) + [source.vm]:
        for vdi in scenario.disks(source.x, owner).values():
            made = y.xenapi.VDI.create({
                "name_label": "meta-unit", "name_description": "", "SR": sr, "type": "user",
                "virtual_size": source.x.xenapi.VDI.get_virtual_size(vdi), "sharable": False,
                "read_only": False, "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []})
            pairs[source.x.xenapi.VDI.get_uuid(vdi)] = y.xenapi.VDI.get_uuid(made)
    common = source.x.xenapi.network.get_name_label(scenario.nbd_network(source.x))
    tar, dummy = metadata.exported_metadata(source.src, source.dst, job, {source.lonely: common})
    try:
        vm = metadata.import_vm(source.dst, tar, pairs, job)
        assert stale not in y.xenapi.task.get_all()
        assert y.xenapi.task.get_status(other) == "pending"
        assert [ref for ref, r in y.xenapi.task.get_all_records().items()
                if r["status"] == "pending" and r["name_label"] == metadata.IMPORT_TASK] == [other]
        for owner in y.xenapi.VM.get_snapshots(vm) + [vm]:
            y.xenapi.VM.destroy(owner)
    finally:
        y.xenapi.task.destroy(other)
        for dst_uuid in pairs.values():
            y.xenapi.VDI.destroy(y.xenapi.VDI.get_by_uuid(dst_uuid))
        y.xenapi.session.logout()

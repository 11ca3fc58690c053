"""The pool's VMs as inventory facts (the inventory plugin xapi.sxm.pool): what is left out, the
home host rules, the sizes, and the names of hosts and groups."""

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import pool_inventory as inv

NULL = "OpaqueRef:NULL"
GiB = 1 << 30


class FakePool:
    """In-memory records answering the batched calls of pool_inventory.read_records; any other
    call (one per object) fails the test."""

    BATCHED = ("VM.get_all_records", "VBD.get_all_records_where", "VDI.get_all_records",
               "SR.get_all_records", "PBD.get_all_records", "host.get_all_records")

    def __init__(self):
        self.records = {"VM": {}, "VBD": {}, "VDI": {}, "SR": {}, "PBD": {}, "host": {}}
        self.calls = []

    def call(self, name, *args):
        self.calls.append(name)
        assert name in self.BATCHED, name
        cls = name.split(".")[0]
        found = dict(self.records[cls])
        if name == "VBD.get_all_records_where":
            assert args == ('field "type"="Disk"',)
            found = {ref: rec for ref, rec in found.items() if rec["type"] == "Disk"}
        return found

    # ---- building ---------------------------------------------------------------------------
    def add(self, cls, ref, **fields):
        self.records[cls]["OpaqueRef:" + ref] = fields
        return "OpaqueRef:" + ref

    def host(self, name):
        return self.add("host", name, uuid="uuid-" + name, name_label=name)

    def sr(self, name, hosts, label=None):
        sr = self.add("SR", name, uuid="uuid-" + name, name_label=label or name)
        for host in hosts:
            self.add("PBD", "pbd-%s-%s" % (name, host), SR=sr, host=host, currently_attached=True)
        return sr

    def vm(self, name, power="Halted", resident=NULL, affinity=NULL, tags=(), suspend=NULL, **flags):
        fields = dict(uuid="uuid-" + name, name_label=name, power_state=power, resident_on=resident,
                      affinity=affinity, tags=list(tags), suspend_VDI=suspend, is_a_template=False,
                      is_a_snapshot=False, is_control_domain=False, snapshot_of=NULL)
        fields.update(flags)
        return self.add("VM", name, **fields)

    def vdi(self, name, sr, size=GiB, used=GiB // 4, snapshot_of=NULL):
        return self.add("VDI", name, uuid="uuid-" + name, SR=sr, virtual_size=str(size),
                        physical_utilisation=str(used), is_a_snapshot=snapshot_of != NULL,
                        snapshot_of=snapshot_of)

    def disk(self, vm, vdi, userdevice="0", kind="Disk"):
        return self.add("VBD", "vbd-%s-%s" % (vm, vdi), VM=vm, VDI=vdi, userdevice=userdevice, type=kind)

    def snapshot(self, vm, name, disks, suspend=NULL):
        """A snapshot VM of ``vm`` with a snapshot VDI of each of ``disks``."""
        snap = self.vm(name, is_a_snapshot=True, is_a_template=True, snapshot_of=vm, suspend=suspend)
        for index, disk in enumerate(disks):
            rec = self.records["VDI"][disk]
            copy = self.vdi("%s-%d" % (name, index), rec["SR"], int(rec["virtual_size"]),
                            int(rec["physical_utilisation"]) // 2, snapshot_of=disk)
            self.disk(snap, copy, str(index))
        return snap


def facts_by_name(pool):
    vms = inv.list_vms(pool)
    return {vm["sxm_name"]: vm for vm in vms}


@pytest.fixture
def pool():
    """Two hosts with a local SR each, a shared SR on both; dom0s and a stock template."""
    p = FakePool()
    h1, h2 = p.host("h1"), p.host("h2")
    p.local1, p.local2 = p.sr("local1", [h1], "Local storage"), p.sr("local2", [h2], "Local storage")
    p.shared = p.sr("nfs", [h1, h2], "NFS storage")
    p.h1, p.h2 = h1, h2
    p.vm("Control domain on host: h1", power="Running", resident=h1, is_control_domain=True)
    p.vm("Control domain on host: h2", power="Running", resident=h2, is_control_domain=True)
    p.vm("Debian Bookworm 12", is_a_template=True)
    return p


def test_only_vms_are_listed_with_six_batched_calls(pool):
    vm = pool.vm("web")
    pool.disk(vm, pool.vdi("web-0", pool.local1))
    pool.snapshot(vm, "web-snap", ["OpaqueRef:web-0"])
    template = pool.vm("my template", is_a_template=True)
    pool.disk(template, pool.vdi("tmpl-0", pool.local1))
    for index in range(50):
        pool.vm("bulk-%d" % index)
    facts = facts_by_name(pool)
    assert "web" in facts and len(facts) == 51
    assert not {"Control domain on host: h1", "Control domain on host: h2", "Debian Bookworm 12",
                "my template", "web-snap"} & set(facts)
    assert sorted(pool.calls) == sorted(FakePool.BATCHED)
    assert facts["web"]["sxm_snapshot_count"] == 1


def test_facts_carry_uuids_and_names_never_refs(pool):
    vm = pool.vm("db", power="Running", resident=pool.h2, tags=["prod", "db"])
    pool.disk(vm, pool.vdi("db-1", pool.local2, size=2 * GiB), "1")
    pool.disk(vm, pool.vdi("db-0", pool.shared, size=GiB), "0")
    pool.disk(vm, NULL, "3", kind="CD")
    facts = facts_by_name(pool)["db"]
    assert facts == {
        "sxm_uuid": "uuid-db", "sxm_name": "db", "sxm_power_state": "running",
        "sxm_resident_host": "h2", "sxm_home_host": "h2", "sxm_home_host_uuid": "uuid-h2",
        "sxm_tags": ["prod", "db"], "sxm_srs": ["uuid-local2", "uuid-nfs"],
        "sxm_sr_names": ["Local storage", "NFS storage"], "sxm_snapshot_count": 0,
        "sxm_disk_bytes": 3 * GiB, "sxm_bytes_to_move": GiB // 2}
    assert "OpaqueRef" not in repr(facts)


@pytest.mark.parametrize("power", ["Halted", "Running", "Suspended", "Paused"])
def test_power_states_are_lower_case(pool, power):
    running = power in ("Running", "Paused")
    pool.vm("vm", power=power, resident=pool.h1 if running else NULL)
    facts = facts_by_name(pool)["vm"]
    assert facts["sxm_power_state"] == power.lower()
    assert facts["sxm_resident_host"] == ("h1" if running else None)


def test_home_host_is_the_resident_host_first(pool):
    vm = pool.vm("vm", power="Running", resident=pool.h1, affinity=pool.h2)
    pool.disk(vm, pool.vdi("vm-0", pool.shared))
    assert facts_by_name(pool)["vm"]["sxm_home_host"] == "h1"


def test_home_host_is_the_affinity_host_of_a_halted_vm(pool):
    vm = pool.vm("vm", affinity=pool.h2)
    pool.disk(vm, pool.vdi("vm-0", pool.shared))
    pool.vm("diskless", affinity=pool.h1)
    facts = facts_by_name(pool)
    assert facts["vm"]["sxm_home_host"] == "h2" and facts["vm"]["sxm_resident_host"] is None
    assert facts["diskless"]["sxm_home_host"] == "h1"


def test_an_affinity_host_that_cannot_see_the_disks_is_not_home(pool):
    """VM.start places a VM on its affinity host only when that host sees every disk."""
    vm = pool.vm("vm", affinity=pool.h2)
    pool.disk(vm, pool.vdi("vm-0", pool.local1))
    assert facts_by_name(pool)["vm"]["sxm_home_host"] == "h1"


def test_home_host_of_local_disks_is_their_host(pool):
    vm = pool.vm("vm")
    pool.disk(vm, pool.vdi("vm-0", pool.local2), "0")
    pool.disk(vm, pool.vdi("vm-1", pool.local2), "1")
    facts = facts_by_name(pool)["vm"]
    assert facts["sxm_home_host"] == "h2" and facts["sxm_home_host_uuid"] == "uuid-h2"
    assert facts["sxm_srs"] == ["uuid-local2"]


@pytest.mark.parametrize("where", ["shared", "local1+local2", "local1+shared", "none"])
def test_no_home_host_when_the_disks_do_not_name_one(pool, where):
    vm = pool.vm("vm")
    srs = {"shared": [pool.shared], "local1+local2": [pool.local1, pool.local2],
           "local1+shared": [pool.local1, pool.shared], "none": []}[where]
    for index, sr in enumerate(srs):
        pool.disk(vm, pool.vdi("vm-%d" % index, sr), str(index))
    assert facts_by_name(pool)["vm"]["sxm_home_host"] is None


def test_a_detached_pbd_does_not_count(pool):
    """An SR attached to h1 only (its PBD on h2 unplugged) is local to h1 for now."""
    sr = pool.sr("iscsi", [pool.h1, pool.h2])
    pool.records["PBD"]["OpaqueRef:pbd-iscsi-OpaqueRef:h2"]["currently_attached"] = False
    vm = pool.vm("vm")
    pool.disk(vm, pool.vdi("vm-0", sr))
    assert facts_by_name(pool)["vm"]["sxm_home_host"] == "h1"


def test_bytes_to_move_count_every_distinct_vdi_of_the_tree(pool):
    """Disks of the VM and of its snapshots, a VDI snapshot that belongs to no snapshot VM,
    the suspend images of the VM and of a checkpoint; a disk shared by two snapshots once;
    another VM's disks never."""
    vm = pool.vm("vm", power="Suspended", suspend=pool.vdi("image", pool.local1, used=3000))
    disk = pool.vdi("vm-0", pool.local1, size=10 * GiB, used=1000)
    pool.disk(vm, disk)
    pool.snapshot(vm, "s1", [disk])                                   # 500
    pool.snapshot(vm, "s2", [disk], suspend=pool.vdi("checkpoint", pool.local1, used=70))
    pool.disk("OpaqueRef:s2", "OpaqueRef:s1-0", "7")                  # s1-0 again: once
    pool.vdi("loose", pool.local1, used=9, snapshot_of=disk)
    other = pool.vm("other")
    pool.disk(other, pool.vdi("other-0", pool.local1, used=100000))
    facts = facts_by_name(pool)["vm"]
    assert facts["sxm_bytes_to_move"] == 3000 + 1000 + 500 + 500 + 70 + 9
    assert facts["sxm_disk_bytes"] == 10 * GiB and facts["sxm_snapshot_count"] == 2
    assert facts["sxm_power_state"] == "suspended"


def test_an_unknown_physical_utilisation_counts_the_virtual_size(pool):
    vm = pool.vm("vm")
    pool.disk(vm, pool.vdi("vm-0", pool.local1, size=GiB, used=-1))
    assert facts_by_name(pool)["vm"]["sxm_bytes_to_move"] == GiB


def test_read_inventory_names_every_host_and_sr(pool):
    data = inv.read_inventory(pool)
    assert data["hosts"] == {"uuid-h1": "h1", "uuid-h2": "h2"}
    assert data["srs"] == {"uuid-local1": "Local storage", "uuid-local2": "Local storage",
                           "uuid-nfs": "NFS storage"}
    assert data["vms"] == []


@pytest.mark.parametrize("name, safe", [
    ("Local storage", "local_storage"), ("Local storage (SMAPIv3)", "local_storage_smapiv3"),
    ("prod", "prod"), ("Prod/EU-west 1", "prod_eu_west_1"), ("__x__", "x"), ("a__b", "a__b"),
    ("été", "t"), ("***", "unnamed"), ("", "unnamed"), ("running", "running")])
def test_safe_group_name(name, safe):
    assert inv.safe_group_name(name) == safe


def test_names_that_collide_get_a_uuid_prefix():
    names = inv.unique_names({"1234567890ab": "Local storage", "abcdef012345": "local-storage",
                              "ffffffff0000": "NFS"}, safe=True)
    assert names == {"1234567890ab": "local_storage_12345678", "abcdef012345": "local_storage_abcdef01",
                     "ffffffff0000": "nfs"}


def test_inventory_hostnames_are_unique():
    vms = [{"sxm_uuid": "aaaaaaaa-1", "sxm_name": "web"}, {"sxm_uuid": "bbbbbbbb-2", "sxm_name": "web"},
           {"sxm_uuid": "cccccccc-3", "sxm_name": "db 1"}, {"sxm_uuid": "dddddddd-4", "sxm_name": ""}]
    assert inv.inventory_names(vms) == {"aaaaaaaa-1": "web_aaaaaaaa", "bbbbbbbb-2": "web_bbbbbbbb",
                                        "cccccccc-3": "db 1", "dddddddd-4": "dddddddd-4"}


def test_groups_of_a_vm(pool):
    vm = pool.vm("vm", power="Running", resident=pool.h2, tags=["Prod", "prod", "web tier"])
    pool.disk(vm, pool.vdi("vm-0", pool.local2), "0")
    pool.disk(vm, pool.vdi("vm-1", pool.shared), "1")
    data = inv.read_inventory(pool)
    hosts, srs = inv.unique_names(data["hosts"], safe=True), inv.unique_names(data["srs"], safe=True)
    assert inv.groups_of(data["vms"][0], hosts, srs) == [
        "xapi_host_h2", "xapi_tag_prod", "xapi_tag_web_tier", "xapi_sr_local_storage_uuid_loc",
        "xapi_sr_nfs_storage", "xapi_power_running"]


def test_a_vm_without_home_host_has_no_host_group(pool):
    vm = pool.vm("vm")
    pool.disk(vm, pool.vdi("vm-0", pool.shared))
    data = inv.read_inventory(pool)
    groups = inv.groups_of(data["vms"][0], inv.unique_names(data["hosts"], safe=True),
                           inv.unique_names(data["srs"], safe=True))
    assert groups == ["xapi_sr_nfs_storage", "xapi_power_halted"]

"""The snapshot tree model and the mirror order (DESIGN.md steps 2 and 3)."""

from ansible_collections.xapi.sxm.plugins.module_utils import tree as treemod

NULL = "OpaqueRef:NULL"


class FakeConnection:
    """Answers the batched calls of tree.discover from in-memory records."""

    def __init__(self, vms, vbds, vdis):
        self.vms, self.vbds, self.vdis = vms, vbds, vdis
        self.calls = []

    def call(self, name, *args):
        self.calls.append(name)
        if name == "VM.get_record":
            return self.vms[args[0]]
        if name == "VM.get_all_records_where":
            return {r: v for r, v in self.vms.items() if v["is_a_snapshot"]}
        if name == "VBD.get_all_records_where":
            return dict(self.vbds)
        if name == "VDI.get_record":
            return self.vdis[args[0]]
        if name == "VDI.get_all_records_where":
            return dict(self.vdis)
        raise AssertionError(name)


def vm(uuid, parent, time, snapshot=True):
    return {"uuid": uuid, "name_label": uuid, "name_description": "", "snapshot_time": time,
            "parent": parent, "is_a_snapshot": snapshot, "power_state": "Halted",
            "suspend_VDI": NULL}


def build(disks_of):
    """base -> v1 -> {v2-abandoned, v2 -> VM}; disks_of: node -> [userdevice]."""
    vms = {
        "R:base": vm("base", NULL, "20260101T00:00:01Z"),
        "R:v1": vm("v1", "R:base", "20260101T00:00:02Z"),
        "R:v2a": vm("v2a", "R:v1", "20260101T00:00:03Z"),
        "R:v2": vm("v2", "R:v1", "20260101T00:00:04Z"),
        "R:vm": vm("vm", "R:v2", "19700101T00:00:00Z", snapshot=False),
    }
    vbds, vdis = {}, {}
    for node, devices in disks_of.items():
        for dev in devices:
            vdi = "D:%s:%s" % (node, dev)
            vbds["B:%s:%s" % (node, dev)] = {"VM": "R:" + node, "userdevice": dev, "VDI": vdi,
                                             "type": "Disk", "empty": False}
            vdis[vdi] = {"uuid": vdi, "name_label": vdi, "virtual_size": "1048576",
                         "physical_utilisation": "0", "SR": "S", "cbt_enabled": False,
                         "snapshot_time": "x"}
    vbds["B:cd"] = {"VM": "R:vm", "userdevice": "3", "VDI": NULL, "type": "CD", "empty": True}
    return FakeConnection(vms, vbds, vdis)


def test_walk_puts_inactive_branches_first_and_active_last():
    conn = build({"base": ["0"], "v1": ["0"], "v2a": ["0"], "v2": ["0"], "vm": ["0"]})
    t = treemod.discover(conn, "R:vm")
    assert [n.uuid for n in t.walk("0")] == ["base", "v1", "v2a", "v2"]
    assert [n.uuid for n in t.active_path()] == ["base", "v1", "v2"]
    assert not t.nodes["R:v2a"].active and t.nodes["R:v2"].active


def test_a_disk_added_later_skips_older_snapshots_and_cd_drives_are_ignored():
    conn = build({"base": ["0"], "v1": ["0"], "v2a": ["0"], "v2": ["0", "1"], "vm": ["0", "1"]})
    t = treemod.discover(conn, "R:vm")
    assert t.userdevices() == ["0", "1"]
    assert [n.uuid for n in t.walk("1")] == ["v2"]
    assert "3" not in t.vm.disks


def test_discovery_uses_a_handful_of_calls():
    """DESIGN.md step 2: batched get_all_records_where calls, not one call per object."""
    conn = build({"base": ["0"], "v1": ["0"], "v2a": ["0"], "v2": ["0"], "vm": ["0"]})
    treemod.discover(conn, "R:vm")
    assert len(conn.calls) <= 5


def test_tree_dict_lists_parents_before_children():
    conn = build({"base": ["0"], "v1": ["0"], "v2a": ["0"], "v2": ["0"], "vm": ["0"]})
    d = treemod.discover(conn, "R:vm").to_dict()
    order = [n["uuid"] for n in d["nodes"]]
    assert order.index("v1") < order.index("v2a") and order.index("v2") < order.index("vm")
    assert d["active_path"] == ["base", "v1", "v2"]


def add_vdi(conn, ref, snapshot_of, time, vtype="user"):
    conn.vdis[ref] = {"uuid": ref, "name_label": ref, "virtual_size": "1048576", "physical_utilisation": "0",
                      "SR": "S", "cbt_enabled": True, "snapshot_time": time, "is_a_snapshot": True,
                      "snapshot_of": snapshot_of, "type": vtype}


def test_loose_vdi_snapshots_are_found_through_snapshot_of_and_walked_after_the_nodes():
    """A VDI snapshot no snapshot VM holds: of the VM's disk, of a VDI that no longer exists
    but a snapshot's disk was a snapshot of (dangling), metadata-only (not walked); a snapshot
    of some other disk is not ours."""
    conn = build({"base": ["0"], "v1": ["0"], "v2a": ["0"], "v2": ["0"], "vm": ["0"]})
    conn.vdis["D:v1:0"].update(snapshot_of="D:gone", is_a_snapshot=True)
    add_vdi(conn, "L:late", "D:vm:0", "20260101T00:00:09Z")
    add_vdi(conn, "L:early", "D:gone", "20260101T00:00:05Z")
    add_vdi(conn, "L:meta", "D:vm:0", "20260101T00:00:06Z", vtype="cbt_metadata")
    add_vdi(conn, "L:other", "D:someone-else", "20260101T00:00:07Z")
    add_vdi(conn, "L:held", "D:vm:0", "20260101T00:00:08Z")
    conn.vdis["L:held"]["VBDs"] = ["B:another-vm-snapshot"]
    t = treemod.discover(conn, "R:vm")
    assert [d.uuid for d in t.loose["0"]] == ["L:early", "L:meta", "L:late"]
    assert [n.uuid for n in t.mirror_walk("0")] == ["base", "v1", "v2a", "v2", "L:early", "L:late"]
    assert t.dangling == {"D:gone"}
    kinds = sorted((row["layout"], row.get("vdi_uuid", "")) for row in t.layouts())
    assert kinds == [("CBT metadata only", "L:meta"), ("VDI snapshot without a VM snapshot", "L:early"),
                     ("VDI snapshot without a VM snapshot", "L:late"), ("snapshot_of dangles", "")]
    assert [row["vdi_uuids"] for row in t.layouts() if row["layout"] == "snapshot_of dangles"] == \
        [["D:v1:0", "L:early"]]
    assert [d["vdi_uuid"] for d in t.to_dict()["loose_snapshots"]] == ["L:early", "L:meta", "L:late"]


def test_vdis_on_a_second_sr_cost_one_call_for_the_sr():
    conn = build({"base": ["0", "1"], "v1": ["0", "1"], "v2a": ["0"], "v2": ["0"], "vm": ["0", "1"]})
    for ref, rec in conn.vdis.items():
        if ref.endswith(":1"):
            rec["SR"] = "S2"

    def by_sr(name, *args):
        if name == "VDI.get_all_records_where":
            conn.calls.append(name)
            sr = args[0].split('"')[3]
            return {r: v for r, v in conn.vdis.items() if v["SR"] == sr}
        return FakeConnection.call(conn, name, *args)
    conn.call = by_sr
    t = treemod.discover(conn, "R:vm")
    assert sorted(t.vm.disks) == ["0", "1"] and [n.uuid for n in t.walk("1")] == ["base", "v1"]
    assert conn.calls.count("VDI.get_all_records_where") == 2 and conn.calls.count("VDI.get_record") == 2

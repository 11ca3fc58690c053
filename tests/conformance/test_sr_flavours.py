"""Hidden VDI setters and their guards (fact 7, XAPI-FACTS §3) and the two SR flavours'
SR.scan (fact 8, §2.2): SMAPIv1 keeps DB values, SMAPIv3 rewrites them from volume keys."""


from xapisim.testing import error_of
from xapisim import scenario

MiB = 1 << 20
NULL = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"


def sr_of_type(x, sr_type):
    return [sr for sr, rec in x.xenapi.SR.get_all_records().items() if rec["type"] == sr_type][0]


def claim_sm_session(x, sr):
    """What an SM backend's session carries: other_config _sm_session = the SR ref."""
    x.xenapi.session.add_to_other_config(x._session, "_sm_session", sr)


def test_hidden_setters_guarded(connect):
    """Fact 7: roles=[] -> RBAC_PERMISSION_DENIED for pool-admin; root without _sm_session ->
    PERMISSION_DENIED [""]; root with _sm_session = the VDI's SR may write. The same guard
    applies to the public VDI.set_sharable / set_read_only."""
    root = connect(0, "root")
    admin = connect(0, "pool-admin")
    sr = scenario.default_sr(root)
    vm = scenario.create_vm(root, "guarded", [2 * MiB])
    vdi = scenario.disks(root, vm)["0"]
    other = scenario.disks(root, scenario.create_vm(root, "other", [2 * MiB]))["0"]
    denied = error_of(admin.xenapi.VDI.set_snapshot_of, vdi, other)
    assert denied[0] == "RBAC_PERMISSION_DENIED" and denied[1] == "vdi.set_snapshot_of"
    claim_sm_session(admin, sr)
    assert error_of(admin.xenapi.VDI.set_is_a_snapshot, vdi, True)[0] == "RBAC_PERMISSION_DENIED"
    for call, value in ((root.xenapi.VDI.set_snapshot_of, other),
                        (root.xenapi.VDI.set_is_a_snapshot, True),
                        (root.xenapi.VDI.set_snapshot_time, "20240101T00:00:00Z"),
                        (root.xenapi.VDI.set_sharable, True),
                        (root.xenapi.VDI.set_read_only, True),
                        (root.xenapi.VDI.set_cbt_enabled, True)):
        assert error_of(call, vdi, value) == ["PERMISSION_DENIED", ""]
    claim_sm_session(root, sr_of_type(root, "file-v3"))
    assert error_of(root.xenapi.VDI.set_snapshot_of, vdi, other) == ["PERMISSION_DENIED", ""]
    root.xenapi.session.remove_from_other_config(root._session, "_sm_session")
    claim_sm_session(root, sr)
    root.xenapi.VDI.set_snapshot_of(vdi, other)
    root.xenapi.VDI.set_is_a_snapshot(vdi, True)
    root.xenapi.VDI.set_snapshot_time(vdi, "20240101T00:00:00Z")
    rec = root.xenapi.VDI.get_record(vdi)
    assert (rec["snapshot_of"], rec["is_a_snapshot"]) == (other, True)
    assert rec["snapshot_time"].value == "20240101T00:00:00Z"
    assert vdi in root.xenapi.VDI.get_snapshots(other)


def test_pool_admin_with_sm_session_may_set_sharable(connect):
    """Fact 7: set_sharable is public (RBAC lets pool-admin through); only the _sm_session
    guard stands, so a pool-admin session that carries it succeeds."""
    admin = connect(0, "pool-admin")
    sr = scenario.default_sr(admin)
    vdi = scenario.disks(admin, scenario.create_vm(admin, "sharable", [2 * MiB]))["0"]
    assert error_of(admin.xenapi.VDI.set_sharable, vdi, True) == ["PERMISSION_DENIED", ""]
    claim_sm_session(admin, sr)
    admin.xenapi.VDI.set_sharable(vdi, True)
    assert admin.xenapi.VDI.get_sharable(vdi) is True


def set_snapshot_fields(x, vdi, snapshot_of, when):
    x.xenapi.VDI.set_snapshot_of(vdi, snapshot_of)
    x.xenapi.VDI.set_is_a_snapshot(vdi, True)
    x.xenapi.VDI.set_snapshot_time(vdi, when)


def test_scan_smapiv1_keeps_db_writes(connect):
    """Fact 8: on the SMAPIv1 (ext) SR, SR.scan keeps what the hidden setters wrote."""
    root = connect(0, "root")
    sr = sr_of_type(root, "ext")
    claim_sm_session(root, sr)
    source = scenario.disks(root, scenario.create_vm(root, "v1-src", [2 * MiB], sr=sr))["0"]
    target = scenario.disks(root, scenario.create_vm(root, "v1-dst", [2 * MiB], sr=sr))["0"]
    set_snapshot_fields(root, target, source, "20230405T06:07:08Z")
    root.xenapi.SR.scan(sr)
    rec = root.xenapi.VDI.get_record(target)
    assert (rec["snapshot_of"], rec["is_a_snapshot"]) == (source, True)
    assert rec["snapshot_time"].value == "20230405T06:07:08Z"


def test_scan_smapiv3_restores_volume_keys(connect):
    """Fact 8 / §2.2: on the SMAPIv3 SR the backend's volume keys win: a created volume
    (false/none/epoch) loses the DB-only snapshot fields at the next scan; a real snapshot
    keeps its own."""
    root = connect(0, "root")
    sr = sr_of_type(root, "file-v3")
    claim_sm_session(root, sr)
    vm = scenario.create_vm(root, "v3-src", [2 * MiB], sr=sr)
    source = scenario.disks(root, vm)["0"]
    real = scenario.disks(root, root.xenapi.VM.snapshot(vm, "real"))["0"]
    real_time = root.xenapi.VDI.get_snapshot_time(real).value
    target = scenario.disks(root, scenario.create_vm(root, "v3-dst", [2 * MiB], sr=sr))["0"]
    set_snapshot_fields(root, target, source, "20230405T06:07:08Z")
    root.xenapi.VDI.set_snapshot_of(real, target)
    root.xenapi.SR.scan(sr)
    rec = root.xenapi.VDI.get_record(target)
    assert (rec["snapshot_of"], rec["is_a_snapshot"]) == (NULL, False)
    assert rec["snapshot_time"].value == EPOCH
    rec = root.xenapi.VDI.get_record(real)
    assert (rec["snapshot_of"], rec["is_a_snapshot"]) == (source, True)
    assert rec["snapshot_time"].value == real_time


def test_scan_after_revert(connect):
    """Fact 8 with fact 4: revert re-points snapshot_of in the DB only. SMAPIv1 keeps that
    after a scan; on SMAPIv3 the volume keys still name the destroyed disk, so the next scan
    leaves the snapshots' snapshot_of NULL."""
    root = connect(0, "root")
    results = {}
    for sr_type in ("ext", "file-v3"):
        sr = sr_of_type(root, sr_type)
        vm = scenario.create_vm(root, "revert-" + sr_type, [2 * MiB], sr=sr)
        snap = root.xenapi.VM.snapshot(vm, "s")
        root.xenapi.VM.revert(snap)
        new_disk = scenario.disks(root, vm)["0"]
        snap_disk = scenario.disks(root, snap)["0"]
        assert root.xenapi.VDI.get_snapshot_of(snap_disk) == new_disk
        root.xenapi.SR.scan(sr)
        results[sr_type] = (root.xenapi.VDI.get_snapshot_of(snap_disk) == new_disk,
                            root.xenapi.VDI.get_snapshot_of(snap_disk),
                            root.xenapi.VDI.get_is_a_snapshot(snap_disk))
    assert results["ext"][0] is True
    assert results["file-v3"][1:] == (NULL, True)
    # reverting again to a snapshot whose disk lost its snapshot_of touches no other VDI
    bystander = scenario.disks(root, scenario.create_vm(root, "bystander", [2 * MiB]))["0"]
    root.xenapi.VM.revert(snap)
    assert root.xenapi.VDI.get_snapshot_of(bystander) == NULL
    assert root.xenapi.VDI.get_snapshot_of(snap_disk) == NULL

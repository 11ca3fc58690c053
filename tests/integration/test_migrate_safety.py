"""Issue 3 and the project's standards: check mode touches nothing; bad input gets a clear error
and loses nothing. (A run that failed half way is continued by the next one: tests/faults.)"""

import uuid

from xapisim import scenario

from checks import inventory
from harness import pool_vars

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"),
        ("write", "c"), ("snap", "s3"), ("write", "d")]


def build(pools, x, prefix):
    vm, _ = scenario.build_tree(pools[0], x, "%s-%s" % (prefix, uuid.uuid4().hex[:6]), [8 * MiB, 4 * MiB], TREE)
    return x.xenapi.VM.get_uuid(vm)


def test_check_mode_shows_the_plan_and_touches_nothing(pools, connect, migrate):
    src, dst = connect(0), connect(1)
    vm_uuid = build(pools, src, "check")
    before = inventory(src), inventory(dst)
    stats, _ = migrate(vm_uuid, check=True)
    assert stats["changed"] >= 1 and stats["failed"] == 0
    assert (inventory(src), inventory(dst)) == before


def test_unmatched_network_is_an_error_not_a_new_network(pools, connect, migrate):
    """XAPI's import would silently create an unconnected network; we refuse and say how to
    map it, before any data moves."""
    src, dst = connect(0), connect(1)
    net = src.xenapi.network.create({"name_label": "only-on-source-%s" % uuid.uuid4().hex[:4],
                                     "name_description": "", "MTU": "1500", "other_config": {}})
    vm = scenario.create_vm(src, "net-%s" % uuid.uuid4().hex[:6], [4 * MiB], network=net)
    src.xenapi.VM.snapshot(vm, "s1")
    before = inventory(src), inventory(dst)
    stats, output = migrate(src.xenapi.VM.get_uuid(vm), expect_failure=True)
    assert "sxm_network_map" in output and "only-on-source" in output
    assert inventory(src) == before[0]
    assert inventory(dst)[0] == before[1][0]
    dst_networks = {r["name_label"] for r in dst.xenapi.network.get_all_records().values()}
    stats, result = migrate(src.xenapi.VM.get_uuid(vm),
                            sxm_network_map={src.xenapi.network.get_name_label(net):
                                             "Pool-wide network associated with eth0"})
    assert result["network_mapping"] == {src.xenapi.network.get_name_label(net):
                                         "Pool-wide network associated with eth0"}
    assert {r["name_label"] for r in dst.xenapi.network.get_all_records().values()} == dst_networks


def test_wrong_password_and_unknown_vm(pools, connect, migrate):
    src, dst = connect(0), connect(1)
    vm_uuid = build(pools, src, "creds")
    before = inventory(src), inventory(dst)
    bad = {"url": pools[1]["url"], "username": "root", "password": "not-the-password",
           "ca_path": pools[1]["ca_file"]}
    stats, output = migrate(vm_uuid, expect_failure=True, sxm_destination=bad)
    assert "wrong username or password" in output
    assert "not-the-password" not in output
    stats, output = migrate("no-such-vm", expect_failure=True)
    assert "no VM named or with uuid 'no-such-vm'" in output
    assert (inventory(src), inventory(dst)) == before


def test_source_and_destination_the_same_pool_is_refused(pools, connect, migrate):
    """The same pool twice would find its own copy and could dispose of it: refused before
    anything is read or changed."""
    src = connect(0)
    vm_uuid = build(pools, src, "same")
    before = inventory(src)
    stats, output = migrate(vm_uuid, expect_failure=True, sxm_destination=pool_vars(pools[0]),
                            sxm_source_disposition="destroy")
    assert "the source and the destination are the same pool" in output
    assert inventory(src) == before

"""The inventory plugin xapi.sxm.pool, run by ansible-inventory against simulated pools: the VMs
as hosts (never a control domain, a template or a snapshot), their facts, the built-in groups
by home host, tag, SR and power state, keyed_groups / groups / compose, the environment
fallbacks, the cache, and the password in no output. Every VM a test makes is removed after it
(the pools are shared by the other tests)."""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest
import yaml

from xapisim import client, scenario
from xapisim.testing import set_guest, xapisim

from checks import inventory
from harness import REPO

MiB = 1 << 20
NULL = "OpaqueRef:NULL"
BIN = os.path.dirname(sys.executable)
CONNECTION_ENV = ("XAPI_URL", "XAPI_USERNAME", "XAPI_PASSWORD", "XAPI_VALIDATE_CERTS", "XAPI_CA_PATH")


def ansible(tool, *args, env=None):
    """Run an ansible command line of .venv with the repository's ansible.cfg and the plugin
    enabled; an inventory source that fails to parse fails the command."""
    base = {k: v for k, v in os.environ.items() if k not in CONNECTION_ENV}
    base.update(ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_INVENTORY_ENABLED="xapi.sxm.pool",
                ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true")
    base.update(env or {})
    return subprocess.run([os.path.join(BIN, tool)] + list(args), cwd=REPO, env=base,
                          capture_output=True, text=True)


def plain(value):
    """ansible-inventory's JSON with ansible-core 2.19's ``{"__ansible_unsafe": ...}`` wrappers
    taken off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def inventory_list(config, env=None, *extra):
    proc = ansible("ansible-inventory", "-i", str(config), "--list", *extra, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return plain(json.loads(proc.stdout)), proc.stdout + proc.stderr


def members(listed):
    """{group: set of its hosts} of ``ansible-inventory --list``."""
    return {name: set(group.get("hosts", [])) for name, group in listed.items() if name != "_meta"}


def graph(config):
    """{group: set of its direct hosts} of ``ansible-inventory --graph``, and the output."""
    proc = ansible("ansible-inventory", "-i", str(config), "--graph")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    groups, stack = {}, []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        # "@all:", then "  |--@group:" or "  |  |--host", three columns per level
        at = line.find("|--")
        depth, item = (at // 3 + 1, line[at + 3:]) if at >= 0 else (0, line.strip())
        del stack[depth:]
        if item.startswith("@") and item.endswith(":"):
            groups.setdefault(item[1:-1], set())
            stack.append(item[1:-1])
        elif stack:
            groups[stack[-1]].add(item)
    return groups, proc.stdout + proc.stderr


def write_config(path, pool, **options):
    config = {"plugin": "xapi.sxm.pool", "url": pool["url"], "username": pool["username"],
              "password": pool["password"], "ca_path": pool["ca_file"]}
    config.update(options)
    config = {k: v for k, v in config.items() if v is not None}
    path.write_text(yaml.safe_dump(config))
    return path


def remove_vm(x, vm):
    """A VM (or template) with its snapshots, their disks and memory images."""
    if x.xenapi.VM.get_power_state(vm) != "Halted":
        x.xenapi.VM.hard_shutdown(vm)
    vdis = set()
    for owner in x.xenapi.VM.get_snapshots(vm) + [vm]:
        vdis.update(scenario.disks(x, owner).values())
        image = x.xenapi.VM.get_suspend_VDI(owner)
        if image != NULL:
            vdis.add(image)
        x.xenapi.VM.destroy(owner)
    for vdi in vdis:
        x.xenapi.VDI.destroy(vdi)


@pytest.fixture
def made(connect):
    """A list the test appends the VMs it makes to; they are removed afterwards, and the pool
    then holds exactly what it held before."""
    x = connect(0)
    before = inventory(x)
    vms = []
    yield vms
    for vm in vms:
        remove_vm(x, vm)
    assert inventory(x) == before


def expected_facts(x, vm):
    """The facts of a VM as the plugin must give them, read object by object."""
    rec = x.xenapi.VM.get_record(vm)
    disks = list(scenario.disks(x, vm).values())
    srs = sorted({x.xenapi.VDI.get_SR(v) for v in disks}, key=x.xenapi.SR.get_uuid)
    moved = set()
    for owner in [vm] + rec["snapshots"]:
        moved.update(scenario.disks(x, owner).values())
        image = x.xenapi.VM.get_suspend_VDI(owner)
        if image != NULL:
            moved.add(image)
    resident = x.xenapi.host.get_name_label(rec["resident_on"]) if rec["resident_on"] != NULL else None
    home = x.xenapi.host.get_record(x.xenapi.PBD.get_host(x.xenapi.SR.get_PBDs(srs[0])[0]))
    return {"sxm_uuid": rec["uuid"], "sxm_name": rec["name_label"],
            "sxm_power_state": rec["power_state"].lower(), "sxm_resident_host": resident,
            "sxm_home_host": home["name_label"], "sxm_home_host_uuid": home["uuid"],
            "sxm_tags": rec["tags"], "sxm_srs": [x.xenapi.SR.get_uuid(s) for s in srs],
            "sxm_sr_names": [x.xenapi.SR.get_name_label(s) for s in srs],
            "sxm_snapshot_count": len(rec["snapshots"]),
            "sxm_disk_bytes": sum(int(x.xenapi.VDI.get_virtual_size(v)) for v in disks),
            "sxm_bytes_to_move": sum(int(x.xenapi.VDI.get_physical_utilisation(v)) for v in moved)}


def sr_named(x, label):
    found = [ref for ref, rec in x.xenapi.SR.get_all_records().items() if rec["name_label"] == label]
    assert len(found) == 1, "this test expects one SR named %r on the pool" % label
    return found[0]


def test_inventory_plugin_lists_vms_with_facts_and_groups(pools, connect, made, tmp_path):
    x = connect(0)
    p = "inv%s" % uuid.uuid4().hex[:6]
    v3 = sr_named(x, "Local storage (SMAPIv3)")
    sr_named(x, "Local storage")
    web, _ = scenario.build_tree(pools[0], x, p + "-web", [4 * MiB, 2 * MiB],
                                 [("write", "a"), ("snap", p + "-s1"), ("write", "b")])
    made.append(web)
    x.xenapi.VM.set_tags(web, [p + " Prod", "Web"])
    x.xenapi.VM.start(web, False, False)
    db, _ = scenario.build_tree(pools[0], x, p + "-db", [4 * MiB],
                                [("write", "a"), ("snap", p + "-s1"), ("write", "b"), ("snap", p + "-s2")],
                                sr=v3)
    made.append(db)
    x.xenapi.VM.set_tags(db, [p + "-prod", p + "-db"])
    twins = [scenario.create_vm(x, p + "-twin", [2 * MiB]) for _ in range(2)]
    made.extend(twins)
    x.xenapi.VM.start(twins[1], False, False)
    set_guest(pools[0], x, twins[1], tools=True, ack_timeout=1)
    x.xenapi.VM.suspend(twins[1])
    template = scenario.create_vm(x, p + "-template", [2 * MiB])
    made.append(template)
    x.xenapi.VM.set_is_a_template(template, True)

    config = write_config(
        tmp_path / "pool0.xapi_pool.yml", pools[0],
        keyed_groups=[{"key": "sxm_power_state", "prefix": "kg_power"},
                      {"key": "sxm_snapshot_count | string", "prefix": "kg_snaps"},
                      {"key": "sxm_tags", "separator": "", "parent_group": "kg_tags"}],
        groups={"kg_big_tree": "sxm_snapshot_count >= 2"},
        compose={"sxm_vm": "sxm_uuid", "disk_mib": "sxm_disk_bytes // 1048576"})
    listed, output = inventory_list(config)
    hostvars, groups = listed["_meta"]["hostvars"], members(listed)
    uuids = {vm: x.xenapi.VM.get_uuid(vm) for vm in made}
    twin_names = {vm: "%s-twin_%s" % (p, uuids[vm][:8]) for vm in twins}
    name = {web: p + "-web", db: p + "-db", **twin_names}

    # the VMs, named; never a control domain, a template or a snapshot
    mine = {h for h in hostvars if h.startswith(p)}
    assert mine == set(name.values())
    records = x.xenapi.VM.get_all_records().values()
    not_vms = [r for r in records if r["is_control_domain"] or r["is_a_template"] or r["is_a_snapshot"]]
    assert {r["is_control_domain"] for r in not_vms} == {True, False}
    assert not {r["uuid"] for r in not_vms} & {v["sxm_uuid"] for v in hostvars.values()}
    # by name too, except names a VM shares (another test leaves a VM named like a template)
    vm_names = {r["name_label"] for r in records if r not in not_vms}
    assert not ({r["name_label"] for r in not_vms} - vm_names) & set(hostvars)
    assert not {p + "-template", p + "-s1", p + "-s2"} & set(hostvars)

    # the facts
    for vm, host in name.items():
        facts = {k: v for k, v in hostvars[host].items() if k.startswith("sxm_") and k != "sxm_vm"}
        assert facts == expected_facts(x, vm), host
        assert hostvars[host]["sxm_vm"] == uuids[vm] and hostvars[host]["disk_mib"] == facts["sxm_disk_bytes"] // MiB
        assert not {"ansible_connection", "ansible_host"} & set(hostvars[host])
    assert hostvars[name[web]]["sxm_power_state"] == "running" and hostvars[name[web]]["sxm_snapshot_count"] == 1
    assert hostvars[name[twins[1]]]["sxm_power_state"] == "suspended"
    assert hostvars[name[twins[1]]]["sxm_bytes_to_move"] > hostvars[name[twins[0]]]["sxm_bytes_to_move"]
    assert hostvars[name[db]]["sxm_sr_names"] == ["Local storage (SMAPIv3)"]
    assert "OpaqueRef" not in json.dumps(hostvars)

    # the built-in groups
    host_group = "xapi_host_" + re.sub(r"[^a-z0-9_]+", "_", hostvars[name[web]]["sxm_home_host"].lower())
    assert set(name.values()) <= groups[host_group]
    assert groups["xapi_tag_%s_prod" % p] == {name[web], name[db]}
    assert groups["xapi_tag_%s_db" % p] == {name[db]}
    assert name[web] in groups["xapi_tag_web"]
    assert {name[web], *twin_names.values()} <= groups["xapi_sr_local_storage"]
    assert name[db] in groups["xapi_sr_local_storage_smapiv3"] and name[db] not in groups["xapi_sr_local_storage"]
    assert name[web] in groups["xapi_power_running"] and name[twins[1]] in groups["xapi_power_suspended"]
    assert {name[db], name[twins[0]]} <= groups["xapi_power_halted"]
    assert not set(name.values()) & groups.get("xapi_power_paused", set())
    # keyed_groups and groups
    assert name[web] in groups["kg_power_running"] and name[db] in groups["kg_power_halted"]
    assert name[db] in groups["kg_snaps_2"] and name[web] in groups["kg_snaps_1"]
    assert name[twins[0]] in groups["kg_snaps_0"]
    assert name[db] in groups["kg_big_tree"] and name[web] not in groups["kg_big_tree"]
    # (Ansible makes a keyed group's name safe its own way: "-" and " " become "_", case kept)
    assert groups["%s_db" % p] == {name[db]} and "%s_db" % p in listed["kg_tags"]["children"]

    # --graph shows the same groups
    graphed, graph_output = graph(config)
    for group in (host_group, "xapi_tag_%s_prod" % p, "xapi_sr_local_storage_smapiv3", "xapi_power_suspended",
                  "kg_big_tree"):
        assert graphed[group] == groups[group], group

    # a pattern over the groups gives the VMs' uuids, as the evacuate role reads them
    pattern = "xapi_tag_%s_prod:!xapi_power_running" % p
    proc = ansible("ansible", "localhost", "-i", str(config), "-m", "ansible.builtin.debug", "-a",
                   "msg={{ query('inventory_hostnames', '%s') | map('extract', hostvars, 'sxm_uuid') | list }}"
                   % pattern)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", proc.stdout) == [uuids[db]]

    # the password in no output
    for text in (output, graph_output, proc.stdout + proc.stderr):
        assert pools[0]["password"] not in text
    assert "OpaqueRef" not in output


def test_inventory_plugin_env_fallbacks_and_cache(pools, connect, made, tmp_path):
    """Everything but the plugin's name from XAPI_* variables; a cached inventory is served
    from the cache until flushed, and the cache holds no secret."""
    x = connect(0)
    p = "inv%s" % uuid.uuid4().hex[:6]
    vm = scenario.create_vm(x, p + "-cached", [2 * MiB])
    made.append(vm)
    cache = tmp_path / "cache"
    config = tmp_path / "env.xapi_pool.yaml"
    config.write_text(yaml.safe_dump({"plugin": "xapi.sxm.pool", "cache": True,
                                      "cache_plugin": "ansible.builtin.jsonfile",
                                      "cache_connection": str(cache)}))
    env = {"XAPI_URL": pools[0]["url"], "XAPI_USERNAME": pools[0]["username"],
           "XAPI_PASSWORD": pools[0]["password"], "XAPI_CA_PATH": pools[0]["ca_file"],
           "XAPI_VALIDATE_CERTS": "true"}
    listed, output = inventory_list(config, env)
    assert listed["_meta"]["hostvars"][p + "-cached"]["sxm_uuid"] == x.xenapi.VM.get_uuid(vm)
    cached = "".join(f.read_text() for f in cache.iterdir())
    assert p + "-cached" in cached and pools[0]["password"] not in cached + output
    x.xenapi.VM.set_name_label(vm, p + "-renamed")
    listed, _ = inventory_list(config, env)
    assert p + "-cached" in listed["_meta"]["hostvars"]
    listed, _ = inventory_list(config, env, "--flush-cache")
    assert p + "-renamed" in listed["_meta"]["hostvars"] and p + "-cached" not in listed["_meta"]["hostvars"]
    # the file names the plugin accepts
    wrong = tmp_path / "pool.yml"
    wrong.write_text(config.read_text())
    proc = ansible("ansible-inventory", "-i", str(wrong), "--list", env=env)
    assert proc.returncode != 0


def test_inventory_plugin_hides_a_wrong_password(pools, tmp_path):
    wrong = "not-the-password-%s" % uuid.uuid4().hex
    config = write_config(tmp_path / "bad.xapi_pool.yml", pools[0], password=wrong)
    proc = ansible("ansible-inventory", "-i", str(config), "--list", "-vvv")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "wrong username or password for user 'root'" in output, output[-3000:]
    assert wrong not in output
    config = write_config(tmp_path / "http.xapi_pool.yml", pools[0], url=pools[0]["url"].replace("https", "http"))
    proc = ansible("ansible-inventory", "-i", str(config), "--list")
    assert proc.returncode != 0 and "only https://" in proc.stdout + proc.stderr


def test_inventory_plugin_doc_renders():
    proc = ansible("ansible-doc", "-t", "inventory", "xapi.sxm.pool")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for word in ("xapi.sxm.pool", "url", "username", "password", "validate_certs", "ca_path", "XAPI_URL",
                 "XAPI_PASSWORD", "XAPI_CA_PATH", "keyed_groups", "compose", "leading_separator", "cache_plugin",
                 "xapi_host_", "sxm_bytes_to_move", "EXAMPLES"):
        assert word in proc.stdout, word
    proc = ansible("ansible-doc", "-t", "inventory", "-l", "xapi.sxm")
    assert proc.returncode == 0 and "xapi.sxm.pool" in proc.stdout, proc.stdout + proc.stderr


def test_inventory_plugin_groups_vms_by_home_host_on_a_two_host_pool(tmp_path):
    """Local storage on each host: every VM's home host is the host of its disks (or where it
    runs), and each host's "Local storage" has a group of its own."""
    state = tmp_path / "xapisim"
    xapisim("up", "--state-dir", str(state), "--pools", "1", "--hosts", "2")
    try:
        pool = json.loads((state / "pools.json").read_text())["pools"][0]
        x = client.login(pool, "root")
        hosts = {rec["name_label"]: ref for ref, rec in x.xenapi.host.get_all_records().items()}
        assert len(hosts) == 2
        local = {}
        for ref, rec in x.xenapi.SR.get_all_records().items():
            if rec["name_label"] == "Local storage":
                local[x.xenapi.PBD.get_host(rec["PBDs"][0])] = (ref, rec["uuid"])
        name0, name1 = sorted(hosts)
        h0, h1 = hosts[name0], hosts[name1]
        scenario.create_vm(x, "on-host0", [2 * MiB], sr=local[h0][0])
        scenario.create_vm(x, "on-host1", [2 * MiB], sr=local[h1][0])
        runs1 = scenario.create_vm(x, "runs-on-host1", [2 * MiB], sr=local[h1][0])
        x.xenapi.VM.start(runs1, False, False)
        # its affinity names host0, which cannot see its disk: VM.start would not put it there
        x.xenapi.VM.set_affinity(scenario.create_vm(x, "affine-host0", [2 * MiB], sr=local[h1][0]), h0)
        x.xenapi.VM.set_affinity(scenario.create_vm(x, "diskless-affine-host1", []), h1)
        x.xenapi.session.logout()
        listed, output = inventory_list(write_config(tmp_path / "two.xapi_pool.yml", pool))
        groups, hostvars = members(listed), listed["_meta"]["hostvars"]
        group0 = "xapi_host_" + re.sub(r"[^a-z0-9_]+", "_", name0.lower())
        group1 = "xapi_host_" + re.sub(r"[^a-z0-9_]+", "_", name1.lower())
        assert groups[group0] == {"on-host0"}
        assert groups[group1] == {"on-host1", "runs-on-host1", "affine-host0", "diskless-affine-host1"}
        assert hostvars["on-host1"]["sxm_home_host"] == name1 and hostvars["on-host1"]["sxm_resident_host"] is None
        assert hostvars["runs-on-host1"]["sxm_resident_host"] == name1
        # every host has its own "Local storage": one group each, told apart by the uuid
        assert groups["xapi_sr_local_storage_" + local[h0][1][:8]] == {"on-host0"}
        assert groups["xapi_sr_local_storage_" + local[h1][1][:8]] == {"on-host1", "runs-on-host1", "affine-host0"}
        assert "xapi_sr_local_storage" not in groups
        assert pool["password"] not in output
    finally:
        xapisim("down", "--state-dir", str(state))

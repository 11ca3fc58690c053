"""Third-party conformance: community.general's XenServer modules (community.general 11.4.2 from
the PyPI ``ansible`` 12.3.0 bundle, unmodified, in .venv-bundle made by
tools/setup_ansible_bundle.sh) run by that bundle's ansible-playbook against the simulated pools,
over HTTPS with the pool's certificate checked. Every outcome is checked on the pool through a
session of the project's XenAPI library, not only in what the module returned.

The modules build their URL from ``hostname``: ``http://`` + hostname unless it already starts
with ``http://`` or ``https://`` (module_utils/xenserver.py, XAPI.connect), and ``localhost``
means the local UNIX socket. So the pool's full HTTPS URL (with its port) is passed as hostname.
"""

import json
import os
import subprocess
import uuid as uuidlib

import pytest

from xapisim import client, scenario

MiB = 1 << 20
NULL = "OpaqueRef:NULL"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, ".venv-bundle")
BUNDLE_PY = os.path.join(BUNDLE, "bin", "python")
PLAYBOOK = os.path.join(BUNDLE, "bin", "ansible-playbook")
CG = "community.general."


# ---- the bundle and its ansible-playbook ------------------------------------------------------

@pytest.fixture(scope="session")
def bundle():
    """.venv-bundle made or checked (idempotent, quick when current); its site-packages, the
    only place collections are looked for."""
    proc = subprocess.run([os.path.join(REPO, "tools", "setup_ansible_bundle.sh")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = subprocess.run([BUNDLE_PY, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return {"site": site}


class Ansible:
    """Writes a one-play playbook of the given tasks into tmp_path and runs it with the bundle's
    ansible-playbook, on localhost, connection local, the bundle's python, a config of its own
    (nothing of the project's ansible.cfg or collection), the pools' certificates as the only
    trusted ones. Returns the result of each task (from the ansible.posix.json callback)."""

    def __init__(self, bundle, pools, tmp_path):
        self.pools = pools
        self.tmp = tmp_path
        self.count = 0
        cafile = tmp_path / "pool-ca.pem"
        cafile.write_text("".join(open(p["ca_file"]).read() for p in pools))
        empty_dir = tmp_path / "no-other-ca"
        empty_dir.mkdir()
        (tmp_path / "ansible.cfg").write_text(
            "[defaults]\n"
            "collections_path = %s\n"
            "inventory = %s\n"
            "stdout_callback = ansible.posix.json\n"
            "local_tmp = %s\n"
            "retry_files_enabled = False\n"
            "interpreter_python = %s\n" % (bundle["site"], tmp_path / "inventory.json",
                                           tmp_path / "ansible-tmp", BUNDLE_PY))
        (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": BUNDLE_PY}}}}))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANSIBLE_", "XENSERVER_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=bundle["site"],
                   ANSIBLE_HOME=str(tmp_path / "ansible-home"),
                   ANSIBLE_NOCOLOR="1",
                   SSL_CERT_FILE=str(cafile), SSL_CERT_DIR=str(empty_dir))
        self.env = env

    def connection(self, pool=0):
        p = self.pools[pool]
        return {"hostname": p["url"].rstrip("/"), "username": p["username"],
                "password": p["password"], "validate_certs": True}

    def run(self, *tasks, pool=0, expect_failure=False, env=None):
        """tasks: (module, args) pairs; the connection options are added to each."""
        self.count += 1
        play = [{"name": "community.general XenServer modules against xapisim", "hosts": "localhost",
                 "gather_facts": False,
                 "tasks": [{"name": "step %d" % i, module: dict(self.connection(pool), **args)}
                           for i, (module, args) in enumerate(tasks)]}]
        path = self.tmp / ("playbook-%d.yml" % self.count)
        path.write_text(json.dumps(play, indent=1))  # JSON is YAML
        proc = subprocess.run([PLAYBOOK, str(path)], cwd=str(self.tmp), env=dict(self.env, **(env or {})),
                              capture_output=True, text=True, timeout=600)
        try:
            out = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            raise AssertionError("ansible-playbook (rc %d) printed no JSON:\n%s\n%s"
                                 % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        results = [t["hosts"]["localhost"] for t in out["plays"][0]["tasks"]]
        failed = [r for r in results if r.get("failed")]
        if expect_failure:
            assert proc.returncode != 0 and failed, "the play should have failed: %r" % results
            return failed[0]
        assert proc.returncode == 0 and not failed, \
            "task failed: %s\n%s" % (failed[0].get("msg") if failed else "", proc.stderr[-3000:])
        assert len(results) == len(tasks)
        return results


@pytest.fixture
def ansible(bundle, pools, tmp_path):
    return Ansible(bundle, pools, tmp_path)


# ---- helpers on the pool side -----------------------------------------------------------------

def unique(prefix):
    return "cg-%s-%s" % (prefix, uuidlib.uuid4().hex[:8])


def eth0_network(x):
    return scenario.nbd_network(x)


def disk_vbds(x, vm):
    """The VM's Disk VBD records with their VDI records, by userdevice."""
    out = []
    for vbd in x.xenapi.VM.get_VBDs(vm):
        rec = x.xenapi.VBD.get_record(vbd)
        if rec["type"] == "Disk":
            rec["VDI_record"] = x.xenapi.VDI.get_record(rec["VDI"])
            out.append(rec)
    return sorted(out, key=lambda r: int(r["userdevice"]))


def vifs(x, vm):
    recs = [x.xenapi.VIF.get_record(v) for v in x.xenapi.VM.get_VIFs(vm)]
    return sorted(recs, key=lambda r: int(r["device"]))


def export_raw(pool, x, vdi):
    status, _, data = client.http_request(pool, "GET", "/export_raw_vdi",
                                          query={"vdi": x.xenapi.VDI.get_uuid(vdi), "format": "raw"},
                                          session=x)
    assert status == 200, data[:200]
    return data


def make_template(pool, x, name, sizes, sr=None):
    """A halted VM with disks of those sizes (each with recognisable data at its start) and one
    VIF, turned into a template (VM.set_is_a_template)."""
    vm = scenario.create_vm(x, name, sizes, sr=sr)
    for rec in disk_vbds(x, vm):
        scenario.write_disk(pool, x, rec["VDI"], [(0, scenario.pattern("%s-%s" % (name, rec["userdevice"]),
                                                                      64 * 1024))])
    x.xenapi.VM.set_is_a_template(vm, True)
    return vm


def set_guest(pool, x, vm, **spec):
    """What runs inside the simulated VM (simulator-only POST /xapisim/guest): {"tools": bool}
    (guest tools: they acknowledge clean shutdown/reboot/suspend and report guest metrics, IP
    addresses included), {"ack_timeout": s} (how long a request waits for a guest without
    tools before failing)."""
    status, _, body = client.http_request(pool, "POST", "/xapisim/guest", query={"vm": x.xenapi.VM.get_uuid(vm)},
                                          session=x, body=json.dumps(spec).encode())
    assert status == 200, body


def guest_ip(x, vm, device):
    """What the modules read as a VIF's IPv4 address: VM_guest_metrics.networks["<device>/ip"]."""
    metrics = x.xenapi.VM.get_guest_metrics(vm)
    if metrics == NULL:
        return ""
    return x.xenapi.VM_guest_metrics.get_networks(metrics).get("%s/ip" % device, "")


def gone(x, cls, uuid):
    try:
        getattr(x.xenapi, cls).get_by_uuid(uuid)
    except Exception as e:  # noqa: BLE001 - XenAPI.Failure, checked below
        return getattr(e, "details", [None])[0] == "UUID_INVALID"
    return False


# ---- the tests --------------------------------------------------------------------------------

def test_bundle_is_the_pinned_one_and_alone(bundle, ansible):
    """The run sees community.general 11.4.2 of ansible 12.3.0 from .venv-bundle and nothing of
    the project (its collection, its ansible.cfg)."""
    with open(os.path.join(bundle["site"], "ansible_collections", "community", "general",
                           "MANIFEST.json")) as f:
        assert json.load(f)["collection_info"]["version"] == "11.4.2"
    proc = subprocess.run([os.path.join(BUNDLE, "bin", "ansible-config"), "dump", "--only-changed",
                           "--format", "json"], cwd=str(ansible.tmp), env=ansible.env,
                          capture_output=True, text=True, check=True)
    dump = {item["name"]: item["value"] for item in json.loads(proc.stdout) if "name" in item}
    assert dump["COLLECTIONS_PATHS"] == [bundle["site"]]
    assert dump["CONFIG_FILE"] == str(ansible.tmp / "ansible.cfg")
    proc = subprocess.run([os.path.join(BUNDLE, "bin", "ansible-galaxy"), "collection", "list",
                           "--format", "json"], cwd=str(ansible.tmp), env=ansible.env,
                          capture_output=True, text=True, check=True)
    listed = json.loads(proc.stdout)
    assert all(path.startswith(BUNDLE + os.sep) for path in listed), sorted(listed)
    names = {name for found in listed.values() for name in found}
    assert "community.general" in names and "xapi.sxm" not in names


def test_certificate_is_checked(ansible):
    """validate_certs: true really verifies: without the pool's CA trusted, the login fails."""
    failure = ansible.run((CG + "xenserver_guest_info", {"name": "whatever"}), expect_failure=True,
                          env={"SSL_CERT_FILE": os.devnull})
    assert "CERTIFICATE_VERIFY_FAILED" in failure["msg"], failure["msg"]


def test_guest_info_matches_the_pool(pools, connect, ansible):
    x = connect(0)
    name = unique("info")
    vm = scenario.create_vm(x, name, [16 * MiB, 8 * MiB], cd=True)
    x.xenapi.VM.set_VCPUs_max(vm, "2")
    uuid = x.xenapi.VM.get_uuid(vm)
    by_name, by_uuid = ansible.run((CG + "xenserver_guest_info", {"name": name}),
                                   (CG + "xenserver_guest_info", {"uuid": uuid}))
    assert by_name["changed"] is False
    facts = by_name["instance"]
    assert facts == by_uuid["instance"]
    rec = x.xenapi.VM.get_record(vm)
    assert (facts["name"], facts["uuid"], facts["name_desc"]) == (name, uuid, rec["name_description"])
    assert facts["state"] == "poweredoff" and rec["power_state"] == "Halted"
    assert facts["is_template"] is False
    assert facts["hardware"] == {"num_cpus": 2, "num_cpu_cores_per_socket": 1,
                                 "memory_mb": int(rec["memory_dynamic_max"]) // MiB}
    assert facts["other_config"] == rec["other_config"] and facts["platform"] == rec["platform"]
    assert str(facts["domid"]) == str(rec["domid"])
    expected_disks = []
    for vbd in disk_vbds(x, vm):
        sr = x.xenapi.SR.get_record(vbd["VDI_record"]["SR"])
        expected_disks.append({"size": int(vbd["VDI_record"]["virtual_size"]),
                               "name": vbd["VDI_record"]["name_label"],
                               "name_desc": vbd["VDI_record"]["name_description"],
                               "sr": sr["name_label"], "sr_uuid": sr["uuid"],
                               "os_device": vbd["device"], "vbd_userdevice": vbd["userdevice"]})
    assert [d["size"] for d in expected_disks] == [16 * MiB, 8 * MiB]
    assert facts["disks"] == expected_disks
    assert facts["cdrom"] == {"type": "none"}
    net = x.xenapi.network.get_record(eth0_network(x))
    [vif] = vifs(x, vm)
    assert [(n["name"], n["mac"], n["vif_device"], n["mtu"], n["ip"]) for n in facts["networks"]] == \
        [(net["name_label"], vif["MAC"], vif["device"], vif["MTU"], guest_ip(x, vm, vif["device"]))]
    # no guest agent reporting the static-IP feature: the module uses xenstore_data
    assert facts["customization_agent"] == "custom"
    assert facts["xenstore_data"] == rec["xenstore_data"]
    # a running VM with guest tools: its state, domid, attached devices, the IP its tools report
    set_guest(pools[0], x, vm, tools=True)
    x.xenapi.VM.start(vm, False, False)
    [running] = ansible.run((CG + "xenserver_guest_info", {"uuid": uuid}))
    rec = x.xenapi.VM.get_record(vm)
    assert running["instance"]["state"] == "poweredon" and rec["power_state"] == "Running"
    assert str(running["instance"]["domid"]) == str(rec["domid"])
    assert [d["os_device"] for d in running["instance"]["disks"]] == [v["device"] for v in disk_vbds(x, vm)]
    assert [n["ip"] for n in running["instance"]["networks"]] == [guest_ip(x, vm, vif["device"])]
    assert guest_ip(x, vm, vif["device"]) != ""


POWER_STEPS = [
    # (module state, extra options, XAPI power_state after, changed)
    ("powered-on", {}, "Running", True),
    ("powered-on", {"wait_for_ip_address": True, "state_change_timeout": 30}, "Running", False),
    ("restarted", {}, "Running", True),
    ("suspended", {}, "Suspended", True),
    ("powered-on", {}, "Running", True),          # VM.resume
    ("reboot-guest", {"state_change_timeout": 60}, "Running", True),   # Async.VM.clean_reboot + task
    ("shutdown-guest", {"state_change_timeout": 60}, "Halted", True),  # Async.VM.clean_shutdown + task
    ("powered-on", {}, "Running", True),
    ("shutdown-guest", {}, "Halted", True),        # VM.clean_shutdown (timeout 0: synchronous)
    ("powered-off", {}, "Halted", False),
    ("powered-on", {}, "Running", True),
    ("powered-off", {}, "Halted", True),           # VM.hard_shutdown
    ("present", {}, "Halted", False),
]


def test_guest_powerstate(pools, connect, ansible):
    x = connect(0)
    name = unique("power")
    vm = scenario.create_vm(x, name, [8 * MiB])
    uuid = x.xenapi.VM.get_uuid(vm)
    module_state = {"Running": "poweredon", "Halted": "poweredoff", "Suspended": "suspended"}
    tasks_before = set(x.xenapi.task.get_all())
    # an HVM guest without tools never acknowledges a clean shutdown: the task fails
    set_guest(pools[0], x, vm, tools=False, ack_timeout=1)
    x.xenapi.VM.start(vm, False, False)
    failure = ansible.run((CG + "xenserver_guest_powerstate",
                           {"name": name, "state": "shutdown-guest", "state_change_timeout": 30}),
                          expect_failure=True)
    assert failure["msg"] == "Guest shutdown task failed: 'failure'!"
    assert x.xenapi.VM.get_power_state(vm) == "Running"
    x.xenapi.VM.hard_shutdown(vm)
    set_guest(pools[0], x, vm, tools=True)
    for state, extra, power_state, changed in POWER_STEPS:
        [result] = ansible.run((CG + "xenserver_guest_powerstate", dict(extra, name=name, state=state)))
        step = "%s %r" % (state, extra)
        assert x.xenapi.VM.get_power_state(vm) == power_state, step
        assert result["changed"] is changed, step
        assert result["instance"]["uuid"] == uuid
        assert result["instance"]["state"] == module_state[power_state], step
        if extra.get("wait_for_ip_address"):
            ips = [n["ip"] for n in result["instance"]["networks"]]
            assert ips == [guest_ip(x, vm, "0")] and ips[0], step
    # guest-driven operations wait for their task and destroy it: no task left behind
    assert set(x.xenapi.task.get_all()) - tasks_before == set()


def test_guest_modify(connect, ansible):
    x = connect(0)
    name, new_name = unique("modify"), unique("modified")
    vm = scenario.create_vm(x, name, [16 * MiB])
    uuid = x.xenapi.VM.get_uuid(vm)
    eth0 = x.xenapi.network.get_record(eth0_network(x))
    other_net_name = unique("net")
    other_net = x.xenapi.network.create({"name_label": other_net_name, "name_description": "",
                                         "MTU": "9000", "other_config": {}, "bridge": "",
                                         "tags": []})
    default_sr = scenario.default_sr(x)
    task = {"uuid": uuid, "name": new_name, "state": "present",
            "hardware": {"num_cpus": 2, "memory_mb": 512},
            "disks": [{"size_mb": 16}, {"size_mb": 8, "name": "added disk"}],
            "networks": [{"name": eth0["name_label"]}, {"name": other_net_name}]}
    [result] = ansible.run((CG + "xenserver_guest", task))
    assert result["changed"] is True
    rec = x.xenapi.VM.get_record(vm)
    assert rec["name_label"] == new_name
    assert (rec["VCPUs_max"], rec["VCPUs_at_startup"]) == ("2", "2")
    assert int(rec["memory_static_max"]) == int(rec["memory_dynamic_max"]) == \
        int(rec["memory_dynamic_min"]) == 512 * MiB
    assert int(rec["memory_static_min"]) == 256 * MiB  # min(new, old static_min)
    disks = disk_vbds(x, vm)
    assert [(d["userdevice"], int(d["VDI_record"]["virtual_size"])) for d in disks] == \
        [("0", 16 * MiB), ("1", 8 * MiB)]
    added = disks[1]
    assert added["VDI_record"]["name_label"] == "added disk" and added["VDI_record"]["SR"] == default_sr
    assert added["mode"] == "RW" and added["bootable"] is False
    recs = vifs(x, vm)
    assert [(v["device"], v["network"]) for v in recs] == [("0", eth0_network(x)), ("1", other_net)]
    assert recs[1]["MTU"] == "9000" and recs[1]["MAC"]
    # customization agent "custom": the new interface is described in xenstore_data
    assert rec["xenstore_data"].get("vm-data/networks/1/name") == other_net_name
    assert rec["xenstore_data"].get("vm-data/networks/1/mac") == recs[1]["MAC"]
    facts = result["instance"]
    assert facts["name"] == new_name and facts["hardware"]["num_cpus"] == 2
    assert facts["hardware"]["memory_mb"] == 512 and len(facts["disks"]) == 2 and len(facts["networks"]) == 2
    # the same task again changes nothing
    [again] = ansible.run((CG + "xenserver_guest", task))
    assert again["changed"] is False, again.get("changes")
    assert len(disk_vbds(x, vm)) == 2 and len(vifs(x, vm)) == 2


def test_guest_deploy_from_template(pools, connect, ansible):
    """VM.copy of a (non built-in) template to the default SR, VM.provision, reconfigure (an
    extra disk), VM.start."""
    x = connect(0)
    v3 = [ref for ref, rec in x.xenapi.SR.get_all_records().items() if rec["type"] == "file-v3"][0]
    template = make_template(pools[0], x, unique("tmpl"), [16 * MiB, 8 * MiB], sr=v3)
    name = unique("deployed")
    [result] = ansible.run((CG + "xenserver_guest", {
        "name": name, "template": x.xenapi.VM.get_name_label(template), "state": "poweredon",
        "disks": [{"size_mb": 16}, {"size_mb": 8}, {"size_mb": 4, "name": "extra"}]}))
    assert result["changed"] is True
    [vm] = x.xenapi.VM.get_by_name_label(name)
    rec = x.xenapi.VM.get_record(vm)
    assert rec["is_a_template"] is False and rec["power_state"] == "Running"
    assert rec["name_description"] == ""
    assert result["instance"]["uuid"] == rec["uuid"] and result["instance"]["is_template"] is False
    assert result["instance"]["state"] == "poweredon"
    disks = disk_vbds(x, vm)
    assert [(d["userdevice"], int(d["VDI_record"]["virtual_size"])) for d in disks] == \
        [("0", 16 * MiB), ("1", 8 * MiB), ("2", 4 * MiB)]
    template_vdis = {d["VDI"] for d in disk_vbds(x, template)}
    # a full copy: new VDIs on the default SR (the template's are on the SMAPIv3 SR), same data
    assert {d["VDI"] for d in disks}.isdisjoint(template_vdis)
    assert {d["VDI_record"]["SR"] for d in disks} == {scenario.default_sr(x)}
    for copy, orig in zip(disks[:2], disk_vbds(x, template)):
        assert export_raw(pools[0], x, copy["VDI"]) == export_raw(pools[0], x, orig["VDI"])
    [vif], [orig_vif] = vifs(x, vm), vifs(x, template)
    assert vif["network"] == orig_vif["network"] and vif["MAC"] != orig_vif["MAC"]
    assert x.xenapi.VM.get_is_a_template(template) is True


def test_guest_deploy_from_builtin_template(connect, ansible):
    """A built-in template (other_config default_template=true, a `disks` provision spec): the
    module drops the spec and adds the disks itself."""
    x = connect(0)
    builtin = sorted(rec["name_label"] for rec in x.xenapi.VM.get_all_records().values()
                     if rec["is_a_template"] and not rec["is_a_snapshot"]
                     and (rec.get("is_default_template") or rec["other_config"].get("default_template") == "true"))
    assert builtin, "a fresh pool has stock templates"
    name = unique("from-builtin")
    eth0 = x.xenapi.network.get_record(eth0_network(x))
    [result] = ansible.run((CG + "xenserver_guest", {
        "name": name, "template": builtin[0], "state": "present",
        "hardware": {"num_cpus": 1, "memory_mb": 256},
        "disks": [{"size_mb": 32, "name": "system"}], "networks": [{"name": eth0["name_label"]}]}))
    assert result["changed"] is True
    [vm] = x.xenapi.VM.get_by_name_label(name)
    rec = x.xenapi.VM.get_record(vm)
    assert rec["is_a_template"] is False and rec["power_state"] == "Halted"
    assert "default_template" not in rec["other_config"] and "disks" not in rec["other_config"]
    assert [(d["userdevice"], int(d["VDI_record"]["virtual_size"]), d["VDI_record"]["name_label"])
            for d in disk_vbds(x, vm)] == [("0", 32 * MiB, "system")]
    assert [v["network"] for v in vifs(x, vm)] == [eth0_network(x)]


def test_guest_linked_clone(pools, connect, ansible):
    """linked_clone: VM.clone: the disks are clones on the template's own SR, same data."""
    x = connect(0)
    v3 = [ref for ref, rec in x.xenapi.SR.get_all_records().items() if rec["type"] == "file-v3"][0]
    template = make_template(pools[0], x, unique("tmpl"), [16 * MiB], sr=v3)
    name = unique("linked")
    [result] = ansible.run((CG + "xenserver_guest", {
        "name": name, "template": x.xenapi.VM.get_name_label(template), "linked_clone": True,
        "state": "present"}))
    assert result["changed"] is True
    [vm] = x.xenapi.VM.get_by_name_label(name)
    rec = x.xenapi.VM.get_record(vm)
    assert rec["is_a_template"] is False and rec["power_state"] == "Halted"
    assert rec["name_description"] == ""
    [disk] = disk_vbds(x, vm)
    [orig] = disk_vbds(x, template)
    assert disk["VDI"] != orig["VDI"] and disk["VDI_record"]["SR"] == v3
    assert int(disk["VDI_record"]["virtual_size"]) == 16 * MiB
    assert export_raw(pools[0], x, disk["VDI"]) == export_raw(pools[0], x, orig["VDI"])
    [vif], [orig_vif] = vifs(x, vm), vifs(x, template)
    assert vif["network"] == orig_vif["network"] and vif["MAC"] != orig_vif["MAC"]


def test_guest_absent(connect, ansible):
    """state absent, force: a running VM is hard-shut-down, destroyed with its disks; its CD
    drive's VBD goes with the VM. A second run finds nothing to do."""
    x = connect(0)
    name = unique("absent")
    vm = scenario.create_vm(x, name, [16 * MiB, 8 * MiB], cd=True)
    x.xenapi.VM.start(vm, False, False)
    uuid = x.xenapi.VM.get_uuid(vm)
    vdis = [d["VDI_record"]["uuid"] for d in disk_vbds(x, vm)]
    vbds = [x.xenapi.VBD.get_uuid(v) for v in x.xenapi.VM.get_VBDs(vm)]
    vif_uuids = [v["uuid"] for v in vifs(x, vm)]
    assert len(vdis) == 2 and len(vbds) == 3
    [result] = ansible.run((CG + "xenserver_guest", {"uuid": uuid, "state": "absent", "force": True}))
    assert result["changed"] is True
    assert gone(x, "VM", uuid)
    assert all(gone(x, "VDI", u) for u in vdis)
    assert all(gone(x, "VBD", u) for u in vbds)
    assert all(gone(x, "VIF", u) for u in vif_uuids)
    assert x.xenapi.VM.get_by_name_label(name) == []
    [again] = ansible.run((CG + "xenserver_guest", {"name": name, "state": "absent"}))
    assert again["changed"] is False

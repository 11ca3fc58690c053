"""Issue 3: every example in the docs runs. The modules' EXAMPLES run as a playbook against the
simulated pools (pool A = pool 0, pool B = pool 1), and the README's variables file runs the
migrate_vm playbook once its placeholders are filled in."""

import os
import re

import yaml
from ansible.plugins.loader import module_loader  # noqa: F401 - ansible is importable here

from xapisim import scenario

from checks import inventory
from harness import REPO, pool_vars, run_playbook

MiB = 1 << 20
# every module's examples, in the order a migration runs them: cleanup first (nothing to remove
# yet), the steps, the report from the steps' registered results, the one-task composite last
EXAMPLES_IN_FLOW_ORDER = ["snapshot_tree_info", "migration_cleanup", "migration_plan", "vdi_mirror", "vm_metadata",
                          "migration_verify", "vm_cutover", "migration_report", "vm_migrate", "migration_wait"]


def examples_of(module):
    path = os.path.join(REPO, "plugins", "modules", module + ".py")
    with open(path) as f:
        text = f.read()
    return yaml.safe_load(re.search(r'EXAMPLES = r"""(.*?)"""', text, re.S).group(1))


def example_vars(pools):
    return {"pool_a_url": pools[0]["url"], "pool_a_password": pools[0]["password"],
            "pool_a_ca": pools[0]["ca_file"], "pool_b_url": pools[1]["url"],
            "pool_b_password": pools[1]["password"], "pool_b_ca": pools[1]["ca_file"],
            "pool_a": pool_vars(pools[0]), "pool_b": pool_vars(pools[1])}


def fresh_vm01(pools, connect):
    """A halted vm01 with a small branched tree on pool A, and none on pool B."""
    x = connect(0)
    for ref in x.xenapi.VM.get_by_name_label("vm01"):
        x.xenapi.VM.set_name_label(ref, "vm01-old")
    vm, _ = scenario.build_tree(pools[0], x, "vm01", [4 * MiB],
                                [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"),
                                 ("revert", "s1"), ("write", "c")])
    return vm


def test_module_examples_run(pools, connect, tmp_path):
    fresh_vm01(pools, connect)
    play = [{"name": "examples", "hosts": "localhost", "gather_facts": False,
             "vars": example_vars(pools),
             "tasks": [task for module in EXAMPLES_IN_FLOW_ORDER for task in examples_of(module)]}]
    playbook = os.path.join(REPO, "playbooks", ".examples-under-test.yml")
    with open(playbook, "w") as f:
        yaml.safe_dump(play, f)
    try:
        stats, output = run_playbook(os.path.basename(playbook), {}, tmp_path)
    finally:
        os.unlink(playbook)
    assert stats["failed"] == 0
    assert "  s2  " in output
    assert "bytes written for 3 nodes" in output
    assert "disk 0: s1 -> s2" in output


def test_readme_variables_file_runs(pools, connect, tmp_path):
    vm = fresh_vm01(pools, connect)
    with open(os.path.join(REPO, "README.md")) as f:
        block = re.search(r"```yaml\n(.*?)```", f.read(), re.S).group(1)
    variables = yaml.safe_load(block)
    variables["sxm_source"].update(pool_vars(pools[0]))
    variables["sxm_destination"].update(pool_vars(pools[1]))
    variables["sxm_vm"] = connect(0).xenapi.VM.get_uuid(vm)
    variables["sxm_report_dir"] = str(tmp_path / "reports")
    before = inventory(connect(1))
    stats, output = run_playbook("migrate_vm.yml", variables, tmp_path)
    assert stats["failed"] == 0 and stats["changed"] >= 1
    # the README's rollback, with the same variables: nothing of the job left on the destination
    with open(os.path.join(REPO, "README.md")) as f:
        assert "playbooks/rollback.yml -e @my-migration.yml" in f.read()
    stats, output = run_playbook("rollback.yml", dict(variables, sxm_include_complete=True), tmp_path)
    assert stats["failed"] == 0 and stats["changed"] == 1
    assert inventory(connect(1)) == before

"""The collection as users get it: `ansible-galaxy collection build`, an install of the tarball
into a fresh collections path, and a migration run from that installed copy alone (not from
this working tree)."""

import json
import os
import subprocess
import sys
import tarfile

import yaml
from xapisim import scenario

from checks import assert_migrated
from harness import REPO, pool_vars

MiB = 1 << 20
BIN = os.path.dirname(sys.executable)


def run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, "%s failed:\n%s" % (cmd[0], (proc.stdout + proc.stderr)[-4000:])
    return proc.stdout


def test_the_built_collection_installs_and_migrates_a_vm(pools, connect, tmp_path):
    x, y = connect(0), connect(1)
    version = yaml.safe_load(open(os.path.join(REPO, "galaxy.yml")))["version"]
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", REPO, "--output-path", str(tmp_path)])
    tarball = tmp_path / ("xapi-sxm-%s.tar.gz" % version)
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert {"MANIFEST.json", "plugins/modules/vm_migrate.py", "roles/migrate_vm/tasks/main.yml",
            "meta/runtime.yml", "docs/troubleshooting.md", "bindep.txt"} <= names
    # none of the working tree's tools, caches or installed dependencies
    assert not [n for n in names if n.startswith((".venv", "build/", "tests/output", ".state", ".git/"))
                or "node_modules" in n or "__pycache__" in n]
    # a user's own folder: no ansible.cfg of this repository (whose collections path holds the
    # working tree: an install would find xapi.sxm there and do nothing), only the installed copy
    collections = tmp_path / "collections"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(collections)],
        env=env, cwd=str(tmp_path))
    assert (collections / "ansible_collections" / "xapi" / "sxm" / "MANIFEST.json").exists()
    listed = run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "xapi.sxm", "--format", "json"],
                 env=env, cwd=str(tmp_path))
    assert [path for path, found in json.loads(listed).items() if "xapi.sxm" in found] == \
        [str(collections / "ansible_collections")]
    vm, dummy = scenario.build_tree(pools[0], x, "from-galaxy", [4 * MiB], [("write", "a"), ("snap", "s1"),
                                                                           ("write", "b")])
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    play = [{"name": "Migrate with the installed collection", "hosts": "localhost", "gather_facts": False,
             "roles": [{"role": "xapi.sxm.migrate_vm"}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "vars.json").write_text(json.dumps({
        "sxm_source": pool_vars(pools[0]), "sxm_destination": pool_vars(pools[1]), "sxm_vm": vm_uuid}))
    output = run([os.path.join(BIN, "ansible-playbook"), "play.yml", "-e", "@vars.json", "-v"],
                 env=env, cwd=str(tmp_path))
    assert "failed=0" in output
    assert_migrated(x, y, vm_uuid, scan=False)

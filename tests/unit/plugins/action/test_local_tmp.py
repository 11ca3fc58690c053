"""plugin_utils/local_tmp.py: the ansible-local-* folders of dead processes go; a live
process's, one whose name could stand for a live pid, and anything else stay."""

import os
import subprocess

from ansible_collections.xapi.sxm.plugins.plugin_utils import local_tmp


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_only_dead_processes_folders_are_removed(tmp_path):
    dead = "ansible-local-%dqz_w1k8m" % dead_pid()
    names = [dead, "ansible-local-%dabcdefgh" % os.getpid(), "ansible-local-1zzzzzzzz", "ansible-local-short",
             "ansible-tmp-123", "other"]
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / dead / "cached_module.py").write_text("code")
    assert local_tmp.remove_stale(str(tmp_path)) == [dead]
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:])


def test_the_pid_is_what_precedes_mkdtemps_eight_characters():
    assert local_tmp.owner_pid("ansible-local-12345678abc_") == 1234
    assert local_tmp.owner_pid("ansible-local-abc") is None
    assert local_tmp.owner_pid("ansible-local-x1234abcdefgh") is None
    assert local_tmp.remove_stale("/nonexistent-folder") == []

"""Where Ansible leaves what the fault cases count: its remote and local tmp folder, its async
folder and the temp dir AnsiballZ extracts modules into. Under pytest-xdist each worker gets
its own, laid out as the defaults are, so that it sees only its own runs' leftovers."""

import os
import shutil
import tempfile


def isolate_worker(worker):
    """Returns the worker's folder, to be given to ``remove_if_empty`` at the end."""
    base = tempfile.mkdtemp(prefix="sxm-faults-%s-" % worker)
    for variable, folder in (("ANSIBLE_REMOTE_TMP", "ansible-tmp"), ("ANSIBLE_LOCAL_TEMP", "ansible-tmp"),
                             ("ANSIBLE_ASYNC_DIR", "ansible-async"), ("TMPDIR", "tmp")):
        os.environ[variable] = os.path.join(base, folder)
        os.makedirs(os.environ[variable], exist_ok=True)
    tempfile.tempdir = None     # gettempdir() reads TMPDIR again
    return base


def remove_if_empty(base):
    """The worker's folder goes unless a run left a file in it: that stays to be looked at."""
    if not any(files for dummy, dummy, files in os.walk(base)):
        shutil.rmtree(base, ignore_errors=True)


def ansible_tmp_dir():
    return os.path.expanduser(os.environ.get("ANSIBLE_REMOTE_TMP", "~/.ansible/tmp"))


def ansible_async_dir():
    return os.path.expanduser(os.environ.get("ANSIBLE_ASYNC_DIR", "~/.ansible_async"))

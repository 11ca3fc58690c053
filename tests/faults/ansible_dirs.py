"""Where Ansible leaves what the fault cases count: its remote and local tmp folder, its async
folder and the temp dir AnsiballZ extracts modules into. Under pytest-xdist each worker gets
its own, laid out as the defaults are, so that it sees only its own runs' leftovers."""

import os
import tempfile


def isolate_worker(worker):
    base = tempfile.mkdtemp(prefix="sxm-faults-%s-" % worker)
    for variable, folder in (("ANSIBLE_REMOTE_TMP", "ansible-tmp"), ("ANSIBLE_LOCAL_TEMP", "ansible-tmp"),
                             ("ANSIBLE_ASYNC_DIR", "ansible-async"), ("TMPDIR", "tmp")):
        os.environ[variable] = os.path.join(base, folder)
        os.makedirs(os.environ[variable], exist_ok=True)
    tempfile.tempdir = None     # gettempdir() reads TMPDIR again


def ansible_tmp_dir():
    return os.path.expanduser(os.environ.get("ANSIBLE_REMOTE_TMP", "~/.ansible/tmp"))


def ansible_async_dir():
    return os.path.expanduser(os.environ.get("ANSIBLE_ASYNC_DIR", "~/.ansible_async"))

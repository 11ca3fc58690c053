# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local temporary folders killed controllers left. ansible-playbook makes
``ansible-local-<pid><8 random characters>`` (``tempfile.mkdtemp``'s names are 8 characters)
in its local tmp folder (``~/.ansible/tmp``) and removes it at exit; a SIGKILLed one cannot.
Each run of the collection's actions removes those whose process is gone and that belong to
this user, so that kills leave nothing there."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re
import shutil

PREFIX = "ansible-local-"


RANDOM = 8


def owner_pid(name):
    """The pid in an ``ansible-local-*`` name, or None for a name Ansible did not make."""
    middle = name[len(PREFIX):-RANDOM]
    return int(middle) if re.match(r"^\d+$", middle) else None


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def remove_stale(folder):
    """Remove the ``ansible-local-*`` folders of dead processes from ``folder``; returns their names."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in sorted(names):
        path = os.path.join(folder, name)
        if not name.startswith(PREFIX) or not os.path.isdir(path) or os.path.islink(path):
            continue
        pid = owner_pid(name)
        if pid is None or alive(pid) or os.stat(path).st_uid != os.getuid():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(name)
    return removed

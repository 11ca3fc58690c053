# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of every module that takes a pool password: the passwords go to the
module over a one-time UNIX socket (module_utils/secret_channel.py), never into the arguments
Ansible writes to disk. Only where the module runs on this controller as this user; elsewhere
the arguments go as they are, with a warning."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible import constants as C
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.xapi.sxm.plugins.module_utils import secret_channel
from ansible_collections.xapi.sxm.plugins.plugin_utils import local_tmp

LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")
# how long an async job has to start and fetch its passwords before the channel closes
ASYNC_FETCH_S = 60


class SecretChannelAction(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(SecretChannelAction, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        # what killed controllers left beside this one's own local tmp folder
        local_tmp.remove_stale(os.path.dirname(C.DEFAULT_LOCAL_TMP))
        wrap_async = self._task.async_val and not self._connection.has_native_async
        args, found = secret_channel.split_secrets(self._task.args)
        server = None
        if found and self._runs_here():
            server = secret_channel.SecretServer(found)
            secret_channel.with_reference(args, found, server.reference)
        else:
            args = self._task.args
            if found:
                result.setdefault("warnings", []).append(
                    "the pool passwords are in this module's arguments, which Ansible writes "
                    "to a file on %s while the module runs: run the collection's modules on "
                    "the controller, as the controller's user, to keep them off disk"
                    % self._connection.transport)
        try:
            result = merge_hash(result, self._execute_module(module_args=args, task_vars=task_vars,
                                                             wrap_async=wrap_async))
            if server is not None and wrap_async and not result.get("failed"):
                # the job runs on: the channel stays until it has fetched (or given up)
                server.wait(ASYNC_FETCH_S)
        finally:
            if server is not None:
                server.close()
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _runs_here(self):
        """The module runs on the controller as this user: a UNIX socket reaches it."""
        if self._connection.transport not in LOCAL_CONNECTIONS:
            return False
        return not self._play_context.become

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of xapi.sxm.migration_wait: one task that polls an async job until it
ends, in a loop of constant memory, instead of a task file including itself once per poll
(which ansible-core stops with a RecursionError after about 250 polls)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.xapi.sxm.plugins.modules.migration_wait import ARGUMENT_SPEC

display = Display()

MODULE = "xapi.sxm.migration_wait"
MiB = 1048576.0
# Keys async_wrapper and async_status add to a job's result; the rest is the job's own.
ASYNC_KEYS = frozenset(("ansible_job_id", "started", "finished", "results_file",
                        "stdout", "stderr", "stdout_lines", "stderr_lines"))
# A poll that cannot reach the host (an ssh hiccup to a mover host) is retried for this long:
# giving up at once would let the job stop itself although it is fine.
UNREACHABLE_GRACE_S = 300
FIRST_POLL_S = 0.5
EARLY_S = 6.0


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if not args["jid"]:
            # the async task was skipped: there is no job to wait for
            result.update(skipped=True, changed=False, msg="no job to wait for (the async task gave no jid)")
            return result
        problem = self._check_args(args)
        if problem:
            result.update(failed=True, msg=problem)
            return result
        try:
            result.update(self._wait(args, task_vars or {}))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    @staticmethod
    def _check_args(args):
        if args["interval"] <= 0:
            return "interval must be more than 0 seconds"
        if args["progress_every"] < 0:
            return "progress_every must not be negative"
        if args["timeout"] <= 0:
            return "timeout must be more than 0 seconds"
        return None

    def _async_dir(self):
        # where async_wrapper wrote the job file: the same lookup as ansible.builtin.async_status
        async_dir = self.get_shell_option("async_dir", default="~/.ansible_async")
        return self._remote_expand_user(async_dir)

    def _wait(self, args, task_vars):
        module_args = {"jid": args["jid"], "progress_file": args["progress_file"],
                       "keepalive_file": args["keepalive_file"], "_async_dir": self._async_dir()}
        lines = ProgressLines(args["label"], args["progress_every"])
        self._unreachable_since = None
        started = time.monotonic()
        polls = 0
        # a short job should not wait a whole interval for its end to be seen: every
        # FIRST_POLL_S for the first EARLY_S seconds, then every interval
        delay = min(FIRST_POLL_S, args["interval"])
        # Ansible's workers detach (setsid): one whose ansible-playbook was killed outright
        # lives on, and its polls would keep an abandoned job alive. It stops polling instead,
        # so that the job stops itself once its keepalive file is stale.
        controller = os.getppid()
        while True:
            if os.getppid() != controller:
                return controller_gone(controller, polls, time.monotonic() - started)
            poll_started = time.monotonic()
            answer = self._poll(module_args, task_vars)
            polls += 1
            waited = time.monotonic() - started
            if answer.get("failed"):
                return dict(answer, polls=polls, waited_s=round(waited, 1))
            if answer.get("finished"):
                return job_result(answer, polls, waited)
            lines.show(answer.get("progress"), waited)
            if waited >= args["timeout"]:
                return timed_out(args, polls, waited)
            if waited >= EARLY_S:
                delay = args["interval"]
            time.sleep(max(0.0, delay - (time.monotonic() - poll_started)))

    def _poll(self, module_args, task_vars):
        """One run of the module; a host that cannot be reached counts as a job still running
        until UNREACHABLE_GRACE_S have passed without a successful poll."""
        try:
            answer = self._execute_module(module_name=MODULE, module_args=dict(module_args), task_vars=task_vars)
        except AnsibleConnectionFailure as e:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
            if time.monotonic() - self._unreachable_since > UNREACHABLE_GRACE_S:
                raise
            display.warning("migration_wait: cannot reach the host (%s), trying again" % e)
            self._reset_connection()
            return {"finished": False}
        self._unreachable_since = None
        return answer

    def _reset_connection(self):
        try:
            self._connection.reset()
        except Exception as e:  # noqa: BLE001 - a connection without a working reset is retried as it is
            display.vvv("migration_wait: connection reset failed: %s" % e)


def job_result(answer, polls, waited):
    """The job's own result, without the async bookkeeping, as this task's result."""
    job = answer.get("job") or {}
    result = {k: v for k, v in job.items() if k not in ASYNC_KEYS and not k.startswith("_ansible_")}
    result["changed"] = bool(result.get("changed", False))
    result["failed"] = bool(result.get("failed", False))
    if result["failed"] and not result.get("msg") and not result.get("exception"):
        # (with an exception, ansible-core makes the message from it)
        result["msg"] = "the job failed without a message"
    facts = answer.get("ansible_facts")
    if facts:
        # the interpreter discovered for the polls, as _execute_module reports it
        result["ansible_facts"] = dict(facts, **(result.get("ansible_facts") or {}))
    result.update(polls=polls, waited_s=round(waited, 1))
    return result


def timed_out(args, polls, waited):
    if args["keepalive_file"]:
        fate = "it stops itself once nothing touches its keepalive file %s" % args["keepalive_file"]
    else:
        fate = "it keeps running until it ends or reaches its async limit"
    msg = "gave up waiting for job %s after %d s (timeout); the job was not stopped: %s" % (
        args["jid"], waited, fate)
    return {"failed": True, "changed": False, "msg": msg, "ansible_job_id": args["jid"],
            "polls": polls, "waited_s": round(waited, 1)}


class ProgressLines:
    """Decides when to print a progress line and prints it; remembers only the last one."""

    def __init__(self, label, every):
        self.prefix = "%s: " % label if label else ""
        self.every = every
        self.last_at = None
        self.last_phase = None

    def show(self, state, now):
        phase = state.get("phase") if isinstance(state, dict) else None
        due = self.last_at is None or now - self.last_at >= self.every
        if not due and phase == self.last_phase:
            return
        self.last_at, self.last_phase = now, phase
        display.display(self.prefix + (progress_line(state) if phase else "running, %d s so far" % now))


def controller_gone(pid, polls, waited):
    return {"failed": True, "error_code": "SXM_CANCELLED", "polls": polls, "waited_s": round(waited, 1),
            "msg": "the controller (ansible-playbook, pid %d) is gone: stopped waiting, and the job stops "
                   "itself once nothing keeps it alive" % pid}


def progress_line(state):
    """One line from the progress file of plugins/module_utils/progress.py (Progress.state())."""
    if not state.get("nodes") and not state.get("bytes_done"):
        return "%s, %d s so far" % (state["phase"], float(state.get("elapsed_s") or 0))
    if not state.get("nodes"):
        return "%s: %.1f of %.1f MiB read, %.1f MiB/s, ETA %s s" % (
            state["phase"], float(state.get("bytes_done") or 0) / MiB,
            float(state.get("bytes_total_estimate") or 0) / MiB, float(state.get("rate_bytes_per_s") or 0) / MiB,
            "?" if state.get("eta_s") is None else state["eta_s"])
    try:
        eta = state.get("eta_s")
        return "%s, disk %s node %s of %s (%s): %.1f of %.1f MiB, %.1f MiB/s, ETA %s s" % (
            state["phase"], state.get("disk", ""), state.get("node", "?"), state.get("nodes", "?"),
            state.get("node_name", ""), float(state.get("bytes_done") or 0) / MiB,
            float(state.get("bytes_total_estimate") or 0) / MiB,
            float(state.get("rate_bytes_per_s") or 0) / MiB, "?" if eta is None else eta)
    except (TypeError, ValueError):
        return "%s (unreadable progress figures)" % state["phase"]

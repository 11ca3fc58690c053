#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: migration_wait
short_description: Wait for a migration started with async, printing progress and keeping it alive
version_added: 0.1.0
description:
  - Waits for a task started with C(async) and C(poll) set to V(0), typically
    M(xapi.sxm.vm_migrate), and returns that task's own result once it ends (its C(changed), C(failed), C(msg) and
    every other key), as if the task had run without C(async); it fails when that task
    failed.
  - Every O(interval) seconds it looks at the job once, on the host where the job runs (the
    task's host, or its C(delegate_to) host), reads the job's progress file and touches its
    keepalive file. A job that watches its keepalive file stops itself when nobody touches
    it any more, for example when ansible-playbook was killed.
  - Prints a progress line every O(progress_every) seconds, and whenever the phase changes,
    at the default verbosity.
  - Time and memory per look stay the same however long the job runs, unlike a task file
    that includes itself once per look.
  - Removes the job's file from the async directory and the keepalive file once the job
    has ended.
  - Most of the work is done by an action plugin on the controller; the module is what it
    runs on the host at each look.
author:
  - xapi.sxm contributors (@xapi-sxm)
options:
  jid:
    description:
      - The C(ansible_job_id) of the registered async task.
      - An empty value (the async task was skipped) makes this task skipped.
    type: str
    required: true
  progress_file:
    description:
      - Path, on the host where the job runs, of the JSON progress file the job writes, for
        example O(xapi.sxm.vm_migrate#module:progress_file).
      - A missing or partly written file prints no progress line.
    type: path
  keepalive_file:
    description:
      - Path, on the host where the job runs, of the file whose modification time tells the
        job that someone still waits for it. Touched at every look, created with mode
        V(0600) when missing.
    type: path
  interval:
    description:
      - Seconds from the start of one look to the start of the next. For the first 6 seconds
        it looks every 0.5 s (at most as often as O(interval)), so that the end of a short
        job is seen soon.
    type: float
    default: 2
  progress_every:
    description:
      - Seconds between two progress lines. V(0) prints one at every look.
    type: float
    default: 10
  timeout:
    description:
      - Seconds to wait before the task fails. The job itself is not stopped; it keeps running
        while something else touches its keepalive file, and stops itself otherwise.
    type: int
    default: 86400
  label:
    description:
      - Text at the start of every progress line, for example the name of the VM.
    type: str
  _async_dir:
    description:
      - Internal, set by the action plugin on the controller, which refuses it in a task.
      - The async directory on the host, from the shell's C(async_dir) option, as for
        M(ansible.builtin.async_status).
    type: path
notes:
  - Supports check mode; in check mode it waits for the job all the same, since the job itself
    ran in check mode.
  - Give this task the same C(delegate_to) as the async task, so that it looks at the job on
    the host where the job runs.
  - Does not support C(async) itself.
seealso:
  - module: ansible.builtin.async_status
"""

EXAMPLES = r"""
- name: Start the migration
  xapi.sxm.vm_migrate:
    source: "{{ pool_a }}"
    destination: "{{ pool_b }}"
    vm: vm01
    sr_map: {}
    progress_file: /tmp/sxm-progress-vm01.json
    keepalive_file: /tmp/sxm-keepalive-vm01
  async: 86400
  poll: 0
  register: job

- name: Wait for it, printing progress lines
  xapi.sxm.migration_wait:
    jid: "{{ job.ansible_job_id | default('') }}"
    progress_file: /tmp/sxm-progress-vm01.json
    keepalive_file: /tmp/sxm-keepalive-vm01
    label: vm01
  register: migration
"""

RETURN = r"""
# Besides these, every key of the job's own result (for example changed, failed, msg), less
# the async bookkeeping (ansible_job_id, started, finished, results_file, stdout, stderr).
polls:
  description: How many times the job was looked at.
  returned: when the job was waited for
  type: int
  sample: 412
waited_s:
  description: Seconds spent waiting.
  returned: when the job was waited for
  type: float
  sample: 823.4
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

# seconds async_wrapper gets to record the result of a module whose process ended
RESULT_GRACE_S = 10

# The options users give the task; the action plugin on the controller validates them with this
# spec. `_async_dir` is added by that plugin, like ansible.builtin.async_status's.
ARGUMENT_SPEC = dict(
    jid=dict(type="str", required=True),
    progress_file=dict(type="path"),
    keepalive_file=dict(type="path"),
    interval=dict(type="float", default=2),
    progress_every=dict(type="float", default=10),
    timeout=dict(type="int", default=86400),
    label=dict(type="str"),
)


def read_job(path):
    """The job file's JSON, or None when there is no such file. async_wrapper replaces the file
    with a rename, but a file that does not parse yet is still a running job, as for
    async_status."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {"started": True, "finished": False}
    return data


def job_finished(data):
    # async_wrapper's own records carry "started"; a module's result (or the wrapper's timeout
    # and crash records) does not
    return "started" not in data or bool(data.get("finished"))


def job_died(job_path, progress_path, progress, jid):
    """Whether the job's own process is gone. async_wrapper records a result when the module
    dies alone; when the whole job was killed (an operator, the OOM killer, a reboot) nothing
    would ever say so. The progress file names the module's pid once this job wrote it (it is
    not older than the job file async_wrapper wrote when it started); before that — a job
    killed in its first seconds — async_wrapper's own process, whose command line names the
    job, tells."""
    pid = (progress or {}).get("pid")
    try:
        own = isinstance(pid, int) and pid > 0 and os.path.getmtime(progress_path) >= os.path.getmtime(job_path)
    except OSError:
        own = False
    if own:
        return not process_alive(pid)
    return not wrapper_alive(jid)


def wrapper_alive(jid):
    """Whether an async_wrapper of job ``jid`` still runs (its first argument is the jid
    before the dot). Without /proc nothing can be told: it is taken as alive."""
    if not os.path.isdir("/proc"):
        return True
    token = jid.split(".")[0].encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if token in args and any(a.endswith(b"async_wrapper.py") for a in args) and process_alive(int(entry)):
            return True
    return False


def process_alive(pid):
    """Whether ``pid`` runs. A zombie does not: a job killed with its async_wrapper stays one
    until PID 1 reaps it, which in some containers never happens."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True      # no /proc here: what kill says
    return state not in ("Z", "X")


def result_after_exit(job_path, grace=RESULT_GRACE_S):
    """The job file once async_wrapper had time to write it: a module that ended, even with an
    error, is gone (or a zombie) a moment before its wrapper records its result."""
    deadline = time.monotonic() + grace
    while True:
        data = read_job(job_path) or {}
        if job_finished(data) or time.monotonic() >= deadline:
            return data
        time.sleep(0.2)


def died(pid):
    who = "the job's process (pid %d)" % pid if isinstance(pid, int) else "the job"
    return {"failed": True, "error_code": "SXM_JOB_DIED",
            "msg": "%s is gone without leaving a result: it was killed. What to do: "
                   "run again to continue: completed steps are kept and skipped" % who,
            "advice": "run again to continue: completed steps are kept and skipped"}


def read_progress(path):
    if not path:
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None  # progress is a courtesy: not written yet, or being replaced
    return data if isinstance(data, dict) else None


def touch(path):
    # the first poll can come before the job made the folder (it does so after its logins)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.utime(path, None)


def remove(path):
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def job_vm(data):
    """The VM a job's result is about: its vm_uuid, or (a failure's result may have none) the
    vm it was given."""
    return data.get("vm_uuid") or (data.get("partial_result") or {}).get("vm_uuid") \
        or ((data.get("invocation") or {}).get("module_args") or {}).get("vm")


def remove_orphan_results(async_dir, job):
    """The results that jobs of the same VM left when nobody waited for them any more (their
    controller was killed): finished, about the same VM. Nobody else would read them."""
    names = {job.get("vm_uuid"), ((job.get("invocation") or {}).get("module_args") or {}).get("vm")} - {None}
    if not names:
        return []
    removed = []
    for name in sorted(os.listdir(async_dir)):
        path = os.path.join(async_dir, name)
        data = read_job(path) if os.path.isfile(path) else None
        if data and "started" not in data and job_vm(data) in names:
            remove(path)
            removed.append(name)
    return removed


def main():
    # not required=True: ansible-doc would show an option users cannot set as a required one
    spec = dict(ARGUMENT_SPEC, _async_dir=dict(type="path"))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    if not params["_async_dir"]:
        module.fail_json(msg="_async_dir is missing: this module runs through its action plugin")
    job_path = os.path.join(params["_async_dir"], params["jid"])
    data = read_job(job_path)
    if data is None:
        module.fail_json(msg="could not find job %s: no file %s" % (params["jid"], job_path),
                         results_file=job_path)
    progress = read_progress(params["progress_file"])
    if not job_finished(data) and job_died(job_path, params["progress_file"], progress, params["jid"]):
        data = result_after_exit(job_path)
        if not job_finished(data):
            data = died((progress or {}).get("pid"))
    if job_finished(data):
        # nothing may stay behind in the async directory, and the job no longer needs keeping alive
        remove(job_path)
        remove(params["keepalive_file"])
        remove_orphan_results(params["_async_dir"], data)
        module.exit_json(changed=False, finished=True, job=data, progress=progress)
    if params["keepalive_file"]:
        try:
            touch(params["keepalive_file"])
        except OSError as e:
            module.fail_json(msg="cannot touch the keepalive file %s: %s; the job stops itself when it is not touched"
                             % (params["keepalive_file"], e), results_file=job_path)
    module.exit_json(changed=False, finished=False, job=None, progress=progress)


if __name__ == "__main__":
    main()

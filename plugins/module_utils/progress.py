# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress of a migration while data moves: a XAPI task on each pool whose ``progress``
advances (visible in XenCenter and Xen Orchestra), and a JSON progress file the roles read
to print progress lines."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import threading
import time

from ansible_collections.xapi.sxm.plugins.module_utils.xapi import XapiFailure, remove_stale_tasks

TASK_INTERVAL = 1.0     # seconds between task.set_progress calls (XenCenter polls about as often)
FILE_INTERVAL = 0.5


class Progress:
    """Counts bytes read against an estimate of the bytes to read, and publishes."""

    def __init__(self, conns, label, total_bytes, path=None, clock=time.monotonic, cancel=None,
                 description="xapi.sxm migration"):
        self.conns = list(conns)
        self.label = label
        self.description = description
        self.total = max(1, int(total_bytes))
        self.path = path
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.node = (0, 0, "")
        self.disk = ""
        self.phase = "starting"
        self.tasks = []
        self.last_file = 0.0
        self.stop = threading.Event()
        self.updater = None
        self.cancel = cancel      # checked as data moves: a cancelled job stops mid-node
        # the disks of a VM and verification's readers report from threads of their own
        self.counting = threading.Lock()

    def start(self):
        """Create the tasks. Pending tasks of the same label and description are a killed
        run's (the caller holds the job's lock): they are removed first."""
        for conn in self.conns:
            remove_stale_tasks(conn, self.label, self.description)
            try:
                task = conn.call("task.create", self.label, self.description)
                self.tasks.append((conn, task))
            except XapiFailure:
                pass  # progress is a courtesy; the migration does not depend on it
        self.publish(force=True)
        if self.tasks:
            # a thread of its own: a busy pool answers slowly, and data must not wait for it
            self.updater = threading.Thread(target=self._update_tasks, daemon=True)
            self.updater.start()
        return self

    def _update_tasks(self):
        last = None
        while not self.stop.wait(TASK_INTERVAL):
            value = self.fraction()
            if value == last:
                continue
            last = value
            for conn, task in self.tasks:
                try:
                    conn.call("task.set_progress", task, value)
                except XapiFailure:
                    pass

    def set_node(self, disk, index, count, name):
        """The node disk ``disk`` is at (disks are mirrored side by side: the last one told)."""
        with self.counting:
            self.disk, self.node, self.phase = disk, (index, count, name), "mirror"
            self.publish(force=True)

    def set_phase(self, phase):
        with self.counting:
            self.phase = phase
            self.publish(force=True)

    def add(self, nbytes):
        with self.counting:
            self.done += nbytes
            self.publish()
        if self.cancel is not None:
            self.cancel.check()

    def fraction(self):
        return min(0.99, self.done / float(self.total))

    def state(self):
        elapsed = max(1e-6, self.clock() - self.started)
        rate = self.done / elapsed
        remaining = max(0, self.total - self.done)
        return {"phase": self.phase, "bytes_done": self.done, "bytes_total_estimate": self.total,
                "fraction": round(self.fraction(), 4), "rate_bytes_per_s": int(rate),
                "eta_s": int(remaining / rate) if rate > 0 else None, "disk": self.disk,
                "node": self.node[0], "nodes": self.node[1], "node_name": self.node[2],
                "elapsed_s": round(elapsed, 1), "updated": time.time(),
                # the waiter tells a job that was killed outright (no result will come) by it
                "pid": os.getpid()}

    def publish(self, force=False):
        now = self.clock()
        if self.path and (force or now - self.last_file >= FILE_INTERVAL):
            self.last_file = now
            write_json_atomically(self.path, self.state())

    def finish(self, ok=True):
        self.stop.set()
        if self.updater is not None:
            self.updater.join()
        self.phase = "done" if ok else "failed"
        if ok:
            self.done = max(self.done, self.total)
        if self.path:
            write_json_atomically(self.path, dict(self.state(), fraction=1.0 if ok else self.fraction()))
        for conn, task in self.tasks:
            try:
                conn.call("task.set_status", task, "success" if ok else "failure")
                conn.call("task.destroy", task)
            except XapiFailure:
                pass
        self.tasks = []


def write_json_atomically(path, data):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every error the collection raises: one root class with a code, a cause in words and what to
do, plus the partial result of the work done before the failure. Modules turn any of them, and
any foreign exception (``error_from``), into ``fail_json`` with those fields: never a traceback.

Plain Python: no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import socket
import ssl

RUN_AGAIN = "run again to continue: completed steps are kept and skipped"


class SxmError(Exception):
    """Root of the collection's errors. ``code`` is stable (documented in
    docs/troubleshooting.md, which a unit test keeps complete), ``message`` says what happened,
    ``advice`` what to do, and ``partial`` carries what was done before the failure (nodes,
    bytes)."""

    code = "SXM_ERROR"
    advice = "see the message; " + RUN_AGAIN

    def __init__(self, message, code=None, advice=None, partial=None):
        super(SxmError, self).__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if advice is not None:
            self.advice = advice
        self.partial = dict(partial or {})

    def __str__(self):
        return self.message


class InputError(SxmError):
    """An option that cannot work; found before anything moves."""
    code = "SXM_INVALID_INPUT"
    advice = "correct the option and run again; nothing was changed"


class PreflightError(SxmError):
    """A pool or VM in a state the migration cannot start from; nothing was changed."""
    code = "SXM_PREFLIGHT"
    advice = "fix what the message names, then run again; nothing was changed"


class StateError(SxmError):
    """The destination holds something that does not fit the step asked for."""
    code = "SXM_STATE"
    advice = "see the message: it names the object and what to do with it"


class DataPathError(SxmError):
    """Disk data could not be read (NBD) or written (HTTP import)."""
    code = "SXM_DATA_PATH"
    advice = RUN_AGAIN


class MetadataError(SxmError):
    """The VM's metadata could not be exported, mapped or imported."""
    code = "SXM_METADATA"
    advice = "see the message; " + RUN_AGAIN


class VerificationError(SxmError):
    """The destination does not equal the source; the source is untouched."""
    code = "SXM_VERIFY"
    advice = ("the source is untouched; run again: the disks and nodes that differ are "
              "copied again (remove the destination copy with migration_cleanup if it "
              "keeps failing)")


class LockHeld(SxmError):
    """Another run holds this job's lock."""
    code = "SXM_LOCK_HELD"
    advice = ("wait for that run to finish and run again; a run whose controller stopped "
              "polling stops itself, and a dead holder's lock is taken over after lock_timeout")


class JobCancelled(SxmError):
    """The job stopped itself: nobody polled it, it was signalled, or it lost its lock."""
    code = "SXM_CANCELLED"
    advice = "no disposition was applied; " + RUN_AGAIN


class Drained(SxmError):
    """The evacuation is draining: a VM that had not started was left for a later run."""
    code = "SXM_DRAINED"
    advice = ("nothing of this VM was changed by this run; resume the evacuation "
              "(playbooks/evacuation_control.yml with sxm_evacuation_state=running) and run it again")


class WaitTimeout(SxmError):
    """A XAPI task or data handler did not finish in time."""
    code = "SXM_TIMEOUT"
    advice = "the pool may be overloaded or the task stuck: check its tasks, then " + RUN_AGAIN


class XapiFailure(SxmError):
    """A failed XAPI call: ``code`` is XAPI's error code, ``params`` its parameters."""
    code = "XAPI_ERROR"
    advice = "see the message; " + RUN_AGAIN

    def __init__(self, message, code=None, params=None, advice=None, partial=None):
        super(XapiFailure, self).__init__(message, code=code or "XAPI_ERROR", advice=advice,
                                          partial=partial)
        self.params = list(params or [])


def error_classes():
    """Every error class of the collection (for the docs and the tests)."""
    found, todo = [], [SxmError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def error_from(exc):
    """Any exception as an SxmError (unchanged when it already is one)."""
    if isinstance(exc, SxmError):
        return exc
    try:
        import XenAPI
        if isinstance(exc, XenAPI.Failure):
            details = list(exc.details) or ["UNKNOWN"]
            return XapiFailure("XAPI error %s %s" % (details[0], details[1:]), details[0], details[1:])
    except ImportError:  # pragma: no cover
        pass
    try:
        import nbd
        if isinstance(exc, nbd.Error):
            text = exc.string or str(exc)
            if "gnutls" in text or "TLS" in text:
                # what a TLS session reports when the connection under it was cut
                return DataPathError("the encrypted NBD connection to the source was cut or "
                                     "garbled (%s)" % text)
            return DataPathError("the NBD connection failed: %s" % text)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, ssl.SSLError):
        return SxmError("a TLS connection failed (%s)" % (getattr(exc, "reason", None) or exc),
                        code="SXM_TLS", advice="check ca_path and the pool's certificate; if "
                        "the connection was merely cut, " + RUN_AGAIN)
    if isinstance(exc, (ConnectionError, socket.timeout, socket.gaierror, http.client.HTTPException)):
        return SxmError("a connection to a pool broke (%s: %s)" % (type(exc).__name__, exc),
                        code="SXM_CONNECTION", advice="check the network; " + RUN_AGAIN)
    if isinstance(exc, OSError):
        return SxmError("a file or system call failed on the host running the step (%s: %s)"
                        % (type(exc).__name__, exc), code="SXM_HOST",
                        advice="check the path, its permissions and free space; " + RUN_AGAIN)
    if isinstance(exc, KeyboardInterrupt):
        return JobCancelled("interrupted")
    return SxmError("unexpected %s: %s" % (type(exc).__name__, exc), code="SXM_INTERNAL",
                    advice="please report it with the output at -vvv; " + RUN_AGAIN)

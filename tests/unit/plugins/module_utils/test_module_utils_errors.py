"""errors.py: every error class has its own stable code and advice, and ``error_from`` turns any
foreign exception the collection meets (XenAPI, libnbd, TLS, a cut connection, the host's files,
Ctrl-C, anything else) into an SxmError with the documented code."""

import inspect
import ssl

import nbd
import pytest
import XenAPI

from ansible_collections.xapi.sxm.plugins.module_utils import errors
from ansible_collections.xapi.sxm.plugins.module_utils.errors import (
    DataPathError, JobCancelled, SxmError, XapiFailure, error_classes, error_from)


def test_error_classes_cover_every_subclass_with_distinct_codes_and_advice():
    defined = {c for dummy, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, SxmError)}
    found = error_classes()
    assert set(found) == defined and len(found) == len(defined) >= 11
    codes = [c.code for c in found]
    assert len(set(codes)) == len(codes), codes
    assert all(c.advice.strip() for c in found)


def test_a_xenapi_failure_keeps_xapis_code_and_params():
    e = error_from(XenAPI.Failure(["VDI_IN_USE", "OpaqueRef:1", "destroy"]))
    assert e.__class__ is XapiFailure
    assert e.code == "VDI_IN_USE" and e.params == ["OpaqueRef:1", "destroy"]
    assert "VDI_IN_USE" in e.message
    assert error_from(XenAPI.Failure([])).code == "UNKNOWN"


@pytest.mark.parametrize("exc, cls, code", [
    (nbd.Error("the export is gone", 5), DataPathError, "SXM_DATA_PATH"),
    (ssl.SSLError(1, "certificate verify failed"), SxmError, "SXM_TLS"),
    (ConnectionResetError(104, "reset by peer"), SxmError, "SXM_CONNECTION"),
    (FileNotFoundError(2, "No such file", "/nowhere/report"), SxmError, "SXM_HOST"),
    (KeyboardInterrupt(), JobCancelled, "SXM_CANCELLED"),
    (ValueError("odd"), SxmError, "SXM_INTERNAL"),
])
def test_foreign_exceptions_get_the_documented_code(exc, cls, code):
    e = error_from(exc)
    assert e.__class__ is cls and e.code == code
    assert e.message and e.advice


def test_messages_name_the_cause():
    assert "the export is gone" in error_from(nbd.Error("the export is gone", 5)).message
    assert "/nowhere/report" in error_from(FileNotFoundError(2, "No such file", "/nowhere/report")).message
    assert "ValueError: odd" in error_from(ValueError("odd")).message


def test_an_sxm_error_passes_through_unchanged():
    original = XapiFailure("gone", "HANDLE_INVALID", ["VM", "OpaqueRef:x"], partial={"nodes": 2})
    assert error_from(original) is original
    cancelled = JobCancelled("received SIGTERM")
    assert error_from(cancelled) is cancelled


def test_a_cut_tls_session_says_so_and_to_run_again():
    e = error_from(nbd.Error("gnutls_record_recv: Error decoding the received TLS packet.", 5))
    assert e.code == "SXM_DATA_PATH" and "encrypted NBD connection" in e.message
    assert "run again" in e.advice

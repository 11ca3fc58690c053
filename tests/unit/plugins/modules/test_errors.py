"""Every failure ends in fail_json, never a traceback: each of the collection's errors, and the
foreign exceptions the modules meet (XenAPI, libnbd, TLS, a cut connection, Ctrl-C), raised
inside each module's work, give a message, an error code, advice and the partial result."""

import importlib
import json
import ssl

import nbd
import pytest
import XenAPI
from ansible.module_utils.testing import patch_module_args

from ansible_collections.xapi.sxm.plugins.module_utils.errors import SxmError, XapiFailure, error_classes
from ansible_collections.xapi.sxm.plugins.module_utils.sxm_module import SxmModule

PASSWORD = "pw-Never-Printed-7f3a"
POOL = {"url": "https://pool.example", "username": "root", "password": PASSWORD}
TWO_POOLS = {"source": POOL, "destination": dict(POOL, url="https://other.example"), "vm": "vm01"}
MODULES = {
    "migration_plan": TWO_POOLS,
    "vdi_mirror": TWO_POOLS,
    "vm_metadata": TWO_POOLS,
    "migration_verify": TWO_POOLS,
    "vm_cutover": TWO_POOLS,
    "migration_cleanup": TWO_POOLS,
    "vm_migrate": TWO_POOLS,
    "snapshot_tree_info": dict(POOL, vm="vm01"),
}
PARTIAL = {"nodes_done": 2}


def collection_error(cls):
    if issubclass(cls, XapiFailure):
        return cls("VDI.copy failed", "VDI_IO_ERROR", ["x"], partial=PARTIAL)
    return cls("%s raised in the test" % cls.__name__, partial=PARTIAL)


ERRORS = [collection_error(cls) for cls in error_classes()] + [
    XenAPI.Failure(["VDI_IO_ERROR", "x"]),
    nbd.Error("boom", 5),
    ssl.SSLError(1, "bad record"),
    ConnectionResetError(104, "reset"),
    KeyboardInterrupt(),
]


def run_module(name, args, tmp_path, capsys):
    """Run the module's main() in-process; its stdout and exit code."""
    module = importlib.import_module("ansible_collections.xapi.sxm.plugins.modules." + name)
    args = dict(args, _ansible_remote_tmp=str(tmp_path), _ansible_keep_remote_files=False)
    with patch_module_args(args):
        try:
            module.main()
        except SystemExit as e:
            return capsys.readouterr().out, e.code
        except BaseException as e:  # noqa: BLE001 - anything but SystemExit escaped the module
            pytest.fail("%s escaped %s: %r" % (type(e).__name__, name, e))
    pytest.fail("%s returned without exiting" % name)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_error_ends_in_fail_json(name, error, monkeypatch, tmp_path, capsys):
    def connect(self):
        raise error

    monkeypatch.setattr(SxmModule, "pools", connect)
    monkeypatch.setattr(SxmModule, "pool", connect)
    out, code = run_module(name, MODULES[name], tmp_path, capsys)

    assert PASSWORD not in out
    result = json.loads(out)
    assert code == 1 and result["failed"] is True
    assert result["msg"] and "Traceback" not in result["msg"]
    assert isinstance(result["error_code"], str) and result["error_code"]
    assert result["advice"]
    assert isinstance(result["partial_result"], dict)
    if isinstance(error, SxmError):
        assert result["error_code"] == error.code
        assert result["partial_result"]["nodes_done"] == 2


def test_error_codes_are_distinct():
    codes = [cls.code for cls in error_classes()]
    assert len(set(codes)) == len(codes)
    assert all(isinstance(c, str) and c.startswith(("SXM_", "XAPI_")) for c in codes)


@pytest.mark.parametrize("name", ["vdi_mirror", "vm_migrate", "migration_plan"])
def test_nonsense_is_refused_before_any_pool_is_contacted(name, tmp_path, capsys, monkeypatch):
    """A negative limit or an empty name fails at the argument check: no login is tried (the
    pools here do not exist), the message names the option, nothing was changed."""
    monkeypatch.setattr(SxmModule, "connect", lambda *a: pytest.fail("a pool was contacted"))
    args = dict(TWO_POOLS, bandwidth_limit=-5, vm=" ") if name != "migration_plan" else dict(TWO_POOLS, vm="")
    out, code = run_module(name, args, tmp_path, capsys)
    result = json.loads(out)
    assert code == 1 and result["error_code"] == "SXM_INVALID_INPUT" and not result["changed"]
    assert "vm is empty" in result["msg"] and "nothing was changed" in result["msg"]
    if name != "migration_plan":
        assert "bandwidth_limit is -5" in result["msg"]

"""session_guard.py: when the module's side of the pipe closes without "done" (the module was
killed), the guardian logs out of every session it was told of and not told to forget; after
"done" it logs out of nothing. Against a simulated pool: whether a session lives is asked with
another session."""

import os

import XenAPI

from ansible_collections.xapi.sxm.plugins.module_utils.session_guard import SessionGuard, private_folder
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection


def alive(x, ref):
    try:
        x.xenapi.session.get_uuid(ref)
        return True
    except XenAPI.Failure:
        return False


def guarded(pool, guard):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"], guard=guard).login()


def test_a_killed_module_s_sessions_are_logged_out_by_the_guardian(pools, connect):
    x = connect(0)
    guard = SessionGuard()
    kept, dropped = guarded(pools[0], guard), guarded(pools[1], guard)
    refs = kept.session_ref, dropped.session_ref
    dropped.logout()
    assert alive(x, refs[0])
    proc = guard._proc
    proc.stdin.close()          # what the module's death does to the pipe
    assert proc.wait(10) == 0
    assert not alive(x, refs[0])


def test_after_done_the_guardian_exits_and_logs_out_of_nothing(pools, connect):
    x = connect(0)
    guard = SessionGuard()
    conn = guarded(pools[0], guard)
    proc = guard._proc
    guard.close()
    assert proc.wait(10) == 0
    ref = conn.session_ref
    assert alive(x, ref)
    conn.logout()
    assert not alive(x, ref)


def test_the_guardian_s_command_line_holds_no_session(pools):
    guard = SessionGuard()
    conn = guarded(pools[0], guard)
    with open("/proc/%d/cmdline" % guard._proc.pid, "rb") as f:
        assert conn.session_ref.encode() not in f.read()
    conn.logout()
    guard.close()


def test_a_killed_module_s_payload_folder_is_removed(pools, tmp_path, monkeypatch):
    """With the folders the module made for its own files (an NBD certificate), which a kill
    left in the temp dir until they were made inside the payload (fault matrix, 2026-12-02)."""
    folder = tmp_path / "ansible_xapi.sxm.vdi_mirror_payload_abc"
    folder.mkdir()
    (folder / "ansible_xapi.sxm.vdi_mirror_payload.zip").write_bytes(b"zip")
    monkeypatch.syspath_prepend(str(folder / "ansible_xapi.sxm.vdi_mirror_payload.zip"))
    certs = private_folder("sxm-nbd-")
    assert os.path.dirname(certs) == str(folder) and os.stat(certs).st_mode & 0o777 == 0o700
    guard = SessionGuard()
    guarded(pools[0], guard)
    proc = guard._proc
    proc.stdin.close()
    assert proc.wait(10) == 0
    assert not folder.exists()


def test_a_started_guardian_is_there_before_the_first_login(pools, connect):
    """SxmModule starts its guardian before it logs in: a module killed between XAPI creating
    its first session and a guardian starting left that session behind (fault matrix)."""
    x = connect(0)
    guard = SessionGuard()
    guard.start()
    proc = guard._proc
    assert proc is not None and proc.poll() is None
    conn = guarded(pools[0], guard)
    assert guard._proc is proc          # the login used the guardian already running
    proc.stdin.close()
    assert proc.wait(10) == 0
    assert not alive(x, conn.session_ref)

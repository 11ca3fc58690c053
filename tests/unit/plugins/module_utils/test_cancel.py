"""The cancel token, the keepalive watch (a job nobody polls stops itself) and the signal
handlers."""

import os
import signal
import stat
import threading
import time

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import cancel as cancelmod
from ansible_collections.xapi.sxm.plugins.module_utils.errors import JobCancelled


def test_cancel_first_reason_wins_and_check_raises():
    token = cancelmod.Cancel()
    assert not token.cancelled and token.reason is None
    token.check()
    assert token.wait(0.05) is False
    token.cancel("first")
    token.cancel("second")
    assert token.cancelled and token.reason == "first"
    with pytest.raises(JobCancelled) as info:
        token.check()
    assert info.value.code == "SXM_CANCELLED" and str(info.value) == "first"
    assert token.wait(5) is True


def test_wait_returns_as_soon_as_another_thread_cancels():
    token = cancelmod.Cancel()
    threading.Timer(0.2, token.cancel, args=("from a thread",)).start()
    started = time.monotonic()
    assert token.wait(5) is True
    assert time.monotonic() - started < 2
    assert token.reason == "from a thread"


def test_keepalive_cancels_when_nobody_touches(tmp_path):
    path = str(tmp_path / "keepalive")
    token = cancelmod.Cancel()
    timeout, interval = 1.0, 0.25
    watch = cancelmod.KeepaliveWatch(path, timeout, token, interval=interval)
    started = time.monotonic()
    watch.start()
    try:
        assert os.path.exists(path) and os.path.getsize(path) == 0
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert token.wait(timeout + interval + 0.5), "not cancelled in time"
        assert time.monotonic() - started >= timeout
        assert token.reason.startswith("nobody has polled this job for 1 s")
        assert "stopping at the next safe point" in token.reason
    finally:
        watch.stop()


def test_keepalive_does_not_cancel_while_touched(tmp_path):
    path = str(tmp_path / "keepalive")
    token = cancelmod.Cancel()
    with cancelmod.KeepaliveWatch(path, 1.0, token, interval=0.1):
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            os.utime(path)
            assert not token.wait(0.2), token.reason
    assert not token.cancelled


def test_keepalive_touches_an_old_file_at_start(tmp_path):
    path = str(tmp_path / "keepalive")
    with open(path, "w"):
        pass
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    token = cancelmod.Cancel()
    with cancelmod.KeepaliveWatch(path, 1.0, token, interval=0.1):
        assert not token.wait(0.5), token.reason


def test_keepalive_cancels_when_the_file_disappears(tmp_path):
    path = str(tmp_path / "keepalive")
    token = cancelmod.Cancel()
    with cancelmod.KeepaliveWatch(path, 60, token, interval=0.1):
        os.unlink(path)
        assert token.wait(1.5)
    assert "was removed" in token.reason


def test_keepalive_without_path_does_nothing():
    token = cancelmod.Cancel()
    with cancelmod.KeepaliveWatch(None, 0.1, token, interval=0.05):
        assert not token.wait(0.3)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_cancels_and_handlers_are_restored(signum):
    before = {s: signal.getsignal(s) for s in cancelmod.SIGNALS}
    token = cancelmod.Cancel()
    previous = cancelmod.install_signal_handlers(token)
    try:
        assert set(previous) == set(cancelmod.SIGNALS)
        os.kill(os.getpid(), signum)
        assert token.wait(2), "the signal did not cancel"
        assert token.reason == "received %s" % signal.Signals(signum).name
    finally:
        cancelmod.restore_signal_handlers(previous)
    assert {s: signal.getsignal(s) for s in cancelmod.SIGNALS} == before


def test_no_handlers_outside_the_main_thread():
    result = {}
    worker = threading.Thread(target=lambda: result.update(previous=cancelmod.install_signal_handlers(
        cancelmod.Cancel())))
    worker.start()
    worker.join()
    assert dict(result["previous"]) == {}

"""secret_channel.py: passwords leave the arguments, travel once over a private socket, and
the reference left in their place is useless afterwards."""

import os
import socket

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import secret_channel as channel

ARGS = {"source": {"url": "https://a", "password": "pw-a"}, "destination": {"url": "https://b", "password": "pw-b"},
        "vm": "vm01"}


def test_split_reference_fetch_fill_in():
    args, found = channel.split_secrets(ARGS)
    assert found == {"source.password": "pw-a", "destination.password": "pw-b"}
    assert "pw-a" not in repr(args) and ARGS["source"]["password"] == "pw-a", "the task's own args unchanged"
    server = channel.SecretServer(found)
    try:
        channel.with_reference(args, found, server.reference)
        assert channel.reference_in(args) == server.reference and "pw-" not in repr(args)
        assert os.stat(server.folder).st_mode & 0o777 == 0o700
        got = channel.fetch(channel.reference_in(args))
        assert server.wait(5)
        assert channel.fill_in(args, got) == ARGS
        # served once: the socket is gone, the reference useless
        assert not os.path.exists(server.address)
        with pytest.raises(channel.SecretChannelError, match="could not be fetched"):
            channel.fetch(server.reference, timeout=1)
    finally:
        server.close()


def test_a_wrong_token_gets_nothing():
    server = channel.SecretServer({"password": "pw"})
    try:
        address = server.reference[len(channel.MARKER):].rsplit(":", 1)[0]
        with pytest.raises(channel.SecretChannelError):
            channel.fetch("%s%s:%s" % (channel.MARKER, address, "0" * 32), timeout=2)
        assert not server.done.is_set()
        assert channel.fetch(server.reference) == {"password": "pw"}
    finally:
        server.close()


def test_one_pool_password_and_none():
    args, found = channel.split_secrets({"url": "https://a", "password": "pw", "vm": "x"})
    assert found == {"password": "pw"} and args["password"] is None
    assert channel.split_secrets({"url": "https://a"}) == ({"url": "https://a"}, {})
    assert channel.reference_in({"password": "plain"}) is None


def test_peer_uid_is_checked():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert channel.peer_uid(a) == os.getuid()

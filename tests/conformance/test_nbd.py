"""The simulated pool's NBD server, VDI.get_nbd_info and network purposes, checked with the real
libnbd Python bindings and nbdinfo (XAPI-FACTS §5, checklist fact 11; research/datapath.md §6.1).

Known bytes are put into a VDI by writing its disk file ``<state_dir>/disks/<uuid>.raw``
directly (simulator-only, like a guest write), then read back over NBD.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid as uuidlib

import nbd
import pytest
import XenAPI

from xapisim import client

MiB = 1 << 20
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- helpers ----------------------------------------------------------------------------------

def make_vdi(x, size=8 * MiB, label="nbd-test"):
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    return x.VDI.create({"SR": sr, "virtual_size": str(size), "type": "user",
                         "name_label": label, "name_description": "", "sharable": False,
                         "read_only": False, "other_config": {}})


def write_disk(pool, x, vdi, offset, data):
    """Simulator-only: put bytes into the VDI's disk file."""
    path = os.path.join(pool["state_dir"], "disks", x.VDI.get_uuid(vdi) + ".raw")
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def trust_dir(tmp_path, pem, name="trust"):
    """A private directory whose ca-cert.pem is the certificate to trust, as libnbd wants."""
    folder = tmp_path / name
    folder.mkdir(mode=0o700)
    (folder / "ca-cert.pem").write_text(pem)
    return str(folder)


def open_tls(info, cadir, meta_context=False):
    """Connect as a client should from get_nbd_info: TLS required, peer verified by subject."""
    h = nbd.NBD()
    h.set_export_name(info["exportname"])
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(cadir)
    h.set_tls_verify_peer(True)
    if meta_context:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_tcp(info["subject"], str(info["port"]))
    return h


def open_plain(info):
    h = nbd.NBD()
    h.set_export_name(info["exportname"])
    h.set_tls(nbd.TLS_DISABLE)
    h.connect_tcp(info["address"], str(info["port"]))
    return h


def add_fault(pool, session, spec):
    status, _, body = client.http_request(pool, "POST", "/xapisim/faults", session=session,
                                          body=json.dumps(spec).encode(),
                                          headers={"Content-Type": "application/json"})
    assert status == 200, body


def xapisim(*args):
    env = dict(os.environ, PYTHONPATH=TESTS_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "xapisim"] + list(args), env=env, check=True,
                          capture_output=True, text=True)


def port_refuses(port):
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", int(port)))
        except ConnectionRefusedError:
            return True
    return False


@pytest.fixture(scope="module")
def bs_pool(tmp_path_factory):
    """A pool of its own, started with ``xapisim up --block-status``; the purpose tests change
    its networks so that the shared pools stay as XAPI installs them."""
    state = str(tmp_path_factory.mktemp("xapisim-bs"))
    xapisim("up", "--state-dir", state, "--pools", "1", "--block-status")
    with open(os.path.join(state, "pools.json")) as f:
        entry = json.load(f)["pools"][0]
    yield entry
    xapisim("down", "--state-dir", state)


@pytest.fixture
def bs(bs_pool):
    session = client.login(bs_pool)
    yield session
    session.xenapi.session.logout()


def eth0_network(x):
    return x.network.get_by_name_label("Pool-wide network associated with eth0")[0]


# ---- get_nbd_info -----------------------------------------------------------------------------

def test_get_nbd_info_record(pools, xapi):
    """XAPI-FACTS §5: one record per IP of the attached PIF on the nbd network; exportname
    /<uuid>?session_id=<caller's session>; cert = host.get_server_certificate; subject = the
    certificate's DNS name."""
    x = xapi.xenapi
    vdi = make_vdi(x)
    infos = x.VDI.get_nbd_info(vdi)
    assert len(infos) == 1
    info = infos[0]
    assert set(info) == {"exportname", "address", "port", "cert", "subject"}
    assert info["exportname"] == "/%s?session_id=%s" % (x.VDI.get_uuid(vdi), xapi._session)
    assert info["address"] == "127.0.0.1"
    assert int(info["port"]) == pools[0]["nbd_port"]
    assert info["cert"] == x.host.get_server_certificate(x.host.get_all()[0])
    assert info["subject"] == "localhost"


def test_get_nbd_info_refuses_cbt_metadata(xapi):
    """XAPI-FACTS §4: a data-destroyed snapshot (type cbt_metadata) has no NBD export:
    VDI_INCOMPATIBLE_TYPE [vdi, "cbt_metadata"]."""
    x = xapi.xenapi
    vdi = make_vdi(x)
    x.VDI.enable_cbt(vdi)
    snap = x.VDI.snapshot(vdi, {})
    x.VDI.data_destroy(snap)
    with pytest.raises(XenAPI.Failure) as e:
        x.VDI.get_nbd_info(snap)
    assert e.value.details == ["VDI_INCOMPATIBLE_TYPE", snap, "cbt_metadata"]


# ---- reading over TLS -------------------------------------------------------------------------

def test_snapshot_read_over_verified_tls(pools, xapi, tmp_path):
    """Fact 11: a snapshot VDI read over TLS-verified NBD (ca-cert.pem = get_nbd_info's cert,
    connect to its subject) gives the bytes written; the export is read-only."""
    x = xapi.xenapi
    vdi = make_vdi(x)
    data = os.urandom(MiB)
    write_disk(pools[0], x, vdi, 3 * MiB, data)
    snap = x.VDI.snapshot(vdi, {})
    write_disk(pools[0], x, vdi, 3 * MiB, bytes(MiB))  # the snapshot must not see this
    info = x.VDI.get_nbd_info(snap)[0]
    h = open_tls(info, trust_dir(tmp_path, info["cert"]))
    assert h.get_tls_negotiated()
    assert h.get_size() == 8 * MiB
    assert h.is_read_only()
    assert bytes(h.pread(MiB, 3 * MiB)) == data
    assert bytes(h.pread(MiB, 0)) == bytes(MiB)


def test_wrong_certificate_is_rejected(pools, xapi, connect, tmp_path):
    """Fact 11: a client trusting another host's certificate (same DNS name) fails the TLS
    verification; the right one succeeds."""
    x = xapi.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    other = connect(1).xenapi
    other_cert = other.host.get_server_certificate(other.host.get_all()[0])
    assert other_cert != info["cert"]
    with pytest.raises(nbd.Error):
        open_tls(info, trust_dir(tmp_path, other_cert, "other"))
    open_tls(info, trust_dir(tmp_path, info["cert"])).shutdown()


def test_plaintext_client_refused_when_tls_required(xapi):
    """XAPI-FACTS §5: purpose nbd means FORCEDTLS; a client without TLS gets no export."""
    x = xapi.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    with pytest.raises(nbd.Error):
        open_plain(info)


def test_writes_refused(pools, xapi, tmp_path):
    """Fact 11: read-only export (NBD_FLAG_READ_ONLY): libnbd refuses a write with EPERM.
    (The server's own EPERM is checked in plaintext, test_insecure_nbd_serves_plaintext:
    nbdkit 1.32 drops a TLS connection after a refused write.)"""
    x = xapi.xenapi
    vdi = make_vdi(x)
    info = x.VDI.get_nbd_info(vdi)[0]
    h = open_tls(info, trust_dir(tmp_path, info["cert"]))
    assert h.is_read_only()
    with pytest.raises(nbd.Error) as e:
        h.pwrite(b"x" * 512, 0)
    assert e.value.errno == "EPERM"
    assert bytes(h.pread(512, 0)) == bytes(512)


def test_unaligned_read_is_einval(xapi, tmp_path):
    """XAPI-FACTS §5: requests must be 512-byte aligned (EINVAL), aligned ones work."""
    x = xapi.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    h = open_tls(info, trust_dir(tmp_path, info["cert"]))
    with pytest.raises(nbd.Error) as e:
        h.pread(100, 512)
    assert e.value.errno == "EINVAL"
    assert len(h.pread(512, 512)) == 512


def test_invalid_or_logged_out_session_refused(xapi, connect, tmp_path):
    """XAPI-FACTS §5: the session in the export name is validated at connect: a made-up
    session or one logged out since get_nbd_info is refused."""
    x = xapi.xenapi
    vdi = make_vdi(x)
    cadir = trust_dir(tmp_path, x.host.get_server_certificate(x.host.get_all()[0]))
    other = connect()
    info = other.xenapi.VDI.get_nbd_info(vdi)[0]
    open_tls(info, cadir).shutdown()  # valid while logged in
    other.xenapi.session.logout()
    with pytest.raises(nbd.Error):
        open_tls(info, cadir)
    made_up = dict(info, exportname="/%s?session_id=OpaqueRef:%s"
                   % (x.VDI.get_uuid(vdi), uuidlib.uuid4()))
    with pytest.raises(nbd.Error):
        open_tls(made_up, cadir)
    no_session = dict(info, exportname="/%s" % x.VDI.get_uuid(vdi))
    with pytest.raises(nbd.Error):
        open_tls(no_session, cadir)


def test_unknown_vdi_refused(xapi, tmp_path):
    """XAPI-FACTS §5: an export name naming no VDI is refused."""
    x = xapi.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    bogus = dict(info, exportname="/%s?session_id=%s" % (uuidlib.uuid4(), xapi._session))
    with pytest.raises(nbd.Error):
        open_tls(bogus, trust_dir(tmp_path, info["cert"]))


# ---- protocol features ------------------------------------------------------------------------

def test_no_structured_replies_block_status_or_multi_conn(xapi, tmp_path):
    """Fact 11: xapi-nbd has no structured replies, no base:allocation, no multi-conn."""
    x = xapi.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    cadir = trust_dir(tmp_path, info["cert"])
    h = open_tls(info, cadir, meta_context=True)
    assert not h.get_structured_replies_negotiated()
    assert not h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    assert not h.can_multi_conn()
    with pytest.raises(nbd.Error):
        h.block_status(MiB, 0, lambda *a: 0)
    uri = "nbds://%s:%s/%s?tls-certificates=%s" % (
        info["subject"], info["port"], urllib.parse.quote(info["exportname"], safe=""), cadir)
    shown = json.loads(subprocess.run(["nbdinfo", "--json", uri], check=True,
                                      capture_output=True, text=True).stdout)
    assert shown["TLS"] is True and shown["structured"] is False
    assert shown["exports"][0]["is_read_only"] is True
    assert shown["exports"][0]["can_multi_conn"] is False


def test_block_status_offered_with_switch(bs_pool, bs, tmp_path):
    """``xapisim up --block-status`` (simulator-only): structured replies, base:allocation
    reporting the disk's holes and data, multi-conn, still read-only."""
    x = bs.xenapi
    vdi = make_vdi(x)
    write_disk(bs_pool, x, vdi, MiB, os.urandom(64 * 1024))
    info = x.VDI.get_nbd_info(vdi)[0]
    h = open_tls(info, trust_dir(tmp_path, info["cert"]), meta_context=True)
    assert h.get_structured_replies_negotiated()
    assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    assert h.can_multi_conn()
    assert h.is_read_only()
    extents = []

    def collect(context, offset, entries, err):
        extents.extend(zip(entries[0::2], entries[1::2]))
        return 0

    h.block_status(2 * MiB, 0, collect)
    assert extents[0] == (MiB, nbd.STATE_HOLE | nbd.STATE_ZERO)
    assert extents[1][1] == 0 and extents[1][0] >= 64 * 1024


# ---- network purposes -------------------------------------------------------------------------

def test_incompatible_purposes(bs):
    """XAPI-FACTS §5: nbd and insecure_nbd never coexist in a pool:
    NETWORK_INCOMPATIBLE_PURPOSES [new, conflicting]."""
    x = bs.xenapi
    internal = x.network.get_by_name_label("Host internal management network")[0]
    assert x.network.get_purpose(eth0_network(x)) == ["nbd"]
    with pytest.raises(XenAPI.Failure) as e:
        x.network.add_purpose(internal, "insecure_nbd")
    assert e.value.details == ["NETWORK_INCOMPATIBLE_PURPOSES", "insecure_nbd", "nbd"]
    assert x.network.get_purpose(internal) == []


def test_insecure_nbd_serves_plaintext(bs_pool, bs):
    """XAPI-FACTS §5: with purpose insecure_nbd the same export is served without TLS, and a
    client requiring TLS gets nothing; a write sent to the server gets EPERM (fact 11)."""
    x = bs.xenapi
    net = eth0_network(x)
    vdi = make_vdi(x)
    data = os.urandom(4096)
    write_disk(bs_pool, x, vdi, 0, data)
    x.network.remove_purpose(net, "nbd")
    try:
        x.network.add_purpose(net, "insecure_nbd")
        infos = x.VDI.get_nbd_info(vdi)
        assert len(infos) == 1
        h = open_plain(infos[0])
        assert not h.get_tls_negotiated()
        assert bytes(h.pread(4096, 0)) == data
        h.set_strict_mode(0)  # send the write to the server instead of refusing it here
        with pytest.raises(nbd.Error) as e:
            h.pwrite(b"x" * 512, 0)
        assert e.value.errno == "EPERM"
        assert bytes(h.pread(4096, 0)) == data
        with pytest.raises(nbd.Error):
            h2 = nbd.NBD()
            h2.set_export_name(infos[0]["exportname"])
            h2.set_tls(nbd.TLS_REQUIRE)
            h2.connect_tcp(infos[0]["subject"], str(infos[0]["port"]))
        with pytest.raises(XenAPI.Failure) as e:
            x.network.add_purpose(net, "nbd")
        assert e.value.details == ["NETWORK_INCOMPATIBLE_PURPOSES", "nbd", "insecure_nbd"]
    finally:
        x.network.remove_purpose(net, "insecure_nbd")
        x.network.add_purpose(net, "nbd")


def test_no_nbd_purpose_no_server(bs_pool, bs, tmp_path):
    """XAPI-FACTS §5: without an NBD purpose get_nbd_info is empty and the port refuses
    connections, open ones cut (XAPI's firewall, nbd-firewall-config.sh); the purpose back,
    TLS connections work again."""
    x = bs.xenapi
    net = eth0_network(x)
    vdi = make_vdi(x)
    info = x.VDI.get_nbd_info(vdi)[0]
    h = open_tls(info, trust_dir(tmp_path, info["cert"]))
    x.network.remove_purpose(net, "nbd")
    try:
        assert x.VDI.get_nbd_info(vdi) == []
        assert port_refuses(bs_pool["nbd_port"])
        with pytest.raises(nbd.Error):
            h.pread(512, 0)
    finally:
        x.network.add_purpose(net, "nbd")
    info = x.VDI.get_nbd_info(vdi)[0]
    open_tls(info, trust_dir(tmp_path, info["cert"], "again")).shutdown()


# ---- faults and limits ------------------------------------------------------------------------

def read_all(h, size, chunk=512 * 1024):
    got = 0
    for offset in range(0, size, chunk):
        h.pread(chunk, offset)
        got += chunk
    return got


def test_nbd_drop_cuts_the_next_connection(pools, xapi, tmp_path):
    """Fault nbd_drop (simulator-only): the next connection is cut after N bytes; the one
    after reads everything."""
    x = xapi.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    cadir = trust_dir(tmp_path, info["cert"])
    add_fault(pools[0], xapi, {"kind": "nbd_drop", "after_bytes": MiB})
    h = open_tls(info, cadir)
    got = 0
    with pytest.raises(nbd.Error):
        for offset in range(0, 8 * MiB, 256 * 1024):
            h.pread(256 * 1024, offset)
            got += 256 * 1024
    assert got <= MiB
    assert read_all(open_tls(info, cadir), 8 * MiB) == 8 * MiB


def test_bandwidth_and_latency_apply_to_nbd(pools, xapi, tmp_path):
    """Faults bandwidth and latency (simulator-only) slow NBD reads."""
    x = xapi.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    cadir = trust_dir(tmp_path, info["cert"])
    try:
        add_fault(pools[0], xapi, {"kind": "bandwidth", "bytes_per_second": 4 * MiB})
        h = open_tls(info, cadir)
        start = time.monotonic()
        read_all(h, 2 * MiB)
        assert time.monotonic() - start >= 0.4
        add_fault(pools[0], xapi, {"kind": "clear"})
        add_fault(pools[0], xapi, {"kind": "latency", "seconds": 0.1})
        h = open_tls(info, cadir)
        start = time.monotonic()
        for i in range(5):
            h.pread(512, 0)
        assert time.monotonic() - start >= 0.5
    finally:
        add_fault(pools[0], xapi, {"kind": "clear"})
    h = open_tls(info, cadir)
    start = time.monotonic()
    read_all(h, 8 * MiB)
    assert time.monotonic() - start < 1.0


def test_seventeenth_connection_refused(xapi, tmp_path):
    """XAPI-FACTS §5: at most 16 concurrent connections per host; a 17th is closed, and a
    slot frees when a client leaves."""
    x = xapi.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    cadir = trust_dir(tmp_path, info["cert"])
    handles = [open_tls(info, cadir) for _ in range(16)]
    with pytest.raises(nbd.Error):
        open_tls(info, cadir)
    handles.pop().shutdown()
    time.sleep(0.5)  # the server notices the client left
    handles.append(open_tls(info, cadir))
    for h in handles:
        assert len(h.pread(512, 0)) == 512
        h.shutdown()


def test_down_leaves_no_nbd_process_or_port(tmp_path_factory, tmp_path):
    """``xapisim down`` stops every nbdkit and closes the NBD port, even with a client
    connected."""
    state = str(tmp_path_factory.mktemp("xapisim-down"))
    xapisim("up", "--state-dir", state, "--pools", "1")
    with open(os.path.join(state, "pools.json")) as f:
        pool = json.load(f)["pools"][0]
    session = client.login(pool)
    x = session.xenapi
    info = x.VDI.get_nbd_info(make_vdi(x))[0]
    h = open_tls(info, trust_dir(tmp_path, info["cert"]))
    pid_files = [os.path.join(pool["state_dir"], n) for n in os.listdir(pool["state_dir"])
                 if n.endswith(".pid")]
    pids = [int(open(p).read()) for p in pid_files]
    assert pids
    xapisim("down", "--state-dir", state)
    time.sleep(0.2)
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or \
            open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    assert port_refuses(pool["nbd_port"])
    del h

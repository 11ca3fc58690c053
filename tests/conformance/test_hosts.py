"""A pool with two hosts (``xapisim up --hosts 2``), as XAPI runs one: each host has its own
address, local SR and NBD server with its own 16-connection limit; a VDI is served by the hosts
that see its SR; the HTTP data handlers answer 302 towards such a host
(``Importexport.return_302_redirect``); a login on a host that is not the master fails with
HOST_IS_SLAVE; VMs start on a host that sees their disks. The simulator's NBD log names the
host, the VDI and the session of every connection.
"""

import nbd
import pytest
import XenAPI

from test_nbd import trust_dir, xapisim
from xapisim import client, scenario
from xapisim.testing import pools_up

MiB = 1 << 20


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("xapisim-hosts"))
    yield pools_up(state, "--pools", "1", "--hosts", "2")[0]
    xapisim("down", "--state-dir", state)


@pytest.fixture
def x(pool):
    session = client.login(pool)
    yield session
    session.xenapi.session.logout()


def host_named(x, suffix):
    return next(h for h in x.xenapi.host.get_all() if x.xenapi.host.get_name_label(h).endswith(suffix))


def local_sr(x, host):
    return next(sr for sr in (x.xenapi.PBD.get_SR(p) for p in x.xenapi.host.get_PBDs(host))
                if x.xenapi.SR.get_type(sr) == "ext")


def open_nbd(info, cadir):
    h = nbd.NBD()
    h.set_export_name(info["exportname"])
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(cadir)
    h.set_tls_verify_peer(True)
    # the certificate names every host's address
    h.connect_tcp(info["address"], str(info["port"]))
    return h


def test_hosts_have_addresses_and_local_srs(pool, x):
    hosts = x.xenapi.host.get_all_records()
    assert sorted(rec["address"] for rec in hosts.values()) == ["127.0.0.1", "127.0.0.2"]
    assert [h["address"] for h in pool["hosts"]] == ["127.0.0.1", "127.0.0.2"]
    h1 = host_named(x, "host1")
    sr = local_sr(x, h1)
    pbds = x.xenapi.SR.get_PBDs(sr)
    assert [x.xenapi.PBD.get_host(p) for p in pbds] == [h1]
    master = x.xenapi.pool.get_master(x.xenapi.pool.get_all()[0])
    assert master != h1
    # every host has its control domain
    doms = [rec for rec in x.xenapi.VM.get_all_records().values() if rec["is_control_domain"]]
    assert sorted(rec["resident_on"] for rec in doms) == sorted(hosts)


def test_login_on_a_slave_names_the_master(pool):
    url = pool["url"].replace("127.0.0.1", "127.0.0.2")
    session = XenAPI.Session(url, transport=client.xmlrpc.client.SafeTransport(context=client.ssl_context(pool)))
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.login_with_password(pool["username"], pool["password"], "2.23", "test")
    assert failure.value.details == ["HOST_IS_SLAVE", "127.0.0.1"]


def test_vdi_of_a_local_sr_is_served_by_its_host_only(pool, x, tmp_path):
    h1 = host_named(x, "host1")
    vm, _ = scenario.build_tree(pool, x, "hosts-nbd", [4 * MiB], [("write", "a")], sr=local_sr(x, h1))
    try:
        vdi = scenario.disks(x, vm)["0"]
        infos = x.xenapi.VDI.get_nbd_info(vdi)
        assert [(i["address"], int(i["port"])) for i in infos] == [("127.0.0.2", pool["nbd_port"])]
        cadir = trust_dir(tmp_path, infos[0]["cert"])
        h = open_nbd(infos[0], cadir)
        assert h.pread(4096, 0).startswith(b"a-0-head|")
        h.shutdown()
        # the master's NBD server refuses it: its dom0 cannot attach that SR
        elsewhere = dict(infos[0], address="127.0.0.1")
        with pytest.raises(nbd.Error):
            open_nbd(elsewhere, cadir)
        log = client.simulator_json(pool, x, "GET", "/xapisim/nbd-connections")
        served = [e for e in log if e["vdi"] == x.xenapi.VDI.get_uuid(vdi)]
        assert [e["host"] for e in served] == ["xapisim-pool0-host1"]
        assert served[0]["originator"] == "xapisim-tests"
        assert served[0]["session"] == x.xenapi.session.get_uuid(x._session)
        assert served[0]["closed"] >= served[0]["opened"]
    finally:
        x.xenapi.VM.destroy(vm)


def test_raw_vdi_handlers_redirect_to_the_host_of_the_sr(pool, x):
    h1 = host_named(x, "host1")
    vm = scenario.create_vm(x, "hosts-http", [1 * MiB], sr=local_sr(x, h1))
    try:
        vdi_uuid = x.xenapi.VDI.get_uuid(scenario.disks(x, vm)["0"])
        query = {"vdi": vdi_uuid, "format": "raw", "session_id": x._session}
        status, headers, _ = client.one_request(pool, pool["url"], "GET",
                                                "/export_raw_vdi?" + client.urllib.parse.urlencode(query),
                                                None, {})
        assert status == 302
        location = client.urllib.parse.urlsplit(headers["Location"])
        assert location.hostname == "127.0.0.2" and location.path == "/export_raw_vdi"
        assert dict(client.urllib.parse.parse_qsl(location.query))["vdi"] == vdi_uuid
        body = scenario.chunked_body([(0, b"x" * 512)])
        status, headers, _ = client.one_request(
            pool, pool["url"], "PUT", "/import_raw_vdi?" + client.urllib.parse.urlencode(dict(query, chunked="true")),
            body, {"Content-Length": str(len(body))})
        assert status == 302 and "127.0.0.2" in headers["Location"]
        # followed, the import lands, written by the host that sees the SR
        scenario.write_disk(pool, x, scenario.disks(x, vm)["0"], [(0, b"y" * 512)])
        assert b"".join(client.nbd_chunks(x, scenario.disks(x, vm)["0"]))[:512] == b"y" * 512
        imports = [e for e in client.simulator_json(pool, x, "GET", "/xapisim/imports") if e["vdi"] == vdi_uuid]
        assert [(e["host"], e["sr"]) for e in imports] == [("xapisim-pool0-host1",
                                                           x.xenapi.SR.get_uuid(local_sr(x, h1)))]
        assert imports[0]["closed"] >= imports[0]["opened"]
        assert imports[0]["session"] == x.xenapi.session.get_uuid(x._session)
    finally:
        x.xenapi.VM.destroy(vm)


def test_vms_start_where_their_disks_are(pool, x):
    h0, h1 = host_named(x, "host0"), host_named(x, "host1")
    vm = scenario.create_vm(x, "hosts-start", [1 * MiB], sr=local_sr(x, h1))
    try:
        with pytest.raises(XenAPI.Failure) as failure:
            x.xenapi.VM.start_on(vm, h0, False, False)
        assert failure.value.details[0] == "VM_REQUIRES_SR"
        x.xenapi.VM.start(vm, False, False)
        assert x.xenapi.VM.get_resident_on(vm) == h1
        x.xenapi.VM.hard_shutdown(vm)
    finally:
        x.xenapi.VM.destroy(vm)


def test_connection_limit_is_per_host(pool, x, tmp_path):
    """16 connections on one host leave the other host's 16 free."""
    h0, h1 = host_named(x, "host0"), host_named(x, "host1")
    vms = [scenario.create_vm(x, "hosts-limit-%d" % i, [1 * MiB], sr=local_sr(x, h)) for i, h in enumerate((h0, h1))]
    try:
        infos = [x.xenapi.VDI.get_nbd_info(scenario.disks(x, vm)["0"])[0] for vm in vms]
        cadir = trust_dir(tmp_path, infos[0]["cert"])
        on_h1 = [open_nbd(infos[1], cadir) for _ in range(16)]
        with pytest.raises(nbd.Error):
            open_nbd(infos[1], cadir)
        on_h0 = open_nbd(infos[0], cadir)
        assert len(on_h0.pread(512, 0)) == 512
        for h in on_h1 + [on_h0]:
            h.shutdown()
        log = client.simulator_json(pool, x, "GET", "/xapisim/nbd-connections")
        assert any(e["refused"] and e["host"] == "xapisim-pool0-host1" for e in log)
    finally:
        for vm in vms:
            x.xenapi.VM.destroy(vm)

"""mirror.py against simulated pools: DiskMirror copies one disk's snapshot tree into node VDIs
marked as the job's, with the same bytes as the source, and leaves its working VDI marked as
holding the leaf's content; a second run writes nothing; a working VDI whose content is unknown
is read back from the destination and, already equal to the leaf, not written again;
mirrored_pairs then finds every node and the leaf."""

import uuid

import pytest
from xapisim import client, scenario

from ansible_collections.xapi.sxm.plugins.module_utils import cleanup, datapath, markers, mirror
from ansible_collections.xapi.sxm.plugins.module_utils import plan as planning
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import Connection
from ansible_collections.xapi.sxm.plugins.module_utils.digests import DigestStore

MiB = 1 << 20
TREE = [("write", "a"), ("snap", "s1"), ("write", "b"), ("snap", "s2"), ("revert", "s1"),
        ("write", "c"), ("snap", "s3"), ("write", "d"), ("zero", "z")]


def connection(pool):
    return Connection(pool["url"], pool["username"], pool["password"], ca_path=pool["ca_file"]).login()


class Job:
    """A 2-disk VM on pool 0, the plan of its disk 0, and the first DiskMirror run's result."""

    def __init__(self, pools):
        self.src, self.dst = connection(pools[0]), connection(pools[1])
        self.x, self.y = client.login(pools[0]), client.login(pools[1])
        self.vm, self.snaps = scenario.build_tree(pools[0], self.x, "mirror-%s" % uuid.uuid4().hex[:6],
                                                  [4 * MiB, 2 * MiB], TREE)
        self.plan = planning.make_plan(self.src, self.dst, planning.Options(self.x.xenapi.VM.get_uuid(self.vm),
                                                                            userdevices=[0]))
        self.job, self.disk = self.plan["job"], self.plan["disks"][0]
        self.first = self.run()

    def run(self):
        return mirror.DiskMirror(self.src, self.dst, self.plan["tree"], "0", self.disk["destination_sr_ref"],
                                 self.job, tls=self.plan["tls"], dst_tls=planning.nbd_uses_tls(self.dst)).run()

    def w_holds(self):
        return self.dst.call("VDI.get_other_config", self.first.working_vdi).get(markers.HOLDS)

    def close(self):
        cleanup.cleanup(self.dst, self.job)
        assert markers.job_vdis(self.dst, self.dst.call("SR.get_all"), self.job) == {}
        for owner in self.x.xenapi.VM.get_snapshots(self.vm) + [self.vm]:
            vdis = scenario.disks(self.x, owner).values()
            self.x.xenapi.VM.destroy(owner)
            for vdi in vdis:
                self.x.xenapi.VDI.destroy(vdi)
        for conn in (self.src, self.dst):
            conn.logout()
        for session in (self.x, self.y):
            session.xenapi.session.logout()


@pytest.fixture(scope="module")
def job(pools):
    made = Job(pools)
    yield made
    made.close()


def source_disks(job):
    """[(source VDI ref, uuid)] of disk 0 in walk order, then the leaf."""
    refs = [scenario.disks(job.x, job.snaps[s])["0"] for s in ("s1", "s2", "s3")] + [scenario.disks(job.x, job.vm)["0"]]
    return [(ref, job.x.xenapi.VDI.get_uuid(ref)) for ref in refs]


def leaf_fingerprint(job):
    leaf = scenario.disks(job.x, job.vm)["0"]
    pieces = b"".join(client.nbd_chunks(job.x, leaf))
    store = DigestStore(len(pieces) // datapath.BLOCK)
    store.set_range(0, b"".join(datapath.block_digest(pieces[i:i + datapath.BLOCK])
                                for i in range(0, len(pieces), datapath.BLOCK)))
    return datapath.content_fingerprint(store)


def test_the_first_run_mirrors_every_node_marked_and_equal(job):
    r = job.first
    assert r.nodes_done == 3 and r.nodes_skipped == 0 and r.changed
    assert 0 < r.bytes_written <= r.bytes_read
    w = job.y.xenapi.VDI.get_by_uuid(r.working_uuid)
    for ref, src_uuid in source_disks(job)[:3]:
        node = job.y.xenapi.VDI.get_by_uuid(r.pairs[src_uuid])
        oc = job.y.xenapi.VDI.get_other_config(node)
        assert {k: oc.get(k) for k in (markers.JOB, markers.ROLE, markers.SOURCE, markers.DEVICE)} == {
            markers.JOB: job.job, markers.ROLE: "node", markers.SOURCE: src_uuid, markers.DEVICE: "0"}
        assert markers.HOLDS not in oc
        assert job.y.xenapi.VDI.get_snapshot_of(node) == w
        assert client.nbd_digest(job.y, node) == client.nbd_digest(job.x, ref), src_uuid
    leaf_ref, leaf_uuid = source_disks(job)[3]
    assert r.pairs[leaf_uuid] == r.working_uuid
    assert client.nbd_digest(job.y, w) == client.nbd_digest(job.x, leaf_ref)
    assert job.w_holds() == "leaf:%s:%s" % (leaf_uuid, leaf_fingerprint(job))
    jobs_devices = {rec["other_config"][markers.DEVICE]
                    for rec in markers.job_vdis(job.dst, job.dst.call("SR.get_all"), job.job).values()}
    assert jobs_devices == {"0"}, "a disk outside userdevices was mirrored"


def test_a_second_run_writes_nothing(job):
    again = job.run()
    assert again.bytes_written == 0 and again.nodes_done == 0 and again.nodes_skipped == 3
    assert again.read_back == 0 and again.changed is False
    assert again.pairs == job.first.pairs


def test_a_working_vdi_of_unknown_content_is_read_back_and_not_rewritten(job):
    job.dst.call("VDI.remove_from_other_config", job.first.working_vdi, markers.HOLDS)
    job.dst.call("VDI.add_to_other_config", job.first.working_vdi, markers.HOLDS, "unknown")
    again = job.run()
    assert again.read_back >= 4 * MiB and again.bytes_written == 0 and again.nodes_done == 0
    assert job.w_holds() == "leaf:%s:%s" % (source_disks(job)[3][1], leaf_fingerprint(job))


def test_mirrored_pairs_finds_every_node_and_the_leaf(job):
    pairs, missing = mirror.mirrored_pairs(job.dst, job.plan)
    assert missing == []
    assert pairs == job.first.pairs and len(pairs) == 4
    other = planning.make_plan(job.src, job.dst, planning.Options(job.job, userdevices=[1]))
    assert mirror.mirrored_pairs(job.dst, other) == ({}, ["disk 1 of s1", "disk 1 of s2", "disk 1 of s3",
                                                          "disk 1 of the VM itself"])

"""The progress lines migration_wait prints: per node for the mirror, bytes for the
verification (which reads several disks at once), elapsed time before any figure."""

from ansible_collections.xapi.sxm.plugins.action.migration_wait import progress_line

MiB = 1 << 20


def test_a_mirror_line_names_the_disk_and_node():
    line = progress_line({"phase": "mirror", "disk": "0", "node": 2, "nodes": 5, "node_name": "s2",
                          "bytes_done": 3 * MiB, "bytes_total_estimate": 10 * MiB, "rate_bytes_per_s": MiB,
                          "eta_s": 7})
    assert line == "mirror, disk 0 node 2 of 5 (s2): 3.0 of 10.0 MiB, 1.0 MiB/s, ETA 7 s"


def test_a_verification_line_counts_bytes_on_both_pools():
    line = progress_line({"phase": "verify", "nodes": 0, "bytes_done": 4 * MiB, "bytes_total_estimate": 8 * MiB,
                          "rate_bytes_per_s": 2 * MiB, "eta_s": 2, "elapsed_s": 2.0})
    assert line == "verify: 4.0 of 8.0 MiB read, 2.0 MiB/s, ETA 2 s"


def test_before_any_figure_the_elapsed_time():
    assert progress_line({"phase": "starting", "nodes": 0, "bytes_done": 0, "elapsed_s": 3.2}) == "starting, 3 s so far"

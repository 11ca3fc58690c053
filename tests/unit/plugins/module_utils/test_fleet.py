"""An evacuation's selection, order, estimate and report (module_utils/fleet.py), from plain
facts as the inventory gives them."""

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import fleet
from ansible_collections.xapi.sxm.plugins.module_utils.errors import InputError, PreflightError

MiB = 1 << 20


def vm(name, uuid, host="h0", tags=(), size=0, power="halted"):
    return {"sxm_name": name, "sxm_uuid": uuid, "sxm_home_host": host, "sxm_home_host_uuid": "uuid-" + host,
            "sxm_tags": list(tags), "sxm_bytes_to_move": size, "sxm_power_state": power}


FLEET = [vm("a", "u1", "h0", ["web"], 10), vm("b", "u2", "h1", ["db", "keep"], 30), vm("c", "u3", "h1", [], 20),
         vm("twin", "u4"), vm("twin", "u5")]


def names(vms):
    return [v["sxm_name"] + ":" + v["sxm_uuid"] for v in vms]


def test_selection_by_host_tag_list_and_all_minus_exclusions():
    assert sorted(names(fleet.select(FLEET, host="h1"))) == ["b:u2", "c:u3"]
    assert sorted(names(fleet.select(FLEET, host="uuid-h0"))) == ["a:u1", "twin:u4", "twin:u5"]
    assert names(fleet.select(FLEET, tags=["web"])) == ["a:u1"]
    assert names(fleet.select(FLEET, names=["c", "u4"])) == ["c:u3", "twin:u4"]
    assert len(fleet.select(FLEET, everything=True)) == 5
    assert sorted(names(fleet.select(FLEET, everything=True, exclude=["a", "u5"], exclude_tags=["keep"]))) == \
        ["c:u3", "twin:u4"]


def test_selection_refuses_nothing_selected_and_names_that_do_not_name_one_vm():
    with pytest.raises(InputError, match="selects no VM"):
        fleet.select(FLEET)
    with pytest.raises(InputError, match="'nope', which is no VM"):
        fleet.select(FLEET, names=["nope"])
    with pytest.raises(InputError, match="2 VMs"):
        fleet.select(FLEET, everything=True, exclude=["twin"])


def test_orders():
    three = FLEET[:3]
    assert [v["sxm_name"] for v in fleet.order(three)] == ["b", "c", "a"]
    assert [v["sxm_name"] for v in fleet.order(three, "smallest")] == ["a", "c", "b"]
    assert [v["sxm_name"] for v in fleet.order(three[::-1], "name")] == ["a", "b", "c"]
    tagged = [vm("p2", "1", tags=["sxm-priority=2"], size=1), vm("p1", "2", tags=["sxm-priority=1"], size=1),
              vm("big", "3", size=99), vm("small", "4", size=2)]
    assert [v["sxm_name"] for v in fleet.order(tagged, "priority")] == ["p1", "p2", "big", "small"]
    with pytest.raises(InputError):
        fleet.order(three, "random")


def test_estimate_is_a_greedy_schedule_in_order():
    rate = 10 * MiB
    # two lanes: 100 MiB (10 s) and 50 + 50 (5 + 5 s), each job 1 s of fixed cost
    assert fleet.estimate_seconds([100 * MiB, 50 * MiB, 50 * MiB], 2, rate, overhead_s=1) == 12.0
    assert fleet.estimate_seconds([100 * MiB, 50 * MiB, 50 * MiB], 1, rate, overhead_s=1) == 23.0
    assert fleet.estimate_seconds([], 4, rate) == 0.0
    assert fleet.job_rate(4, job_limit=0, total_limit=40 * MiB, assumed=100 * MiB) == 10 * MiB
    assert fleet.job_rate(4, job_limit=5 * MiB, total_limit=40 * MiB) == 5 * MiB
    assert fleet.job_rate(1) == 100 * MiB


class Destination:
    def call(self, method, *args):
        answers = {"SR.get_by_uuid": lambda uuid: "ref-" + uuid, "SR.get_name_label": lambda ref: "SR " + ref[-1]}
        return answers[method](*args)


def test_fleet_space_is_summed_per_sr():
    s1 = {"sr": "s1", "needed_bytes": 6, "free_bytes": 10}
    entries = [{"space": [s1, {"sr": "s2", "needed_bytes": 1, "free_bytes": 10}]}, {"space": [s1]}]
    with pytest.raises(PreflightError, match="SR 'SR 1' \\(s1\\) has .* the 2 VMs bound for it") as refused:
        fleet.check_fleet_space(Destination(), entries)
    assert "s2" not in refused.value.message
    rows = fleet.check_fleet_space(Destination(), entries[1:])
    assert rows == [{"sr": "s1", "name": "SR 1", "needed_bytes": 6, "free_bytes": 10, "vms": 1}]


def test_report_outcomes_totals_and_timeline():
    entries = [
        # ansible-core 2.16 hands the times over as text
        {"uuid": "u1", "name": "a", "rank": 0, "status": "todo", "started": "110.0", "ended": "130.0",
         "result": {"bytes_written": 4 * MiB, "timings": {"total_s": 20}, "warm": {"downtime_s": 0.8},
                    "warnings": ["w"], "destination_vm_uuid": "u1"}},
        {"uuid": "u2", "name": "b", "rank": 1, "status": "todo", "started": 100.0, "ended": 105.0,
         "failure": {"msg": "it broke", "error_code": "SXM_DATA_PATH", "advice": "run again"}},
        {"uuid": "u3", "name": "c", "rank": 2, "status": "done"},
        {"uuid": "u4", "name": "d", "rank": 3, "status": "todo",
         "failure": {"msg": "draining", "error_code": "SXM_DRAINED"}},
        {"uuid": "u5", "name": "e", "rank": 4, "status": "todo"},
    ]
    report = fleet.fleet_report(entries, started=100.0, ended=140.0)
    assert [v["status"] for v in report["vms"]] == ["migrated", "failed", "skipped: already migrated", "drained",
                                                    "not run"]
    assert report["counts"] == {"migrated": 1, "failed": 1, "skipped": 1, "drained": 1, "not run": 1}
    assert report["failed"] == ["b", "e"]
    assert report["bytes_written"] == 4 * MiB and report["seconds"] == 40.0
    assert [t["vm"] for t in report["timeline"]] == ["b", "a"]
    assert report["vms"][0]["downtime_s"] == 0.8
    text = fleet.fleet_markdown(report)
    assert "SXM_DATA_PATH: it broke. What to do: run again" in text and "| a | migrated | 10.0 | 30.0 |" in text


def test_the_html_page_lists_every_vm_and_draws_the_timeline(tmp_path):
    entries = [{"uuid": "u1", "name": "a<b", "rank": 0, "status": "todo", "started": 100.0, "ended": 130.0,
                "result": {"bytes_written": MiB, "timings": {"total_s": 30}}},
               {"uuid": "u2", "name": "c", "rank": 1, "status": "todo", "started": 101.0, "ended": 104.0,
                "failure": {"msg": "it broke", "error_code": "SXM_DATA_PATH", "advice": "run again"}}]
    paths = fleet.write_fleet_report(fleet.fleet_report(entries, started=100.0, ended=131.0), str(tmp_path), "t")
    page = open(paths["html"]).read()
    assert page.count('<rect class="bar ') == 2 and 'class="bar failed"' in page
    assert "a&lt;b" in page and "<b>c</b>: SXM_DATA_PATH: it broke" in page
    assert 'href="sxm-u1.html"' in page and "<script" not in page


def test_a_listed_vm_the_source_no_longer_has_is_skipped_when_it_migrated():
    migrated = {"sxm_uuid": "u9", "sxm_name": "old", "sxm_migrated": True, "sxm_tags": []}
    chosen = fleet.select(FLEET, names=["a", "u9"], gone=lambda name: migrated if name == "u9" else None)
    assert names(chosen) == ["a:u1", "old:u9"]
    with pytest.raises(InputError, match="'u8', which is no VM"):
        fleet.select(FLEET, names=["u8"], gone=lambda name: None)

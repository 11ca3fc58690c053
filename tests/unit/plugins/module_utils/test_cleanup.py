"""cleanup.py: a rollback puts the source's blocked operations, tags and power state back as
recorded, never stops a VM, lifts only its own disposition block without a record, and refuses
to remove a copy whose source is gone or a complete one unless asked."""

import pytest

from ansible_collections.xapi.sxm.plugins.module_utils import cleanup, markers
from ansible_collections.xapi.sxm.plugins.module_utils.errors import StateError


class Recorder:
    def __init__(self):
        self.calls = []

    def call(self, name, *args):
        self.calls.append((name,) + args[1:])


def record(blocked, tags, power):
    return {"blocked_operations": blocked, "tags": tags, "power_state": power}


def test_restore_puts_back_blocked_operations_tags_and_starts_a_vm_that_ran():
    src = Recorder()
    now = record({"start": markers.DISPOSITION_REASON + "https://b", "clone": "changed"}, ["x"], "Halted")
    before = record({"clone": "the owner's", "export": "kept"}, ["prod"], "Running")
    done, left = cleanup.restore_source(src, "R:vm", now, before)
    assert src.calls == [("VM.remove_from_blocked_operations", "clone"),
                         ("VM.add_to_blocked_operations", "clone", "the owner's"),
                         ("VM.add_to_blocked_operations", "export", "kept"),
                         ("VM.remove_from_blocked_operations", "start"),
                         ("VM.set_tags", ["prod"]), ("VM.start", False, False)]
    assert left == [] and len(done) == 5


def test_restore_never_stops_a_vm_and_check_mode_changes_nothing():
    src = Recorder()
    done, left = cleanup.restore_source(src, "R:vm", record({}, [], "Running"), record({}, [], "Halted"))
    assert src.calls == [] and done == [] and "left as it is" in left[0]
    done, left = cleanup.restore_source(src, "R:vm", record({"start": "x"}, [], "Halted"),
                                        record({}, [], "Halted"), check_mode=True)
    assert src.calls == [] and done == ["blocked operation start: unblocked"]


def test_without_a_record_only_the_disposition_block_is_lifted():
    src = Recorder()
    now = record({"start": markers.DISPOSITION_REASON + "https://b", "clone": "the owner's"}, ["t"], "Halted")
    cleanup.restore_source(src, "R:vm", now, None)
    assert src.calls == [("VM.remove_from_blocked_operations", "start")]


@pytest.mark.parametrize("state, include_complete, source_exists, refused", [
    ("complete", False, True, "include_complete"),
    ("complete", True, False, "only one"),
    ("verified", False, False, "only one"),
    ("complete", True, True, None),
    ("imported", False, False, None),
    (None, False, False, None),
])
def test_what_a_rollback_refuses(state, include_complete, source_exists, refused):
    vm_rec = {"other_config": {markers.STATE: state}} if state else None
    src_vm = ("R:vm", {}) if source_exists else None
    if refused is None:
        cleanup.check_removable("job", vm_rec, include_complete, src_vm)
        return
    with pytest.raises(StateError) as info:
        cleanup.check_removable("job", vm_rec, include_complete, src_vm)
    assert refused in str(info.value) + str(info.value.advice)

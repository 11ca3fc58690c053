"""rights.py against XAPI's datamodel (the simulator's copy): every permission it names exists,
the roles the docs name are enough, and every write the collection makes is either checked
before the migration or listed here as allowed to every role that can migrate, or as a
rollback's or fix-up's."""

import os
import re

from xapisim.model import datamodel

from ansible_collections.xapi.sxm.plugins.module_utils import rights

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_UTILS = os.path.join(HERE, "..", "..", "..", "..", "plugins", "module_utils")
# writes not in the lists, and why
NOT_CHECKED = {
    "task.create", "task.destroy", "task.set_progress", "task.set_status",   # every role
    "vdi.list_changed_blocks",              # an optimisation: without it, content is compared
    "session.add_to_other_config", "session.remove_from_other_config", "vdi.set_snapshot_time",
    "sr.scan",                              # the snapshot_time fix-up: local root only, reported
    "vm.set_tags", "vm.start",              # the rollback's, restoring what the source had
    "vdi.enable_cbt",                       # CBT on the destination's disks: a warning when refused
}


def listed():
    return (set(rights.DESTINATION) | set(rights.SOURCE) | {p for ps in rights.SOURCE_DISPOSITION.values() for p in ps}
            | set(rights.WARM_SOURCE + rights.WARM_HARD_SHUTDOWN + rights.WARM_DESTINATION))


def test_every_permission_exists_and_the_documented_roles_suffice():
    model = datamodel()
    assert listed() <= set(model.permissions_of("pool-admin"))
    assert set(rights.DESTINATION) <= set(model.permissions_of("pool-operator"))
    assert set(rights.SOURCE) | set(rights.SOURCE_DISPOSITION["destroy"]) <= set(model.permissions_of("vm-admin"))
    assert "pool.add_to_other_config" not in model.permissions_of("vm-admin"), "the docs say why vm-admin is not enough"
    assert set(rights.WARM_SOURCE + rights.WARM_HARD_SHUTDOWN) <= set(model.permissions_of("vm-admin"))
    assert set(rights.WARM_DESTINATION) <= set(model.permissions_of("pool-operator"))


def test_every_write_of_the_collection_is_checked_or_explained():
    calls = set()
    for name in os.listdir(MODULE_UTILS):
        if name.endswith(".py"):
            with open(os.path.join(MODULE_UTILS, name)) as f:
                text = f.read()
            calls.update(m.lower() for m in re.findall(r'\.call\("([A-Za-z]+\.[A-Za-z_]+)"', text))
            for cls in re.findall(r'set_key\(\w+, "(\w+)"', text):
                calls.update(("%s.add_to_other_config" % cls.lower(), "%s.remove_from_other_config" % cls.lower()))
    reads = set(datamodel().permissions_of("read-only"))
    writes = {c for c in calls if c not in reads}
    assert {"vdi.create", "pool.add_to_other_config", "vm.add_to_other_config"} <= writes
    assert writes - listed() - NOT_CHECKED == set()

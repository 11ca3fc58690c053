"""Issue 9: the pools have a control domain and stock templates, as real ones do. The
collection's VM lookup and tree discovery never take either for a VM: a VM that shares its name
with a template is found and migrated, the control domain and templates are refused by name
and by uuid, before anything changes."""

from xapisim import scenario

from checks import assert_migrated, inventory
from harness import pool_vars
from test_steps import migration_defaults, run_tasks

MiB = 1 << 20
TEMPLATE = "Debian Bookworm 12"


def refused(name, vm):
    return [{"name": name, "xapi.sxm.migration_plan": {"vm": vm}, "register": "refusal",
             "ignore_errors": True},
            {"name": "%s: refused" % name, "ansible.builtin.assert": {"that": [
                "refusal.failed", "refusal.error_code == 'SXM_INVALID_INPUT'"]}}]


def test_dom0_and_templates_are_not_vms(pools, connect, tmp_path):
    x, y = connect(0), connect(1)
    vm, _ = scenario.build_tree(pools[0], x, TEMPLATE, [4 * MiB],
                                [("write", "a"), ("snap", "s1"), ("write", "b")])
    vm_uuid = x.xenapi.VM.get_uuid(vm)
    host = x.xenapi.host.get_all()[0]
    dom0 = x.xenapi.VM.get_record(x.xenapi.host.get_control_domain(host))
    template = [r for r in x.xenapi.VM.get_all_records().values()
                if r["name_label"] == TEMPLATE and r["is_a_template"]][0]
    before_src, before_dst = inventory(x), inventory(y)
    defaults = {"group/xapi.sxm.pool": pool_vars(pools[0]), **migration_defaults(pools, vm_uuid)}
    tasks = (refused("dom0 by name", dom0["name_label"]) + refused("dom0 by uuid", dom0["uuid"])
             + refused("template by uuid", template["uuid"])
             + [{"name": "the VM, by the template's name", "xapi.sxm.snapshot_tree_info": {"vm": TEMPLATE},
                 "register": "tree"},
                {"name": "its tree only", "ansible.builtin.assert": {"that": [
                    "tree.tree.vm.uuid == '%s'" % vm_uuid, "tree.tree.nodes | length == 2"]}}])
    stats, output = run_tasks("dom0", tasks, defaults, tmp_path)
    assert stats["failed"] == 0, output[-3000:]
    assert inventory(x) == before_src and inventory(y) == before_dst
    stats, output = run_tasks("dom0-migrate", [{"name": "migrate", "xapi.sxm.vm_migrate": {}}],
                              defaults, tmp_path)
    assert stats["failed"] == 0, output[-3000:]
    assert_migrated(x, y, vm_uuid)
    # the destination's own template and control domain are untouched
    templates = [r for r in y.xenapi.VM.get_all_records().values()
                 if r["name_label"] == TEMPLATE and r["is_a_template"] and not r["is_a_snapshot"]]
    assert len(templates) == 1 and templates[0]["is_default_template"]
    assert y.xenapi.VM.get_power_state(y.xenapi.host.get_control_domain(y.xenapi.host.get_all()[0])) == "Running"

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vm_migrate
short_description: Migrate a halted VM with its whole snapshot tree to another pool
version_added: 0.1.0
description:
  - Copies a VM and every one of its snapshots, reverted branches included, from one
    XenServer / XCP-ng pool to another, so that the destination VM can be reverted to any of
    its snapshots exactly as on the source.
  - Disk data is read from the source over NBD (TLS pinned to the certificate the pool
    returns) and written to the destination with chunked raw imports, one working disk per
    source disk walking the snapshot tree; only blocks that differ between consecutive nodes
    travel.
  - The VM and snapshot records are recreated with XAPI's metadata export and import, keeping
    their uuids, names, times and parent links.
  - Idempotent. A run that failed half way continues where it stopped; a run after a
    complete migration changes nothing.
  - Only cold migrations are built so far. The VM must be halted.
author:
  - xapi.sxm contributors (@xapi-sxm)
options:
  source:
    description:
      - The pool the VM is on, with the connection options described below.
    type: dict
    required: true
    suboptions:
      url:
        description: URL of the pool master, for example V(https://pool1.example.com).
        type: str
        required: true
      username:
        description: Account to log in with. Local C(root) can do every step.
        type: str
        required: true
      password:
        description: Password of O(source.username).
        type: str
        required: true
      validate_certs:
        description: Whether to verify the pool master's TLS certificate.
        type: bool
        default: true
      ca_path:
        description: PEM file with the CA or self-signed certificate of the pool master.
        type: path
  destination:
    description:
      - The pool the VM moves to. Same suboptions as O(source).
      - Restoring the source's C(snapshot_time) on destination snapshot disks needs the local
        C(root) account; with another account the result lists the disks that keep the
        destination's time.
    type: dict
    required: true
    suboptions:
      url:
        description: URL of the pool master, for example V(https://pool1.example.com).
        type: str
        required: true
      username:
        description: Account to log in with. Local C(root) can do every step.
        type: str
        required: true
      password:
        description: Password of O(destination.username).
        type: str
        required: true
      validate_certs:
        description: Whether to verify the pool master's TLS certificate.
        type: bool
        default: true
      ca_path:
        description: PEM file with the CA or self-signed certificate of the pool master.
        type: path
  vm:
    description: The VM to migrate, by uuid or by a name that is unique on the source pool.
    type: str
    required: true
  sr_map:
    description: Source SR uuid to destination SR uuid (or unique name), per SR.
    type: dict
    default: {}
  default_sr:
    description:
      - Destination SR (uuid or unique name) for disks whose SR is not in O(sr_map).
      - If not set, the destination pool's default SR.
    type: str
  network_map:
    description:
      - Source network (uuid or name) to destination network (uuid or name).
      - A network not in the map goes to the destination network of the same name; if there is
        none the module fails rather than let XAPI create a new, unconnected network.
    type: dict
    default: {}
  mode:
    description:
      - V(cold) migrates a halted VM. V(auto) picks V(cold) for a halted VM.
      - V(warm) (running VMs) is not available yet.
    type: str
    choices: [auto, cold, warm]
    default: auto
  source_disposition:
    description:
      - What happens to the source VM after the destination is verified.
      - V(keep) leaves it as it is, V(block) blocks its C(start) operation with a reason,
        V(destroy) removes it, its snapshots and their disks.
    type: str
    choices: [keep, block, destroy]
    default: keep
  use_cbt:
    description: Use changed block tracking, where both disks have it, to read less.
    type: bool
    default: true
  verify:
    description: Compare both trees and every disk's content after the copy.
    type: bool
    default: true
  report_dir:
    description: If set, a JSON and a Markdown report are written there.
    type: path
  bandwidth_limit:
    description:
      - Bytes per second this migration may read from the source, shared by all its
        connections. V(0) means no limit.
    type: int
    default: 0
  nbd_connections:
    description:
      - NBD connections that read one disk at a time, when at least 256 MiB per connection
        is to be read. More help when reading is the slower half (TLS on a host with spare
        cores); where CPU is short they only add load. XAPI serves 16 per host, shared by all
        the jobs reading from it.
    type: int
    default: 1
  progress_file:
    description:
      - If set, a JSON file rewritten about twice a second while data moves (bytes done, rate,
        ETA, node k of n), for a play that runs this module with C(async) to show progress.
      - Progress is also shown as a XAPI task on both pools, named after the VM.
    type: path
notes:
  - Needs the C(XenAPI) Python library and libnbd's Python bindings (Debian package
    C(python3-libnbd)) on the host that runs it; data moves through that host, so delegate
    to a host near both pools.
  - The source pool needs a network with the C(nbd) (or C(insecure_nbd)) purpose that reaches
    the VM's SRs.
  - Supports check mode; it reports the plan and changes nothing.
seealso:
  - module: xapi.sxm.snapshot_tree_info
"""

EXAMPLES = r"""
- name: Migrate vm01 with its snapshots from pool A to pool B, then block vm01 on pool A
  xapi.sxm.vm_migrate:
    source:
      url: "{{ pool_a_url }}"
      username: root
      password: "{{ pool_a_password }}"
      ca_path: "{{ pool_a_ca }}"
    destination:
      url: "{{ pool_b_url }}"
      username: root
      password: "{{ pool_b_password }}"
      ca_path: "{{ pool_b_ca }}"
    vm: vm01
    source_disposition: block
    report_dir: /var/tmp/sxm-reports
  register: migration

- name: Show what moved
  ansible.builtin.debug:
    msg: "{{ migration.bytes_written | default(0) }} bytes written for {{ migration.source_tree.nodes | length }} nodes"
"""

RETURN = r"""
vm_uuid:
  description: Uuid of the VM (the same on both pools).
  returned: always
  type: str
destination_vm_uuid:
  description: Uuid of the destination VM.
  returned: when the VM is on the destination
  type: str
plan:
  description: Per disk the mirror order (inactive branches first), destination SR, sizes.
  returned: always
  type: dict
source_tree:
  description: The source snapshot tree (nodes with uuid, name, time, parent, children, disks).
  returned: always
  type: dict
destination_tree:
  description: The destination snapshot tree, same shape as RV(source_tree).
  returned: when the VM is on the destination
  type: dict
disks:
  description: Per disk the source to destination VDI pairs and the bytes read and written.
  returned: when data moved
  type: list
  elements: dict
bytes_written:
  description: Bytes of disk data written to the destination by this run.
  returned: when data moved
  type: int
walk_minimum_bytes:
  description: The least data the tree walk must write (blocks where consecutive nodes differ).
  returned: when data moved
  type: int
edge_minimum_bytes:
  description: The sum of the per-edge differences of the tree, for comparison.
  returned: when data moved
  type: int
snapshot_time_not_kept:
  description: Destination snapshot disks whose C(snapshot_time) differs from the source's, and why.
  returned: always
  type: list
  elements: dict
timings:
  description: Seconds spent moving data, importing metadata, verifying, and in total.
  returned: when data moved
  type: dict
trees:
  description: Both snapshot trees drawn side by side, source left, destination right.
  returned: when the VM is on the destination
  type: list
  elements: str
reports:
  description: Paths of the JSON and Markdown reports.
  returned: when O(report_dir) is set
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xapi.sxm.plugins.module_utils.ansible_common import connect, pool_option
from ansible_collections.xapi.sxm.plugins.module_utils.migrate import MigrationError, Options, migrate
from ansible_collections.xapi.sxm.plugins.module_utils.report import side_by_side, tree_lines, write_reports
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import XapiFailure

try:
    from ansible_collections.xapi.sxm.plugins.module_utils.datapath import DataPathError
except ImportError:  # pragma: no cover
    DataPathError = Exception


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source=pool_option(),
            destination=pool_option(),
            vm=dict(type="str", required=True),
            sr_map=dict(type="dict", default={}),
            default_sr=dict(type="str"),
            network_map=dict(type="dict", default={}),
            mode=dict(type="str", choices=["auto", "cold", "warm"], default="auto"),
            source_disposition=dict(type="str", choices=["keep", "block", "destroy"], default="keep"),
            use_cbt=dict(type="bool", default=True),
            verify=dict(type="bool", default=True),
            report_dir=dict(type="path"),
            bandwidth_limit=dict(type="int", default=0),
            progress_file=dict(type="path"),
            nbd_connections=dict(type="int", default=1),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        options = Options(p["vm"], sr_map=p["sr_map"], default_sr=p["default_sr"],
                          network_map=p["network_map"], mode=p["mode"],
                          source_disposition=p["source_disposition"], use_cbt=p["use_cbt"],
                          verify=p["verify"], bandwidth_limit=p["bandwidth_limit"] or None,
                          progress_file=p["progress_file"], nbd_connections=p["nbd_connections"])
    except MigrationError as e:
        module.fail_json(msg=str(e))
    src = connect(module, p["source"])
    dst = None
    try:
        dst = connect(module, p["destination"])
        result = migrate(src, dst, options, check_mode=module.check_mode)
    except (MigrationError, XapiFailure, DataPathError) as e:
        module.fail_json(msg=str(getattr(e, "message", e)))
    finally:
        src.logout()
        if dst is not None:
            dst.logout()
    if result.get("destination_tree"):
        result["trees"] = side_by_side(tree_lines(result["source_tree"]),
                                       tree_lines(result["destination_tree"]))
    if p["report_dir"] and not module.check_mode:
        result["reports"] = write_reports(result, p["report_dir"])
    # AnsibleModule returns what module.warn() collected as `warnings`
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

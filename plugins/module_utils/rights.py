# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each pool's account must be allowed, checked before anything moves. XAPI keeps in
``session.rbac_permissions`` the lowercase name of every call and HTTP action the session's
roles allow (``Rbac``; HTTP actions as ``http/<action>``); a local superuser (local root) has
none there and may do everything. The lists name only the writes and data handlers of the
flow: every role may read.

With the roles of XAPI's datamodel: the destination needs ``pool-operator`` or more (the job's
lock is an ``add_to_other_config`` on the pool), the source ``vm-admin`` or more. Keeping the
source's snapshot times on the destination's snapshot disks needs local root on the
destination (the hidden setter is local-root only): without it they are reported, not kept.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

SOURCE = ("vdi.get_nbd_info", "http/get_export_metadata")
SOURCE_DISPOSITION = {"keep": (), "block": ("vm.add_to_blocked_operations",),
                      "destroy": ("vm.destroy", "vdi.destroy")}
DESTINATION = (
    "pool.add_to_other_config", "pool.remove_from_other_config",
    "vdi.create", "vdi.snapshot", "vdi.destroy", "vdi.resize", "vdi.get_nbd_info",
    "vdi.set_other_config", "vdi.add_to_other_config", "vdi.remove_from_other_config",
    "vm.destroy", "vm.add_to_other_config", "vm.remove_from_other_config",
    "vm.add_to_blocked_operations", "vm.remove_from_blocked_operations",
    "http/put_import_raw_vdi", "http/put_import_metadata",
)


# a running VM (warm.py): transient snapshots and the cut-over's shutdown and starts
WARM_SOURCE = ("vdi.snapshot", "vdi.destroy", "vdi.set_name_label", "vdi.add_to_other_config",
               "vdi.remove_from_other_config", "vm.clean_shutdown", "vm.start")
WARM_HARD_SHUTDOWN = ("vm.hard_shutdown",)
WARM_DESTINATION = ("vm.start", "vm.hard_shutdown")


def needed(source_disposition, warm=False, hard_shutdown=False):
    """(source permissions, destination permissions) of a migration; ``warm``: of a running
    VM, ``hard_shutdown`` when its cut-over may hard-shut it."""
    source = SOURCE + SOURCE_DISPOSITION.get(source_disposition, ())
    if not warm:
        return source, DESTINATION
    return (source + WARM_SOURCE + (WARM_HARD_SHUTDOWN if hard_shutdown else ()),
            DESTINATION + WARM_DESTINATION)


def missing(conn, permissions):
    """The permissions of ``permissions`` the connection's session lacks (none for local root)."""
    if conn.is_local_superuser:
        return []
    held = set(conn.call("session.get_rbac_permissions", conn.session_ref))
    return [p for p in permissions if p not in held]

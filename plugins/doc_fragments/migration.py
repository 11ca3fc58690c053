# -*- coding: utf-8 -*-
# Copyright (c) xapi.sxm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which VM a migration step works on and where its parts go (argument spec:
module_utils/sxm_module.py ``vm_spec``). Every step plans from these, so every step of one
migration must be given the same values."""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  vm:
    description: The VM, by uuid or by a name that is unique on the source pool.
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
        none the step fails rather than let XAPI create a new, unconnected network.
    type: dict
    default: {}
  mode:
    description:
      - V(cold) migrates a halted VM and refuses a running one.
      - V(warm) migrates a running VM while it runs and stops it only for the last changes
        (see O(xapi.sxm.vdi_mirror#module:max_passes)); a halted VM moves cold.
      - V(auto), the default, is V(warm) for a running VM and V(cold) for a halted one.
        Earlier releases refused running VMs in V(auto); it now moves them, stopping them at
        cut-over.
      - Suspended VMs and snapshots with memory (checkpoints) are refused (not built yet).
    type: str
    choices: [auto, cold, warm]
    default: auto
  unmovable_devices:
    description:
      - What to do with a VM that has devices no migration can carry to another pool (PCI
        passthrough in C(other_config:pci) or attached PCI devices, vGPUs, USB passthrough).
      - V(refuse) stops before anything moves and names them.
      - V(warn) migrates the VM without them and says so in the result's warnings; assign them
        again on the destination.
    type: str
    choices: [refuse, warn]
    default: refuse
"""

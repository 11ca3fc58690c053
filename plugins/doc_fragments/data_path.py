# -*- coding: utf-8 -*-
# Copyright (c) xapi.sxm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How disk data is read (argument spec: module_utils/sxm_module.py ``data_path_spec``)."""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  use_cbt:
    description: Use changed block tracking, where both disks have it, to read less.
    type: bool
    default: true
  use_vhd_maps:
    description:
      - Where CBT cannot say what changed, ask the source for the block allocation table of a
        VHD export relative to the node the destination holds (C(GET /export_raw_vdi?format=vhd&base=)),
        read only the table, and read over NBD only the 2 MiB blocks it names, as Xen
        Orchestra does. The first node of a disk reads only the blocks its VHD chain allocates.
      - VHD (SMAPIv1) SRs only; elsewhere, and for qcow2 disks, every block is read.
      - Whatever chose the blocks, a block is written only where its content differs.
    type: bool
    default: true
  bandwidth_limit:
    description:
      - Bytes per second this job may read from the source, shared by all its connections.
        V(0) means no limit.
    type: int
    default: 0
  nbd_connections:
    description:
      - NBD connections that read one disk, when at least 256 MiB per connection is to be read
        (1 to 16; XAPI serves 16 per host, shared by all the jobs reading from it). They help
        when reading is the slower half (TLS on a host with spare cores); where CPU is short
        they only add load.
    type: int
    default: 1
"""

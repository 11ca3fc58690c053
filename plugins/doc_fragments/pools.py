# -*- coding: utf-8 -*-
# Copyright (c) xapi.sxm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The two pools of a migration step: ``source`` and ``destination``, each a dict of the
connection options (argument spec: module_utils/sxm_module.py ``pool_spec``)."""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  source:
    description:
      - The pool the VM is on.
    type: dict
    required: true
    suboptions: &pool
      url:
        description:
          - URL of the pool master, for example V(https://pool1.example.com).
          - Only C(https://) URLs are accepted; the session, its password and the NBD export
            names travel over this connection.
        type: str
        required: true
      username:
        description:
          - Account to log in with. Local C(root) can do every step; restoring the source's
            C(snapshot_time) on destination snapshot disks needs it on the destination.
        type: str
        required: true
      password:
        description: Password of the account.
        type: str
        required: true
      validate_certs:
        description: Whether to verify the pool master's TLS certificate (a warning when off).
        type: bool
        default: true
      ca_path:
        description: PEM file with the CA or self-signed certificate of the pool master.
        type: path
  destination:
    description:
      - The pool the VM moves to, with the same suboptions as O(source).
    type: dict
    required: true
    suboptions: *pool
notes:
  - Modules with O(source) and O(destination) belong to the action group C(xapi.sxm.migration),
    so both pools can be set once per play with C(module_defaults) and
    C(group/xapi.sxm.migration).
"""

# -*- coding: utf-8 -*-
# Copyright (c) xapi.sxm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Connection options shared by every module of xapi.sxm.

A module uses them with ``extends_documentation_fragment: [xapi.sxm.connection]`` and builds its
argument spec with the same names, defaults and environment fallbacks (``env_fallback``).
"""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  url:
    description:
      - URL of the pool master's XenAPI endpoint, for example V(https://pool1.example.com).
      - Only C(https://) URLs are accepted for pools; the session, its password and the NBD
        export names travel over this connection.
      - If not set, the value of the E(XAPI_URL) environment variable is used.
    type: str
    required: true
  username:
    description:
      - Name of the account to log in with.
      - Some steps (such as restoring the original C(snapshot_time) of snapshot VDIs) need the
        local superuser C(root); other accounts get a warning for what they cannot fix.
      - If not set, the value of the E(XAPI_USERNAME) environment variable is used.
    type: str
    required: true
  password:
    description:
      - Password of O(username).
      - If not set, the value of the E(XAPI_PASSWORD) environment variable is used.
    type: str
    required: true
  validate_certs:
    description:
      - Whether to verify the TLS certificate of the pool master.
      - Turn this off only for a test pool; a warning is issued when it is off.
      - If not set, the value of the E(XAPI_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - Path to a PEM file with the certificate authority (or the self-signed certificate) that
        signed the pool master's certificate.
      - If not set, the system trust store is used, unless the E(XAPI_CA_PATH) environment
        variable is set.
    type: path
notes:
  - All modules of this collection belong to the action group C(xapi.sxm.sxm), so the connection
    options can be set once per play with C(module_defaults) and C(group/xapi.sxm.sxm).
"""

# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option handling shared by the modules: the connection options of doc_fragments/connection.py
(with their environment fallbacks) and opening a Connection from them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.xapi.sxm.plugins.module_utils.xapi import HAS_XENAPI, Connection, XapiFailure


def connection_options():
    return dict(
        url=dict(type="str", required=True, fallback=(env_fallback, ["XAPI_URL"])),
        username=dict(type="str", required=True, fallback=(env_fallback, ["XAPI_USERNAME"])),
        password=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["XAPI_PASSWORD"])),
        validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["XAPI_VALIDATE_CERTS"])),
        ca_path=dict(type="path", fallback=(env_fallback, ["XAPI_CA_PATH"])),
    )


def pool_option():
    """A pool given as one dict option (source, destination) with the connection options."""
    options = connection_options()
    for spec in options.values():
        spec.pop("fallback", None)
    return dict(type="dict", required=True, options=options)


def connect(module, params):
    if not HAS_XENAPI:
        module.fail_json(msg=missing_required_lib("XenAPI"))
    if not params["url"].startswith("https://") and "://" in params["url"]:
        module.fail_json(msg="url %s: only https:// pool URLs are accepted, the session and "
                             "passwords travel over it" % params["url"])
    if not params["validate_certs"]:
        module.warn("validate_certs is off for %s: the pool's identity is not checked" % params["url"])
    try:
        return Connection(params["url"], params["username"], params["password"],
                          validate_certs=params["validate_certs"], ca_path=params["ca_path"]).login()
    except XapiFailure as e:
        module.fail_json(msg=e.message, error_code=e.code)

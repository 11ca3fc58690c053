# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: pool
short_description: The VMs of a XenServer / XCP-ng pool as Ansible hosts
version_added: 1.0.0
description:
  - Lists the VMs of one pool as Ansible hosts, with their facts as host variables and groups by
    home host, tag, SR and power state, so that an evacuation selects its VMs with a group or a
    pattern (C(playbooks/evacuate.yml)).
  - The control domains, templates and snapshots are never listed.
  - The pool is read with six batched calls (VMs, disk VBDs, VDIs, SRs, PBDs, hosts), however
    many VMs it holds.
  - "A host is named by the VM's C(name_label) when no other VM of the pool has the same one,
    else by C(<name_label>_<first 8 characters of its uuid>); a VM without a name by its uuid."
  - "Host variables (all prefixed C(sxm_)): C(sxm_uuid), C(sxm_name), C(sxm_power_state)
    (V(halted), V(running), V(suspended) or V(paused)), C(sxm_resident_host) (the name of the
    host it runs on, or V(null)), C(sxm_home_host) and C(sxm_home_host_uuid), C(sxm_tags),
    C(sxm_srs) (uuids of the SRs of its disks, sorted) and C(sxm_sr_names) (their names, in the
    same order), C(sxm_snapshot_count), C(sxm_disk_bytes) (the sum of its disks' virtual sizes)
    and C(sxm_bytes_to_move) (the sum of C(physical_utilisation) of every distinct VDI of the VM
    and its snapshots, memory images included: an upper bound of what a migration reads)."
  - "The home host is the host whose NBD server serves the VM's disks: the host it runs on; else
    its C(affinity) host when that host sees every disk's SR; else the one host every disk's SR
    is attached to (local storage); else none (shared storage, or no disk)."
  - "Groups: C(xapi_host_<home host>), C(xapi_tag_<tag>) per tag, C(xapi_sr_<SR name>) per SR
    of its disks, C(xapi_power_<state>). Names are lower case with every run of other characters
    than letters, digits and C(_) made one C(_) (C(Local storage 2) gives
    C(xapi_sr_local_storage_2)). Two hosts or SRs of the pool whose names give the same
    group get C(_<first 8 characters of the uuid>) appended (every XCP-ng host has its own
    C(Local storage)); tags that differ only by case or punctuation share a group."
  - No connection variable (C(ansible_connection), C(ansible_host)) is set; set them with
    O(compose) if the VMs are to be reached.
  - The configuration file's name must end with C(xapi_pool.yml) or C(xapi_pool.yaml), and the
    plugin must be enabled (C([inventory] enable_plugins = xapi.sxm.pool, ...) in C(ansible.cfg),
    or E(ANSIBLE_INVENTORY_ENABLED)).
author:
  - xapi.sxm contributors (@xapi-sxm)
requirements:
  - The XenAPI Python library on the controller.
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin, so that Ansible knows which plugin reads the file.
    type: str
    required: true
    choices: [xapi.sxm.pool]
  url:
    description:
      - URL of the pool master's XenAPI endpoint, for example V(https://pool1.example.com).
      - Only C(https://) URLs are accepted; the session and the password travel over this
        connection.
    type: str
    required: true
    env:
      - name: XAPI_URL
  username:
    description:
      - Name of the account to log in with. Any role that may read the pool will do (read-only
        is enough); the plugin changes nothing.
    type: str
    required: true
    env:
      - name: XAPI_USERNAME
  password:
    description:
      - Password of O(username). It is never shown, cached or set as a variable.
      - Keep it out of the file with E(XAPI_PASSWORD), or encrypt it with C(ansible-vault
        encrypt_string) (a C(!vault) value).
    type: str
    required: true
    env:
      - name: XAPI_PASSWORD
  validate_certs:
    description:
      - Whether to verify the TLS certificate of the pool master.
      - Turn this off only for a test pool; a warning is issued when it is off.
    type: bool
    default: true
    env:
      - name: XAPI_VALIDATE_CERTS
  ca_path:
    description:
      - Path to a PEM file with the certificate authority (or the self-signed certificate) that
        signed the pool master's certificate.
      - If not set, the system trust store is used.
    type: path
    env:
      - name: XAPI_CA_PATH
notes:
  - C(docs/inventory.md) in the collection shows how an evacuation selects VMs with the groups.
  - Read-only. With O(cache) on, what is cached is the facts above and the names of the pool's
    hosts and SRs; never the password or a session.
"""

EXAMPLES = r"""
---
# pool-a.xapi_pool.yml: every VM of pool A, the password from the environment (XAPI_PASSWORD)
plugin: xapi.sxm.pool
url: https://pool-a.example.com
username: root
ca_path: /etc/pki/pool-a.pem

---
# prod.xapi_pool.yml: more groups and variables from the facts, cached for an hour
plugin: xapi.sxm.pool
url: https://pool-a.example.com
username: root
password: !vault |
  $ANSIBLE_VAULT;1.1;AES256
  ...
ca_path: /etc/pki/pool-a.pem
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /var/tmp/xapi-pool-inventory
cache_timeout: 3600
keyed_groups:
  # one group per power state and home host, prefixed: pool_a_running, pool_a_host_xcp1 ...
  - key: sxm_power_state
    prefix: pool_a
  - key: sxm_home_host | default('none', true)
    prefix: pool_a_host
groups:
  # VMs with more than 100 GiB to move
  big: sxm_bytes_to_move > 100 * 1024 ** 3
compose:
  # migrate_vm takes the uuid
  sxm_vm: sxm_uuid
"""

# imports after the documentation, as in the modules (ruff.toml exempts plugins/modules only)
from ansible.errors import AnsibleError, AnsibleParserError  # noqa: E402
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable  # noqa: E402

from ansible_collections.xapi.sxm.plugins.module_utils import pool_inventory  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.errors import error_from  # noqa: E402
from ansible_collections.xapi.sxm.plugins.module_utils.xapi import HAS_XENAPI, Connection  # noqa: E402

FILE_ENDINGS = ("xapi_pool.yml", "xapi_pool.yaml")


def text_of(value):
    """An option's value as a plain str: ansible-core 2.19 hands out tagged strings, which the
    XML-RPC marshaller refuses, and vaulted ones, which str() decrypts."""
    return "" if value is None else str(value)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """The VMs of one pool (see DOCUMENTATION); the work is in module_utils/pool_inventory.py."""

    NAME = "xapi.sxm.pool"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(FILE_ENDINGS)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        self._populate(self._pool_data(path, cache))

    # ---- reading --------------------------------------------------------------------------
    def _pool_data(self, path, cache):
        """The pool's inventory data, from the cache when it is on and holds it."""
        key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        if use_cache:
            try:
                return self._cache[key]
            except KeyError:
                update_cache = True
        data = self._read_pool()
        if update_cache:
            self._cache[key] = data
        return data

    def _read_pool(self):
        if not HAS_XENAPI:
            raise AnsibleError("%s needs the XenAPI Python library on the controller: pip install XenAPI"
                               % self.NAME)
        url = text_of(self.get_option("url"))
        if not url.strip() or not self.get_option("username"):
            raise AnsibleParserError("%s: url and username must not be empty" % self.NAME)
        if "://" in url and not url.startswith("https://"):
            raise AnsibleParserError("%s: url %s: only https:// pool URLs are accepted, the session and "
                                     "the password travel over it" % (self.NAME, url))
        validate_certs = self.get_option("validate_certs")
        if not validate_certs:
            self.display.warning("%s: validate_certs is off for %s: the pool's identity is not checked"
                                 % (self.NAME, url))
        password = text_of(self.get_option("password"))
        try:
            with Connection(url, text_of(self.get_option("username")), password, validate_certs=validate_certs,
                            ca_path=text_of(self.get_option("ca_path")) or None) as conn:
                return pool_inventory.read_inventory(conn)
        except Exception as e:  # noqa: BLE001 - every failure becomes one parse error without a traceback
            # the message says what to do; the errors' advice speaks of migration steps
            message = "%s: %s" % (self.NAME, error_from(e).message)
            raise AnsibleParserError(message.replace(password, "********") if password else message)

    # ---- hosts, variables, groups ----------------------------------------------------------
    def _populate(self, data):
        host_groups = pool_inventory.unique_names(data["hosts"], safe=True)
        sr_groups = pool_inventory.unique_names(data["srs"], safe=True)
        names = pool_inventory.inventory_names(data["vms"])
        strict = self.get_option("strict")
        for vm in data["vms"]:
            host = self.inventory.add_host(names[vm["sxm_uuid"]])
            for var, value in vm.items():
                self.inventory.set_variable(host, var, value)
            for group in pool_inventory.groups_of(vm, host_groups, sr_groups):
                self.inventory.add_child(self.inventory.add_group(group), host)
            facts = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option("compose"), facts, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), facts, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), facts, host, strict=strict)

"""What a freshly installed XCP-ng pool holds besides its storage and network: the host's
metrics, CPUs and certificate, the SM plugins, the control domain (dom0), the stock templates
and the guest-tools ISO SR. A tool that forgets to filter ``is_control_domain`` or
``is_a_template`` sees them here as it would on a real pool."""

import datetime
import hashlib
import ssl
import subprocess

from . import ops_vm
from .model import NULL_REF, now_text

GiB = 1 << 30
MiB = 1 << 20
CPU_COUNT = 2
# (type, name, capabilities) of the SM plugins an XCP-ng 8.3 host registers
SM_PLUGINS = (
    ("ext", "Local EXT3 VHD", ["SR_PROBE", "SR_UPDATE", "SR_SUPPORTS_LOCAL_CACHING", "VDI_CREATE",
                               "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH", "VDI_UPDATE", "VDI_CLONE",
                               "VDI_SNAPSHOT", "VDI_RESIZE", "VDI_MIRROR", "VDI_GENERATE_CONFIG",
                               "VDI_CONFIG_CBT", "VDI_ACTIVATE", "VDI_DEACTIVATE", "THIN_PROVISIONING",
                               "VDI_READ_CACHING"]),
    ("lvm", "Local LVM", ["SR_PROBE", "SR_UPDATE", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH",
                          "VDI_DETACH", "VDI_CLONE", "VDI_SNAPSHOT", "VDI_RESIZE", "VDI_MIRROR",
                          "VDI_CONFIG_CBT", "VDI_ACTIVATE", "VDI_DEACTIVATE"]),
    ("iso", "ISO", ["VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH", "SR_SCAN",
                    "SR_ATTACH", "SR_DETACH"]),
    ("udev", "Local Devices", ["VDI_ATTACH", "VDI_DETACH", "VDI_INTRODUCE"]),
    ("file-v3", "SMAPIv3 file (xapisim)", ["VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH",
                                           "VDI_CLONE", "VDI_SNAPSHOT", "VDI_RESIZE",
                                           "VDI_CONFIG_CBT"]),
)
# name, OS family, install methods, default disk size (other_config "disks" of the template)
STOCK_TEMPLATES = (
    ("Other install media", "other", "cdrom", 0),
    ("Debian Bookworm 12", "linux", "cdrom,nfs,http,ftp", 10 * GiB),
    ("Rocky Linux 9", "linux", "cdrom,nfs,http,ftp", 10 * GiB),
    ("Windows Server 2022 (64-bit)", "windows", "cdrom", 32 * GiB),
)
HOST_MEMORY = 16 * GiB
DOM0_MEMORY = 2 * GiB


def populate(pool, hosts, pifs):
    """Everything below, once, at the pool's first start."""
    db = pool.db
    for host, pif in zip(hosts, pifs):
        populate_host(pool, host, pif)
    for sm_type, name, capabilities in SM_PLUGINS:
        db.create("SM", {
            "name_label": name, "name_description": "SR plugin %s" % sm_type, "type": sm_type,
            "vendor": "Vates / Citrix Systems Inc", "copyright": "(C) 2008-2026", "version": "1.0",
            # SMAPIv3 plugins (xapi-storage) ask for API 5.0, as XCP-ng's do; SMAPIv1 for 1.0
            "required_api_version": "5.0" if sm_type.endswith("-v3") else "1.0",
            "configuration": {}, "capabilities": capabilities,
            "features": {c: 1 for c in capabilities}, "other_config": {},
            "driver_filename": "/opt/xensource/sm/%sSR" % sm_type})
    for spec in STOCK_TEMPLATES:
        add_template(db, *spec)
    add_tools_sr(pool, hosts)
    for vm in db.refs("VM"):
        ops_vm.update_allowed_operations(db, vm)


def populate_host(pool, host, pif):
    """A host's metrics, CPUs, NIC metrics, certificate and control domain."""
    db = pool.db
    db.update("host_metrics", db.raw("host", host)["metrics"], memory_total=HOST_MEMORY,
              memory_free=HOST_MEMORY - DOM0_MEMORY, live=True, last_updated=now_text())
    for number in range(CPU_COUNT):
        db.create("host_cpu", {
            "host": host, "number": number, "vendor": "GenuineIntel", "speed": 2400,
            "modelname": "Intel(R) Xeon(R) CPU (xapisim)", "family": 6, "model": 85,
            "stepping": "7", "flags": "fpu de tsc msr pae cx8 apic sep", "features": "",
            "utilisation": 0.0, "other_config": {}})
    db.update("PIF_metrics", db.raw("PIF", pif)["metrics"], carrier=True, vendor_id="8086",
              vendor_name="Intel Corporation", device_id="10fb", speed=10000, duplex=True,
              device_name="82599ES 10-Gigabit SFI/SFP+", pci_bus_path="0000:03:00.0",
              last_updated=now_text())
    add_certificate(pool, host)
    dom0 = add_control_domain(pool, host)
    db.set("host", host, "control_domain", dom0)


def add_certificate(pool, host):
    """The host's certificate record (host.certificates), read from its PEM file."""
    with open(pool.cert_file) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    dates = subprocess.run(["openssl", "x509", "-noout", "-startdate", "-enddate", "-in",
                            pool.cert_file], check=True, capture_output=True, text=True).stdout
    found = dict(line.split("=", 1) for line in dates.splitlines() if "=" in line)

    def when(text):
        parsed = datetime.datetime.strptime(text.strip(), "%b %d %H:%M:%S %Y %Z")
        return parsed.strftime("%Y%m%dT%H:%M:%SZ")

    def colons(digest):
        return ":".join("%02X" % b for b in digest)

    pool.db.create("Certificate", {
        "name": "", "type": "host", "host": host, "not_before": when(found["notBefore"]),
        "not_after": when(found["notAfter"]),
        "fingerprint": colons(hashlib.sha256(der).digest()),
        "fingerprint_sha256": colons(hashlib.sha256(der).digest()),
        "fingerprint_sha1": colons(hashlib.sha1(der).digest()), "purpose": []})


def add_control_domain(pool, host):
    """dom0: Running, domid 0, a console, not a template; most operations refused."""
    db = pool.db
    hostname = db.raw("host", host)["hostname"]
    dom0 = db.create("VM", {
        "name_label": "Control domain on host: %s" % hostname,
        "name_description": "The domain which manages physical devices and manages other domains",
        "is_control_domain": True, "is_a_template": False, "power_state": "Running",
        "resident_on": host, "affinity": host, "domid": 0, "domain_type": "pv",
        "memory_static_max": DOM0_MEMORY, "memory_dynamic_max": DOM0_MEMORY,
        "memory_dynamic_min": DOM0_MEMORY, "memory_static_min": DOM0_MEMORY,
        "memory_target": DOM0_MEMORY, "VCPUs_max": CPU_COUNT, "VCPUs_at_startup": CPU_COUNT,
        "actions_after_shutdown": "destroy", "actions_after_reboot": "destroy",
        "actions_after_crash": "destroy", "HVM_boot_policy": "", "platform": {},
        "other_config": {"storage_driver_domain": "", "is_system_domain": "true",
                         "perfmon": "<config/>"},
        "user_version": 1, "version": 0})
    db.update("VM", dom0, other_config=dict(db.raw("VM", dom0)["other_config"],
                                            storage_driver_domain=dom0))
    db.update("VM_metrics", db.raw("VM", dom0)["metrics"], memory_actual=DOM0_MEMORY,
              VCPUs_number=CPU_COUNT, state=["running"], start_time=now_text(),
              current_domain_type="pv", last_updated=now_text())
    db.create("console", {"protocol": "rfb", "location": "https://127.0.0.1/console?ref=%s" % dom0,
                          "VM": dom0, "other_config": {}})
    return dom0


def add_template(db, name, family, install_methods, disk_size):
    """A stock template as XCP-ng ships it: a default template, HVM, with the disks that
    ``VM.provision`` makes described in other_config "disks" (sr="" until a client picks one)."""
    other = {"default_template": "true", "install-methods": install_methods,
             "mac_seed": "", "base_template_name": name}
    if family == "linux":
        other["linux_template"] = "true"
    if disk_size:
        other["disks"] = ('<provision><disk device="0" size="%d" sr="" bootable="true" '
                          'type="system"/></provision>' % disk_size)
    memory = 2 * GiB if family == "windows" else 1 * GiB
    template = db.create("VM", {
        "name_label": name, "name_description": "Template for %s (xapisim stock template)" % name,
        "is_a_template": True, "is_default_template": True, "power_state": "Halted",
        "domain_type": "hvm", "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "cdn"},
        "platform": {"acpi": "1", "apic": "true", "pae": "true", "nx": "true",
                     "viridian": "true" if family == "windows" else "false",
                     "device-model": "qemu-upstream-compat"},
        "memory_static_max": memory, "memory_dynamic_max": memory, "memory_dynamic_min": memory,
        "memory_static_min": 16 * MiB if family != "windows" else memory,
        "memory_target": memory, "VCPUs_max": 2 if family == "windows" else 1,
        "VCPUs_at_startup": 2 if family == "windows" else 1,
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "other_config": other, "affinity": NULL_REF,
        "recommendations": ('<restrictions><restriction field="memory-static-max" '
                            'max="1649267441664"/><restriction field="vcpus-max" max="32"/>'
                            '</restrictions>')})
    # a template has no metrics (Xapi_vm_helpers.set_is_a_template)
    metrics = db.raw("VM", template)["metrics"]
    db.set("VM", template, "metrics", NULL_REF)
    db.destroy("VM_metrics", metrics)
    return template


def add_tools_sr(pool, hosts):
    """The read-only ISO SR with the guest tools, which every XCP-ng host has."""
    db = pool.db
    sr = db.create("SR", {
        "name_label": "XCP-ng Tools", "name_description": "XCP-ng Tools ISOs", "type": "iso",
        "content_type": "iso", "shared": False, "physical_size": 0, "physical_utilisation": 0,
        "virtual_allocation": 0, "sm_config": {}, "other_config": {"xenserver_tools_sr": "true"},
        "is_tools_sr": True, "allowed_operations": ["scan", "plug", "unplug"]})
    for host in hosts:
        db.create("PBD", {"host": host, "SR": sr, "device_config": {"location": "/opt/xensource/packages/iso"},
                          "currently_attached": True})
    db.create("VDI", {
        "name_label": "guest-tools.iso", "name_description": "XCP-ng guest tools", "SR": sr,
        "virtual_size": 64 * MiB, "physical_utilisation": 64 * MiB, "type": "user",
        "sharable": True, "read_only": True, "managed": True, "location": "guest-tools.iso",
        "other_config": {}, "sm_config": {}, "xenstore_data": {}, "tags": [],
        "allowed_operations": []})
    return sr

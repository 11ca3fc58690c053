"""The pool database: records by class and ref, derived relations, events, persistence.

Every write goes through ``create``/``set``/``destroy`` so that the one-to-many sides of XAPI's
relations (``VDI.snapshots``, ``VM.children``, ``VDI.VBDs`` ...) are always consistent, and so
that ``event.from`` sees every change. As in XAPI, destroying an object does not clear the
references other objects hold to it: a snapshot whose ``snapshot_of`` was destroyed keeps the
dangling ref.
"""

import copy
import json
import os
import threading
import time
import uuid as uuidlib

from .errors import XapiError
from .model import NULL_REF, datamodel

# derived set field -> (class, field) of the forward pointer
RELATIONS = {
    ("VM", "snapshots"): ("VM", "snapshot_of"),
    ("VM", "children"): ("VM", "parent"),
    ("VM", "VBDs"): ("VBD", "VM"),
    ("VM", "VIFs"): ("VIF", "VM"),
    ("VDI", "snapshots"): ("VDI", "snapshot_of"),
    ("VDI", "VBDs"): ("VBD", "VDI"),
    ("SR", "VDIs"): ("VDI", "SR"),
    ("SR", "PBDs"): ("PBD", "SR"),
    ("host", "PBDs"): ("PBD", "host"),
    ("host", "PIFs"): ("PIF", "host"),
    ("host", "resident_VMs"): ("VM", "resident_on"),
    ("network", "VIFs"): ("VIF", "network"),
    ("network", "PIFs"): ("PIF", "network"),
    ("task", "subtasks"): ("task", "subtask_of"),
    ("host", "host_CPUs"): ("host_cpu", "host"),
    ("host", "PCIs"): ("PCI", "host"),
    ("host", "PGPUs"): ("PGPU", "host"),
    ("host", "PUSBs"): ("PUSB", "host"),
    ("host", "certificates"): ("Certificate", "host"),
    ("host", "crashdumps"): ("host_crashdump", "host"),
    ("VM", "consoles"): ("console", "VM"),
    ("VM", "VTPMs"): ("VTPM", "VM"),
    ("VM", "VGPUs"): ("VGPU", "VM"),
    ("VM", "VUSBs"): ("VUSB", "VM"),
    ("VM", "crash_dumps"): ("crashdump", "VM"),
    ("VM_appliance", "VMs"): ("VM", "appliance"),
    ("VMSS", "VMs"): ("VM", "snapshot_schedule"),
    ("GPU_group", "PGPUs"): ("PGPU", "GPU_group"),
    ("GPU_group", "VGPUs"): ("VGPU", "GPU_group"),
    ("PIF", "VLAN_slave_of"): ("VLAN", "tagged_PIF"),
    ("Bond", "slaves"): ("PIF", "bond_slave_of"),
    ("PIF", "bond_master_of"): ("Bond", "master"),
}
FORWARD = {}
for (_many_cls, _many_field), (_one_cls, _one_field) in RELATIONS.items():
    FORWARD.setdefault((_one_cls, _one_field), []).append((_many_cls, _many_field))

# objects XAPI creates and destroys with their owner: owner class -> (field, companion class)
COMPANIONS = {"VM": ("metrics", "VM_metrics"), "host": ("metrics", "host_metrics"),
              "PIF": ("metrics", "PIF_metrics")}

COMPANIONS_BY_CLASS = {companion: field for field, companion in COMPANIONS.values()}


def stored_classes():
    """Every class whose objects XAPI keeps in its database: those with a ``get_record``, and
    sessions. Tables of classes this pool has no object of stay empty, as on a fresh pool."""
    model = datamodel()
    names = [name for name, cls in model.classes.items() if "get_record" in cls.messages]
    return tuple(sorted(set(names) | {"session"}))


STORED_CLASSES = stored_classes()
EVENT_LOG_LIMIT = 20000


def new_ref():
    return "OpaqueRef:" + str(uuidlib.uuid4())


class Database:
    def __init__(self, path=None):
        self.model = datamodel()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.path = path
        self.tables = {cls: {} for cls in STORED_CLASSES}
        self.by_uuid = {}
        self.reverse = {}           # (many_cls, many_field) -> {target ref: set of refs}
        self.events = []            # (id, timestamp, class, operation, ref, snapshot)
        self.event_id = 0
        self.dirty = False
        if path and os.path.exists(path):
            self._load()

    # ---- reading ----------------------------------------------------------------------------
    def exists(self, cls, ref):
        return ref in self.tables.get(cls, {})

    def class_of(self, ref):
        for cls, table in self.tables.items():
            if ref in table:
                return cls
        return None

    def raw(self, cls, ref):
        """The stored record (no derived fields); raises HANDLE_INVALID."""
        try:
            return self.tables[cls][ref]
        except KeyError:
            raise XapiError("HANDLE_INVALID", cls, ref)

    def get(self, cls, ref, field):
        if (cls, field) in RELATIONS:
            self.raw(cls, ref)
            return sorted(self.reverse.get((cls, field), {}).get(ref, ()))
        return copy.deepcopy(self.raw(cls, ref)[field])

    def record(self, cls, ref):
        """The record with its derived fields; private keys of the simulator (``_xapisim_*``)
        left out."""
        rec = {k: copy.deepcopy(v) for k, v in self.raw(cls, ref).items() if not k.startswith("_")}
        for (many_cls, many_field) in RELATIONS:
            if many_cls == cls:
                rec[many_field] = sorted(self.reverse.get((cls, many_field), {}).get(ref, ()))
        return rec

    def refs(self, cls):
        return list(self.tables[cls])

    def records(self, cls):
        return {ref: self.record(cls, ref) for ref in self.tables[cls]}

    def where(self, cls, **match):
        """Refs of ``cls`` whose stored fields equal the given values."""
        return [ref for ref, rec in self.tables[cls].items()
                if all(rec.get(k) == v for k, v in match.items())]

    def ref_of_uuid(self, cls, uuid):
        entry = self.by_uuid.get(uuid)
        if entry is None or entry[0] != cls:
            raise XapiError("UUID_INVALID", cls, uuid)
        return entry[1]

    # ---- writing ----------------------------------------------------------------------------
    def create(self, cls, fields, ref=None):
        with self.lock:
            ref = ref or new_ref()
            spec = self.model.classes[cls]
            rec = {}
            for name, field in spec.fields.items():
                if (cls, name) in RELATIONS:
                    continue
                rec[name] = field.initial()
            rec.update(copy.deepcopy(fields))
            if not rec.get("uuid"):
                rec["uuid"] = str(uuidlib.uuid4())
            if cls in COMPANIONS:
                # a new owner always gets a new companion (a copied VM record must not share
                # the original's metrics), created first as XAPI does
                field, companion = COMPANIONS[cls]
                rec[field] = self.create(companion, self._companion_fields(companion, fields))
            self.tables[cls][ref] = rec
            self.by_uuid[rec["uuid"]] = (cls, ref)
            for name, value in rec.items():
                self._link(cls, ref, name, None, value)
            self._event(cls, "add", ref)
            return ref

    def _companion_fields(self, companion, owner_fields):
        """A copy of the owner's old companion's values where there was one (copy_metrics)."""
        field = COMPANIONS_BY_CLASS[companion]
        old = owner_fields.get(field)
        if old and self.exists(companion, old):
            rec = copy.deepcopy(self.raw(companion, old))
            rec.pop("uuid", None)
            return rec
        return {}

    def set(self, cls, ref, field, value):
        with self.lock:
            rec = self.raw(cls, ref)
            old = rec.get(field)
            rec[field] = copy.deepcopy(value)
            if field == "uuid":
                self.by_uuid.pop(old, None)
                self.by_uuid[value] = (cls, ref)
            self._link(cls, ref, field, old, value)
            self._event(cls, "mod", ref)

    def touch(self, cls, ref):
        """A ``mod`` event without a change (event.inject)."""
        with self.lock:
            self.raw(cls, ref)
            self._event(cls, "mod", ref)

    def update(self, cls, ref, **fields):
        for name, value in fields.items():
            self.set(cls, ref, name, value)

    def destroy(self, cls, ref):
        with self.lock:
            rec = self.raw(cls, ref)
            snapshot = self.record(cls, ref)
            for name, value in rec.items():
                self._link(cls, ref, name, value, None)
            for (many_cls, many_field) in RELATIONS:
                if many_cls == cls:
                    self.reverse.get((many_cls, many_field), {}).pop(ref, None)
            del self.tables[cls][ref]
            self.by_uuid.pop(rec.get("uuid"), None)
            self._event(cls, "del", ref, snapshot)
            if cls in COMPANIONS:
                companion_ref = rec.get(COMPANIONS[cls][0])
                if companion_ref and self.exists(COMPANIONS[cls][1], companion_ref):
                    self.destroy(COMPANIONS[cls][1], companion_ref)

    def _link(self, cls, ref, field, old, new):
        for key in FORWARD.get((cls, field), ()):
            index = self.reverse.setdefault(key, {})
            if old and old != NULL_REF:
                index.get(old, set()).discard(ref)
            if new and new != NULL_REF:
                index.setdefault(new, set()).add(ref)

    # ---- events -----------------------------------------------------------------------------
    def _event(self, cls, operation, ref, snapshot=None):
        self.dirty = True
        self.event_id += 1
        if snapshot is None:
            snapshot = self.record(cls, ref)
        self.events.append((self.event_id, time.time(), cls, operation, ref, snapshot))
        if len(self.events) > EVENT_LOG_LIMIT:
            del self.events[: len(self.events) - EVENT_LOG_LIMIT]
        self.changed.notify_all()

    # ---- persistence ------------------------------------------------------------------------
    def save(self):
        if not self.path or not self.dirty:
            return
        with self.lock:
            data = {"tables": self.tables, "event_id": self.event_id}
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
            self.dirty = False

    def _load(self):
        with open(self.path) as f:
            data = json.load(f)
        self.event_id = data.get("event_id", 0)
        for cls, table in data["tables"].items():
            for ref, rec in table.items():
                self.tables.setdefault(cls, {})[ref] = rec
                self.by_uuid[rec["uuid"]] = (cls, ref)
                for name, value in rec.items():
                    self._link(cls, ref, name, None, value)
        self.dirty = False

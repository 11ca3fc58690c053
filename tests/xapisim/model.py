"""XAPI's datamodel, loaded from data/datamodel-full.json (every class of XAPI's IDL, a copy of
``xapi-reference/datamodel-full.json``), and the wire encoding of its types.

Values are kept in the database in a native form: int, float, bool, str (refs, enums, strings),
datetimes as XAPI's text form ``YYYYMMDDTHH:MM:SSZ``, lists for sets and dicts for maps.
``encode`` turns a native value of a datamodel type into what XML-RPC puts on the wire
(ints as decimal strings, datetimes as ``dateTime.iso8601``); ``decode`` does the reverse for
parameters, accepting what real clients send.
"""

import datetime
import json
import os
import xmlrpc.client
from xml.sax.saxutils import escape

NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"
DATA_DIR = os.path.join(os.path.dirname(__file__), "data")


def now_text():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H:%M:%SZ")


def datetime_text(value):
    """Normalise a datetime given by a client to XAPI's text form (UTC if no zone)."""
    if isinstance(value, xmlrpc.client.DateTime):
        value = value.value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return value.strftime("%Y%m%dT%H:%M:%SZ")
    text = str(value)
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S",
                "%Y%m%dT%H%M%SZ"):
        try:
            return datetime.datetime.strptime(text, fmt).strftime("%Y%m%dT%H:%M:%SZ")
        except ValueError:
            pass
    raise ValueError(text)


class Type:
    """A parsed datamodel type string such as ``(string -> VDI ref) map``."""

    def __init__(self, kind, name=None, inner=None, key=None):
        self.kind = kind      # string int float bool datetime ref enum set map record void
        self.name = name      # class of a ref/record, enum name
        self.inner = inner    # element type of set, value type of map
        self.key = key        # key type of map

    def __repr__(self):
        return "Type(%s %s)" % (self.kind, self.name or "")


_TYPE_CACHE = {}


def parse_type(text):
    text = text.strip()
    if text in _TYPE_CACHE:
        return _TYPE_CACHE[text]
    if text.endswith(" set"):
        result = Type("set", inner=parse_type(text[:-4]))
    elif text.endswith(" map"):
        body = text[:-4].strip()
        assert body[0] == "(" and body[-1] == ")", text
        body = body[1:-1]
        depth = 0
        for i, ch in enumerate(body):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and body[i:i + 4] == " -> ":
                result = Type("map", key=parse_type(body[:i]), inner=parse_type(body[i + 4:]))
                break
        else:
            raise ValueError(text)
    elif text.endswith(" option"):
        # only in sr_stat/probe_result (SR.probe_ext); carried as the value, or "" for None
        result = Type("option", inner=parse_type(text[:-7]))
    elif text.endswith(" ref"):
        result = Type("ref", name=text[:-4])
    elif text.endswith(" record"):
        result = Type("record", name=text[:-7])
    elif text.startswith("enum "):
        result = Type("enum", name=text[5:])
    elif text in ("string", "int", "float", "bool", "datetime", "void"):
        result = Type(text)
    else:
        raise ValueError("unknown type %r" % text)
    _TYPE_CACHE[text] = result
    return result


def default_of(t):
    """The zero value of a type, for fields the datamodel gives no default."""
    return {"string": "", "int": 0, "float": 0.0, "bool": False, "datetime": EPOCH,
            "ref": NULL_REF, "enum": "", "set": None, "map": None, "option": ""}.get(t.kind)


class Field:
    def __init__(self, spec):
        self.name = spec["name"]
        self.type_text = spec["type"]
        self.type = parse_type(spec["type"])
        self.qualifier = spec["qualifier"]
        self.has_default = "default" in spec
        self.default = spec.get("default")
        self.custom_setter = spec.get("custom_setter", False)

    def initial(self):
        value = self.default if self.has_default and self.default is not None else default_of(self.type)
        if value is None:
            value = [] if self.type.kind == "set" else {}
        return json.loads(json.dumps(value))


class Message:
    def __init__(self, cls, spec):
        self.cls = cls
        self.name = spec["name"]
        self.params = [(p[0], parse_type(p[1]), p[2] if len(p) > 2 else None, len(p) > 2)
                       for p in spec["params"]]
        self.result = parse_type(spec["result"]) if spec["result"] not in ("", "void") else Type("void")
        self.is_async = spec.get("async", False)
        self.hidden = spec.get("hidden", False)
        self.roles = spec.get("roles", [])
        self.implicit = spec.get("implicit", False)

    @property
    def wire_name(self):
        return "%s.%s" % (self.cls, self.name)

    @property
    def takes_session(self):
        return bool(self.params) and self.params[0][0] == "session_id"

    @property
    def call_params(self):
        """Parameters other than the session."""
        return self.params[1:] if self.takes_session else self.params


class Class:
    def __init__(self, name, spec):
        self.name = name
        self.fields = {f["name"]: Field(f) for f in spec["fields"]}
        self.messages = {m["name"]: Message(name, m) for m in spec["messages"]}
        self.enums = spec.get("enums", {})


class Datamodel:
    def __init__(self, path=None):
        with open(path or os.path.join(DATA_DIR, "datamodel-full.json")) as f:
            data = json.load(f)
        self.classes = {name: Class(name, spec) for name, spec in data["classes"].items()}
        self.http_actions = {a["name"]: a for a in data["http_actions"]}
        # XAPI's server also answers every message under its "alternative wire name",
        # Class_message (Datamodel_utils.alternative_wire_name): scripts written in languages
        # where ``event.from`` cannot be spelled call ``event_from``.
        self.alternative_names = {"%s_%s" % (cname, mname): "%s.%s" % (cname, mname)
                                  for cname, c in self.classes.items() for mname in c.messages}
        with open(os.path.join(DATA_DIR, "errors.json")) as f:
            self.errors = json.load(f)

    def permissions_of(self, role):
        """What XAPI puts in ``session.rbac_permissions`` for a subject with ``role``: the
        lowercase name of every message and HTTP action the role may call (``Rbac``:
        "all permissions are in lowercase"; HTTP actions as ``http/<action>``)."""
        names = ["%s.%s" % (cname.lower(), mname.lower()) for cname, c in self.classes.items()
                 for mname, m in c.messages.items() if role in m.roles]
        names += ["http/%s" % name for name, action in self.http_actions.items() if role in action["roles"]]
        return sorted(names)

    def wire_names(self):
        """system.listMethods: the synchronous wire name of every message."""
        return ["%s.%s" % (cname, mname) for cname, c in self.classes.items() for mname in c.messages]

    def message(self, wire_name):
        wire_name = self.alternative_names.get(wire_name, wire_name)
        cls, _, name = wire_name.partition(".")
        c = self.classes.get(cls)
        return c.messages.get(name) if c else None


_MODEL = None


def datamodel():
    global _MODEL
    if _MODEL is None:
        _MODEL = Datamodel()
    return _MODEL


# ---- wire encoding ---------------------------------------------------------------------------

def encode(value, t, xmlrpc_mode=True):
    """Native value of type ``t`` -> what XML-RPC (or JSON-RPC) carries."""
    k = t.kind
    if k == "int":
        return str(int(value)) if xmlrpc_mode else int(value)
    if k == "float":
        return float(value)
    if k == "bool":
        return bool(value)
    if k == "datetime":
        text = value or EPOCH
        return xmlrpc.client.DateTime(text) if xmlrpc_mode else text
    if k in ("string", "ref", "enum"):
        return "" if value is None else str(value)
    if k == "void":
        return ""
    if k == "option":
        return "" if value is None else encode(value, t.inner, xmlrpc_mode)
    if k == "set":
        return [encode(v, t.inner, xmlrpc_mode) for v in (value or [])]
    if k == "map":
        return {str(encode(key, t.key, xmlrpc_mode)): encode(v, t.inner, xmlrpc_mode)
                for key, v in (value or {}).items()}
    if k == "record":
        cls = datamodel().classes[t.name]
        return {name: encode(value.get(name, f.initial()), f.type, xmlrpc_mode)
                for name, f in cls.fields.items()}
    raise ValueError(k)


class DecodeError(Exception):
    pass


def decode(value, t):
    """What a client sent -> native value of type ``t``; DecodeError when it does not fit."""
    k = t.kind
    try:
        if k == "int":
            if isinstance(value, bool):
                raise DecodeError
            return int(value)
        if k == "float":
            return float(value)
        if k == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise DecodeError
        if k == "datetime":
            return datetime_text(value)
        if k in ("string", "ref", "enum"):
            if not isinstance(value, str):
                raise DecodeError
            return value
        if k == "option":
            return None if value in ("", None) else decode(value, t.inner)
        if k == "set":
            if not isinstance(value, (list, tuple)):
                raise DecodeError
            return [decode(v, t.inner) for v in value]
        if k == "map":
            if not isinstance(value, dict):
                raise DecodeError
            return {decode(key, t.key): decode(v, t.inner) for key, v in value.items()}
        if k == "record":
            if not isinstance(value, dict):
                raise DecodeError
            return dict(value)
    except (TypeError, ValueError):
        raise DecodeError
    raise DecodeError


# ---- XAPI's own XML-RPC text (task results, ova.xml) ------------------------------------------

def rpc_escape(text):
    return escape(text, {'"': "&quot;"})


def rpc_string(value):
    """rpclib ``Xmlrpc.to_string``: strings and ints as bare ``<value>``, no declaration."""
    if value is None:
        return "<value><nil/></value>"
    if isinstance(value, bool):
        return "<value><boolean>%d</boolean></value>" % value
    if isinstance(value, int):
        return "<value>%d</value>" % value
    if isinstance(value, float):
        return "<value><double>%.16g</double></value>" % value
    if isinstance(value, xmlrpc.client.DateTime):
        return "<value><dateTime.iso8601>%s</dateTime.iso8601></value>" % value.value
    if isinstance(value, (list, tuple)):
        return "<value><array><data>%s</data></array></value>" % "".join(map(rpc_string, value))
    if isinstance(value, dict):
        return "<value><struct>%s</struct></value>" % "".join(
            "<member><name>%s</name>%s</member>" % (rpc_escape(k), rpc_string(v)) for k, v in value.items())
    return "<value>%s</value>" % rpc_escape(str(value))

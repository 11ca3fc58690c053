"""Dispatch of XenAPI calls: method lookup, parameter counting, sessions, RBAC, Async tasks.

A call goes through the same checks, in the same order, as in XAPI's generated server:
unknown method, parameter count (session and defaulted trailing parameters excluded), session
validity, RBAC, handle validity, then the implementation. Implementations of custom messages
register with ``@implements("Class.message")`` (see ``ops_*.py``); the implicit messages every
class has (getters, setters, map and set updates, get_all*, get_by_*) are generic here.
"""

import threading
import time

from . import dbfilter
from .errors import XapiError
from .model import NULL_REF, DecodeError, datamodel, decode, encode, now_text, rpc_string

IMPLS = {}
# Messages whose implementation returns the wire form itself (event.from's result is a struct,
# although the datamodel calls it an event record set).
RAW_RESULTS = {"event.from"}
# Messages a session-less caller may use.
NO_SESSION = {"session.login_with_password", "session.slave_local_login_with_password"}


def implements(*wire_names):
    def register(fn):
        for name in wire_names:
            IMPLS[name] = fn
        return fn
    return register


class Context:
    """What an implementation sees: the pool, the caller's session, its task (if Async)."""

    def __init__(self, pool, session_ref, task_ref=None, wire_name="", xmlrpc_mode=True):
        self.pool = pool
        self.xmlrpc_mode = xmlrpc_mode
        self.db = pool.db
        self.session_ref = session_ref
        self.task_ref = task_ref
        self.wire_name = wire_name

    @property
    def session(self):
        return self.db.raw("session", self.session_ref)

    @property
    def is_local_superuser(self):
        return bool(self.session_ref) and self.session.get("is_local_superuser", False)

    def progress(self, fraction):
        if self.task_ref and self.db.exists("task", self.task_ref):
            self.db.set("task", self.task_ref, "progress", float(fraction))

    def call(self, wire_name, *args):
        """Run another message's implementation as this session, without RBAC (as XAPI does
        for calls it makes on a client's behalf)."""
        message = datamodel().message(wire_name)
        return run_impl(self, message, list(args))


class Dispatcher:
    def __init__(self, pool):
        self.pool = pool
        self.model = datamodel()

    def call(self, method, params, xmlrpc_mode=True):
        """Returns the encoded result; raises XapiError."""
        is_async = method.startswith("Async.")
        name = method[len("Async."):] if is_async else method
        message = self.model.message(name)
        if message is not None:
            name = message.wire_name  # the alternative form Class_message runs as Class.message
        if message is None:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", method)
        if is_async and not message.is_async:
            raise XapiError("Fault", "No async mode for this operation (rpc: %s)" % method)
        # a real host's latency and the call's own work, outside the lock (calls run side by side),
        # the simulator's own work counted in: an Async call's before its task, a call's after it
        started, cost = time.monotonic(), self.pool.host.call(name)
        if is_async:
            time.sleep(cost)
        try:
            return self._call(method, name, message, is_async, params, xmlrpc_mode)
        finally:
            if not is_async:
                time.sleep(max(0.0, cost - (time.monotonic() - started)))

    def _call(self, method, name, message, is_async, params, xmlrpc_mode):
        params = list(params)
        call_params = message.call_params
        received = len(params) - (1 if message.takes_session else 0)
        required = len([p for p in call_params if not p[3]])
        if received < required or received > len(call_params):
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", method, required, max(received, 0))
        db = self.pool.db
        with db.lock:
            session_ref = None
            if message.takes_session:
                session_ref = params.pop(0)
                self.check_session(session_ref)
                self.pool.log_call(method, session_ref)
                self.check_rbac(session_ref, message)
            self.pool.faults.on_call(name)
            # XAPI checks handles inside the task for Async calls: the task fails, the call not
            args = self.decode_args(message, params, check_refs=not is_async)
            ctx = Context(self.pool, session_ref, wire_name=name, xmlrpc_mode=xmlrpc_mode)
            if is_async:
                task = self.pool.create_task(session_ref, "Async.%s" % name)
                threading.Thread(target=self.run_task, args=(ctx, message, args, task),
                                 daemon=True).start()
                return task
            if name != "event.from":
                self.pool.faults.delay()
            result = run_impl(ctx, message, args)
            if name in RAW_RESULTS:
                return result
            db.save()
            return encode(result, message.result, xmlrpc_mode)

    def run_task(self, ctx, message, args, task):
        db = self.pool.db
        self.pool.faults.delay()
        with db.lock:
            ctx.task_ref = task
            try:
                self.check_refs(message, args)
                result = run_impl(ctx, message, args)
                if db.exists("task", task):
                    text = rpc_string(encode(result, message.result)) \
                        if message.result.kind != "void" else ""
                    db.update("task", task, result=text, progress=1.0, status="success",
                              finished=now_text(), allowed_operations=[])
            except XapiError as e:
                if db.exists("task", task):
                    db.update("task", task, error_info=e.description, progress=1.0,
                              status="failure", finished=now_text(), allowed_operations=[])
            except Exception as e:  # noqa: BLE001 - a task must always finish
                if db.exists("task", task):
                    db.update("task", task, error_info=["INTERNAL_ERROR", repr(e)], progress=1.0,
                              status="failure", finished=now_text(), allowed_operations=[])
            db.save()

    def check_session(self, ref):
        if not isinstance(ref, str) or not self.pool.session_alive(ref):
            raise XapiError("SESSION_INVALID", ref)
        self.pool.touch_session(ref)

    def check_rbac(self, session_ref, message):
        session = self.pool.db.raw("session", session_ref)
        if session.get("is_local_superuser"):
            return
        role = self.pool.role_of(session)
        if role not in message.roles:
            raise XapiError("RBAC_PERMISSION_DENIED", message.wire_name.lower(),
                            "No permission in user session")

    def decode_args(self, message, params, check_refs=True):
        args = []
        for (pname, ptype, default, has_default), value in zip(message.call_params, params):
            try:
                args.append(decode(value, ptype))
            except DecodeError:
                raise XapiError("FIELD_TYPE_ERROR", pname)
        for pname, ptype, default, has_default in message.call_params[len(params):]:
            args.append(default)
        if check_refs:
            self.check_refs(message, args)
        return args

    def check_refs(self, message, args):
        db = self.pool.db
        for (pname, ptype, default, has_default), value in zip(message.call_params, args):
            if ptype.kind == "ref" and value != NULL_REF and ptype.name in db.tables \
                    and not db.exists(ptype.name, value):
                raise XapiError("HANDLE_INVALID", ptype.name, value)


def run_impl(ctx, message, args):
    impl = IMPLS.get(message.wire_name)
    if impl is not None:
        return impl(ctx, *args)
    return generic(ctx, message, args)


def generic(ctx, message, args):
    """The implicit messages of every class."""
    db, cls, name = ctx.db, message.cls, message.name
    spec = datamodel().classes[cls]
    if cls not in db.tables:
        raise XapiError("NOT_IMPLEMENTED", message.wire_name)
    if name == "get_all":
        return db.refs(cls)
    if name == "get_all_records":
        return {ref: db.record(cls, ref) for ref in db.refs(cls)}
    if name == "get_all_records_where":
        keep = dbfilter.compile_filter(args[0])
        out = {}
        for ref in db.refs(cls):
            rec = db.record(cls, ref)
            if keep(rec):
                out[ref] = rec
        return out
    if name == "get_record":
        return db.record(cls, args[0])
    if name == "get_by_uuid":
        return db.ref_of_uuid(cls, args[0])
    if name == "get_by_name_label":
        return db.where(cls, name_label=args[0])
    if name == "create":
        return create_from_record(ctx, cls, args[0])
    if name == "destroy":
        db.destroy(cls, args[0])
        return None
    for prefix in ("get_", "set_", "add_to_", "remove_from_", "add_", "remove_"):
        if name.startswith(prefix) and name[len(prefix):] in spec.fields:
            field, ref = name[len(prefix):], args[0]
            if prefix == "get_":
                return db.get(cls, ref, field)
            value = db.get(cls, ref, field)
            if prefix == "set_":
                value = args[1]
            elif prefix == "add_to_":
                if args[1] in value:
                    raise XapiError("MAP_DUPLICATE_KEY", cls, field, db.raw(cls, ref)["uuid"], args[1])
                value[args[1]] = args[2]
            elif prefix == "remove_from_":
                value.pop(args[1], None)
            elif prefix == "add_":
                if args[1] not in value:
                    value.append(args[1])
            elif prefix == "remove_":
                value = [v for v in value if v != args[1]]
            db.set(cls, ref, field, value)
            return None
    raise XapiError("NOT_IMPLEMENTED", message.wire_name)


def create_from_record(ctx, cls, record, extra=None):
    """``<Class>.create``: constructor fields are taken from the record; a constructor field
    without a default must be given (FIELD_TYPE_ERROR otherwise, as rpclib reports it)."""
    spec = datamodel().classes[cls]
    fields = {}
    for fname, field in spec.fields.items():
        if field.qualifier not in ("RW", "RO/constructor"):
            continue
        if fname in record:
            try:
                fields[fname] = decode(record[fname], field.type)
            except DecodeError:
                raise XapiError("FIELD_TYPE_ERROR", fname)
            if field.type.kind == "ref" and fields[fname] != NULL_REF \
                    and field.type.name in ctx.db.tables \
                    and not ctx.db.exists(field.type.name, fields[fname]):
                raise XapiError("HANDLE_INVALID", field.type.name, fields[fname])
        elif not field.has_default:
            raise XapiError("FIELD_TYPE_ERROR", fname)
    fields.update(extra or {})
    return ctx.db.create(cls, fields)

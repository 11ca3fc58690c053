"""session, task, event and host messages."""

import time

from .api import implements
from .errors import XapiError
from .model import Type, encode, now_text


@implements("session.login_with_password")
def login_with_password(ctx, uname, pwd, version, originator):
    return ctx.pool.login(uname, pwd, originator)


@implements("session.logout", "session.local_logout")
def logout(ctx):
    ctx.db.destroy("session", ctx.session_ref)


@implements("session.get_record")
def session_get_record(ctx, ref):
    return ctx.db.record("session", ref)


@implements("host.get_server_certificate")
def host_get_server_certificate(ctx, host):
    with open(ctx.pool.cert_file) as f:
        return f.read()


@implements("host.get_servertime")
def host_get_servertime(ctx, host):
    # the pool's own clock: clients compare heartbeats written by other machines against it
    return now_text()


# ---- tasks ----------------------------------------------------------------------------------

@implements("task.create")
def task_create(ctx, label, description):
    return ctx.pool.create_task(ctx.session_ref, label, description)


@implements("task.cancel")
def task_cancel(ctx, task):
    rec = ctx.db.raw("task", task)
    if "cancel" not in rec["allowed_operations"] or rec["status"] != "pending":
        raise XapiError("OPERATION_NOT_ALLOWED", "task %s cannot be cancelled" % task)
    ctx.db.update("task", task, status="cancelling")


@implements("task.set_status")
def task_set_status(ctx, task, value):
    fields = {"status": value}
    if value in ("success", "failure", "cancelled"):
        fields.update(finished=now_text(), progress=1.0, allowed_operations=[])
    ctx.db.update("task", task, **fields)


def task_is_cancelling(db, task):
    return bool(task) and db.exists("task", task) and db.raw("task", task)["status"] == "cancelling"


def finish_task(db, task, result="", error=None):
    """Complete a task the way XAPI's handlers do: success with an XML-RPC result, or failure
    with error_info = code :: params."""
    if not task or not db.exists("task", task):
        return
    if error is not None:
        status = "cancelled" if error.code == "TASK_CANCELLED" else "failure"
        db.update("task", task, status=status, error_info=error.description, progress=1.0,
                  finished=now_text(), allowed_operations=[])
    else:
        db.update("task", task, status="success", result=result, progress=1.0,
                  finished=now_text(), allowed_operations=[])


# ---- events ---------------------------------------------------------------------------------

def parse_subscriptions(classes):
    subs = []
    for text in classes:
        if text == "*":
            subs.append(("*", None))
            continue
        # Xapi_event.Subscription.of_string: any class name is accepted (one that has no
        # objects simply never matches), case-insensitively
        cls, _, ref = text.partition("/")
        subs.append((cls.lower(), ref or None))
    return subs


def ctx_classes():
    from .db import STORED_CLASSES
    return STORED_CLASSES


def matches(subs, cls, ref):
    cls_l = cls.lower()
    return any(c == "*" or (c == cls_l and (r is None or r == ref)) for c, r in subs)


@implements("event.from")
def event_from(ctx, classes, token, timeout):
    """XAPI's event.from: returns as soon as anything matching changed after ``token``,
    else after ``timeout`` seconds with no events and a fresh token."""
    db = ctx.db
    subs = parse_subscriptions(classes)
    since = parse_token(token)
    deadline = time.monotonic() + max(0.0, float(timeout))
    with db.lock:
        while True:
            if since is None:
                # first call: the current state of every subscribed object, as 'add' events
                events = []
                for cls in ctx_classes():
                    for ref in db.refs(cls):
                        if matches(subs, cls, ref):
                            events.append(event_record(ctx, db.event_id, cls, "add", ref,
                                                       db.record(cls, ref)))
                return event_batch(db, events)
            if since < (db.events[0][0] - 1 if db.events else db.event_id):
                raise XapiError("EVENTS_LOST")
            events = [event_record(ctx, eid, cls, op, ref, snap)
                      for eid, ts, cls, op, ref, snap in db.events
                      if eid > since and matches(subs, cls, ref)]
            if events:
                return event_batch(db, events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return event_batch(db, [])
            db.changed.wait(remaining)


@implements("event.inject")
def event_inject(ctx, cls, ref):
    """Xapi_event.inject: touches the object's row (a ``mod`` event) and returns a token just
    before that event, so that event.from with it sees the touch (Xen Orchestra's barrier)."""
    db = ctx.db
    if db.class_of(ref) != cls:
        raise XapiError("HANDLE_INVALID", cls, ref)
    db.touch(cls, ref)
    return event_token(db.event_id - 1)


@implements("event.get_current_id")
def event_get_current_id(ctx):
    return ctx.db.event_id


def parse_token(token):
    """Xapi_event.Token.of_string: "" (from the start) or "<id>,<id>" as event_token gives."""
    if token == "":
        return None
    parts = token.split(",")
    try:
        if len(parts) != 2:
            raise ValueError(token)
        return int(parts[0])
    except ValueError:
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token)


def event_token(event_id):
    return "%020d,%020d" % (event_id, 0)


def event_record(ctx, eid, cls, op, ref, snapshot):
    return {"id": str(eid), "timestamp": "%.6f" % time.time(), "class": cls.lower(),
            "operation": op, "ref": ref,
            "snapshot": encode(snapshot, Type("record", cls), ctx.xmlrpc_mode)}


def event_batch(db, events):
    counts = {cls.lower(): len(db.tables[cls]) for cls in ctx_classes()}
    return {"events": events, "valid_ref_counts": counts, "token": event_token(db.event_id)}

"""The HTTPS front of a pool: XML-RPC at ``/`` and ``/RPC2``, JSON-RPC at ``/jsonrpc``, and the
HTTP data handlers registered in ``ROUTES`` by ``http_handlers``."""

import http.server
import json
import socketserver
import ssl
import threading
import traceback
import urllib.parse
import xmlrpc.client

from .api import Dispatcher
from .errors import XapiError

# answered without a session, from the datamodel (gen_server.ml)
SYSTEM_LIST_METHODS = "system.listMethods"
# (method, path) -> handler(pool, request); filled by http_handlers and simctl
ROUTES = {}


def find_route(method, path):
    """Http_svr.handle_one: the handler registered for the longest prefix of the path (so
    ``/import_raw_vdi/`` is ``/import_raw_vdi``, as Xen Orchestra calls it), else None."""
    best = None
    for (m, prefix), fn in ROUTES.items():
        if m == method and path.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, fn)
    return best[1] if best else None


def route(method, path):
    def register(fn):
        ROUTES[(method, path)] = fn
        return fn
    return register


class Request:
    """What an HTTP data handler needs of the request, in XAPI's terms: parameters are read
    from the cookie first, then from the query string (``xapi_http.ml``)."""

    def __init__(self, handler):
        self.handler = handler
        url = urllib.parse.urlsplit(handler.path)
        self.path = url.path
        self.query = {}
        self.query_list = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        for k, v in self.query_list:
            self.query.setdefault(k, v)
        self.cookies = {}
        for part in (handler.headers.get("Cookie") or "").split(";"):
            if "=" in part:
                k, v = part.strip().split("=", 1)
                self.cookies[k] = v
        self.headers = handler.headers
        self.rfile = handler.rfile
        self.wfile = handler.wfile

    def param(self, name, default=None):
        if name in self.cookies:
            return self.cookies[name]
        return self.query.get(name, default)

    def has(self, name):
        return name in self.cookies or name in self.query

    @property
    def content_length(self):
        value = self.headers.get("Content-Length")
        return int(value) if value is not None else None

    def respond(self, status, body=b"", headers=None, content_type="text/plain"):
        h = self.handler
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if body and h.command != "HEAD":
            h.wfile.write(body)

    def start_stream(self, status, headers, content_type="application/octet-stream"):
        h = self.handler
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        return h.wfile


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xapisim"
    # headers and body go out in two writes: with Nagle's algorithm on, the body waited for
    # the client's delayed ACK of the headers, 40 ms on every call. XAPI answers in ~1 ms.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    @property
    def pool(self):
        return self.server.pool

    def do_POST(self):
        # XAPI registers XML-RPC at "/" and "/RPC2", JSON-RPC at "/json" and "/jsonrpc"; any
        # other POST path goes to its longest registered prefix ("/xmlrpc": XML-RPC at "/")
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/json"):
            return self.jsonrpc()
        if find_route("POST", path) is None:
            return self.xmlrpc()
        return self.data("POST")

    def do_GET(self):
        return self.data("GET")

    def do_PUT(self):
        return self.data("PUT")

    def data(self, method):
        fn = find_route(method, urllib.parse.urlsplit(self.path).path)
        if fn is None:
            self.send_error(404)
            return
        try:
            fn(self.pool, Request(self))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - report, never kill the server
            traceback.print_exc()
            self.close_connection = True

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, body, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def xmlrpc(self):
        body = self.read_body()
        try:
            params, method = xmlrpc.client.loads(body, use_datetime=False)
            if method == SYSTEM_LIST_METHODS:
                # api_server.ml: the bare array, without the Status/Value struct
                out = xmlrpc.client.dumps((self.server.dispatcher.model.wire_names(),),
                                          methodresponse=True)
                return self.reply(out.encode(), "text/xml")
            self.server.refuse_login_on_slave(method)
            value = self.server.dispatcher.call(method, params)
            result = {"Status": "Success", "Value": value}
        except XapiError as e:
            result = {"Status": "Failure", "ErrorDescription": e.description}
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            result = {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", repr(e)]}
        out = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
        self.reply(out.encode(), "text/xml")

    def jsonrpc(self):
        body = self.read_body()
        request_id, v2 = None, False
        try:
            req = json.loads(body)
            request_id = req.get("id")
            v2 = req.get("jsonrpc") == "2.0"
            params = req.get("params") or []
            if req["method"] == SYSTEM_LIST_METHODS:
                value = self.server.dispatcher.model.wire_names()
            else:
                self.server.refuse_login_on_slave(req["method"])
                value = self.server.dispatcher.call(req["method"], params, xmlrpc_mode=False)
            out = {"jsonrpc": "2.0", "result": value, "id": request_id} if v2 else \
                {"result": value, "error": None, "id": request_id}
        except XapiError as e:
            if v2:
                out = {"jsonrpc": "2.0", "error": {"code": 1, "message": e.code, "data": e.params},
                       "id": request_id}
            else:
                out = {"result": None, "error": e.description, "id": request_id}
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            desc = ["INTERNAL_ERROR", repr(e)]
            out = {"jsonrpc": "2.0", "error": {"code": 1, "message": desc[0], "data": desc[1:]},
                   "id": request_id} if v2 else {"result": None, "error": desc, "id": request_id}
        self.reply(json.dumps(out).encode(), "application/json")


class PoolServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, pool, host="127.0.0.1", port=0, host_ref=None):
        super().__init__((host, port), Handler)
        self.pool = pool
        self.host_ref = host_ref or pool.master      # the host this front belongs to
        self.dispatcher = Dispatcher(pool)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pool.cert_file, pool.key_file)
        self.ssl_context = context

    def get_request(self):
        sock, addr = super().get_request()
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)

    @property
    def port(self):
        return self.server_address[1]

    def refuse_login_on_slave(self, method):
        """xapi_session.ml: a login on a host that is not the master fails with HOST_IS_SLAVE
        and the master's address (clients log in there again). Calls with a session made on
        the master are answered: a slave forwards them."""
        if method == "session.login_with_password" and self.host_ref != self.pool.master:
            raise XapiError("HOST_IS_SLAVE", self.pool.db.raw("host", self.pool.master)["address"])

    def serve_in_thread(self):
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread

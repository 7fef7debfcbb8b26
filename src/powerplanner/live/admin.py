"""The planner's HTTP admin endpoint: ``PUT /budget`` {"watts": W}, ``DELETE /budget``, ``GET /budget``,
``GET /decision``, ``GET /profile`` (the learned profile, planner.calibration). Off unless
``budget.admin.enabled``; every request needs ``Authorization: Bearer <token>``.

Hardened because it can lower (and, within the configured budget, raise) the power of a whole deployment
(docs/operations.md, "The admin endpoint"):

- loopback by default (``budget.admin.bind`` 127.0.0.1:8081), optional TLS (``tls_cert_file`` and
  ``tls_key_file``, loaded and checked at start-up: :mod:`powerplanner.live.admin_settings`);
- bounded: at most ``max_connections`` connections are served at once (one thread each); a connection over
  the cap gets a 503 at once from the accepting thread, which never blocks on a client. Each connection has
  ``timeout_s`` for everything it sends (TLS handshake, request line, headers, body): a slow or half-open
  client is cut off at that deadline, whatever it trickles;
- strict input (:mod:`powerplanner.live.admin_requests`): ``Content-Length`` must be ASCII digits, at most
  4 KiB (411 when missing, 400 when malformed, 413 when too large), request line and headers at most 16 KiB
  (431), the body exactly ``{"watts": <positive finite JSON number>}``. Every answer is one JSON object with
  an ``error`` line when it is refused, never a traceback.

This module is the server: sockets, deadlines, the connection cap, the TLS handshake and the dispatch. The
budget value itself lives in :class:`powerplanner.live.budget.AdminBudget`, which persists it
(:mod:`powerplanner.live.budget_store`) before this endpoint answers that it took effect.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from powerplanner.errors import UserError
from powerplanner.hostport import join_host_port
from powerplanner.live.admin_requests import (
    BODY_HINT,
    MAX_BODY_BYTES,
    RequestError,
    bearer_token,
    parse_budget_body,
    parse_content_length,
)
from powerplanner.live.admin_settings import AdminSettings, parse_bind
from powerplanner.live.budget import AdminBudget

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16384
CONNECTION_THREAD_NAME = "powerplanner-admin-conn"


class _RequestTooLarge(Exception):
    """The client sent more than the request line, headers and body may hold."""


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each bounded by what is left of the connection's deadline and by a byte budget:
    a client trickling one byte at a time cannot stretch a request past the deadline."""

    def __init__(self, sock: socket.socket, deadline: float, limit_bytes: int) -> None:
        self._sock = sock
        self._deadline = deadline
        self._left = limit_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client did not send its request in time")
        if self._left <= 0:
            raise _RequestTooLarge()
        self._sock.settimeout(remaining)
        view = memoryview(buffer).cast("B")
        n = self._sock.recv_into(view[: min(len(view), self._left)])
        self._left -= n
        return n


@dataclass(frozen=True)
class _App:
    token: bytes
    admin: AdminBudget
    decision_json: Callable[[], dict[str, Any]]
    budget_json: Callable[[], dict[str, Any]] | None
    profile_json: Callable[[], dict[str, Any] | None] | None = None  # GET /profile (live/calibration_view.py)


def _json_response(status: int, reason: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("ascii") + data


class _Handler(BaseHTTPRequestHandler):
    server: _AdminHTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: the deadline covers the whole exchange
    default_request_version = "HTTP/1.0"  # never answer HTTP/0.9-style (a bare body without status line)

    def __init__(self, request: Any, client_address: Any, server: _AdminHTTPServer, *, deadline: float) -> None:
        self.deadline = deadline
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.deadline,
                                                       MAX_HEAD_BYTES + MAX_BODY_BYTES))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("admin: " + format, *args)

    # -- answers
    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.connection.settimeout(self.server.timeout_s)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            self.end_headers()
            self.wfile.write(data)
        except OSError as exc:
            log.debug("admin: could not answer %s: %s", self.client_address, exc)
        self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (bad request line, too many headers, unknown method) as JSON too."""
        text = message or self.responses.get(code, ("refused",))[0]
        self._send(code, {"error": f"{text}; use GET|PUT|DELETE /budget or GET /decision"})

    # -- dispatch
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            status, body = self._handle(method)
        except RequestError as exc:
            status, body = exc.status, {"error": exc.message}
        except TimeoutError:
            status, body = 408, {"error": f"the request body did not arrive within {self.server.timeout_s:g} s; "
                                          "send it with the request"}
        except OSError as exc:  # the client went away mid-request: nobody to answer
            log.debug("admin: %s %s from %s: %s", method, self.path, self.client_address, exc)
            self.close_connection = True
            return
        except Exception:  # a bug must not leave the client without an answer
            log.exception("admin: %s %s failed", method, self.path)
            status, body = 500, {"error": "internal error; see the planner's log"}
        self._send(status, body)

    def _handle(self, method: str) -> tuple[int, dict[str, Any]]:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if self.headers.get("Transfer-Encoding") is not None:
            raise RequestError(411 if not self.headers.get_all("Content-Length") else 400,
                               f"Transfer-Encoding is not accepted; send the body with a Content-Length; {BODY_HINT}")
        length = parse_content_length(self.headers.get_all("Content-Length") or [])
        raw = b""
        if method == "PUT":
            if length is None:
                raise RequestError(411, f"Content-Length is required; {BODY_HINT}")
            raw = self._read_body(length)
        elif length:
            self._read_body(length)  # read what was announced, so closing does not reset the connection
        given = bearer_token(self.headers.get("Authorization"))
        if given is None or not hmac.compare_digest(given.encode(), app.token):
            return 401, {"error": "missing or wrong bearer token; send Authorization: Bearer <token>"}
        if path == "/decision" and method == "GET":
            return 200, app.decision_json()
        if path == "/profile" and method == "GET":
            learned = app.profile_json() if app.profile_json is not None else None
            if learned is None:
                return 404, {"error": "no learned profile: calibration is off or no tick has run; set "
                                      "planner.calibration.enabled: true"}
            return 200, learned
        if path != "/budget":
            return 404, {"error": "unknown path; use GET|PUT|DELETE /budget or GET /decision"}
        if method == "GET":
            return 200, self._budget_view()
        watts = parse_budget_body(raw) if method == "PUT" else None
        change = app.admin.change(watts)
        self.server.changes += 1
        shown = "cleared" if watts is None else f"{watts:g} W"
        answer = {"admin_watts": change.watts, "applied": change.applied, "persisted": change.persisted}
        if change.error:
            log.warning("admin: budget %s requested: %s", shown, change.error)
            return 503, {"error": f"admin budget {shown}: {change.error}; retry", **answer}
        log.warning("admin: budget %s%s", shown, "" if change.persisted else " (in memory only)")
        return 200, answer

    def _read_body(self, length: int) -> bytes:
        try:
            raw = self.rfile.read(length)
        except _RequestTooLarge:
            raise RequestError(413, f"request over {MAX_HEAD_BYTES + MAX_BODY_BYTES} bytes; {BODY_HINT}") from None
        if len(raw) < length:
            raise RequestError(400, f"body ended after {len(raw)} of the {length} bytes of its Content-Length; "
                                    "send the whole body")
        return raw

    def _budget_view(self) -> dict[str, Any]:
        app = self.server.app
        view = dict(app.budget_json()) if app.budget_json else {}
        view.update(admin_watts=app.admin.watts, persisted=app.admin.persisted)
        return view


class _AdminHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with a cap on concurrent connections, a per-connection deadline and optional
    TLS whose handshake runs on the connection's thread, under its deadline (never on the accepting thread)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: _App, *, tls: ssl.SSLContext | None, timeout_s: float,
                 max_connections: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.tls = tls
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.changes = 0
        self.refused = 0  # connections answered 503 because all slots were busy
        self._slots = threading.BoundedSemaphore(max_connections)
        self._full_logged = False
        super().__init__(address, _Handler)  # type: ignore[arg-type]  # built in finish_request, with a deadline

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        self._full_logged = False
        try:
            threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name=CONNECTION_THREAD_NAME, daemon=True).start()
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """All slots busy: answer 503 without ever blocking the accepting thread (plain HTTP), or just close
        (TLS: a plain answer would be noise to a TLS client)."""
        self.refused += 1
        if not self._full_logged:
            log.warning("admin: %d connections already open (budget.admin.max_connections); refusing new ones "
                        "until one finishes", self.max_connections)
            self._full_logged = True
        try:
            request.setblocking(False)
            if self.tls is None:
                request.send(_json_response(503, "Service Unavailable", {
                    "error": f"the admin endpoint is serving {self.max_connections} connections "
                             "(budget.admin.max_connections); retry in a moment"}))
            for _ in range(4):  # what already arrived, so closing is less likely to reset the answer away
                if not request.recv(65536):
                    break
        except OSError:  # BlockingIOError once nothing more has arrived
            pass
        self.shutdown_request(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        deadline = time.monotonic() + self.timeout_s
        request.settimeout(self.timeout_s)
        conn = request
        if self.tls is not None:
            conn = self._handshake(request, deadline)
            if conn is None:
                return
        try:
            _Handler(conn, client_address, self, deadline=deadline)
        except _RequestTooLarge:
            try:
                conn.settimeout(self.timeout_s)
                conn.sendall(_json_response(431, "Request Header Fields Too Large", {
                    "error": f"request line and headers over {MAX_HEAD_BYTES} bytes; send a plain PUT /budget"}))
            except OSError:
                pass
        except OSError as exc:  # the client went away mid-request
            log.debug("admin: connection from %s ended: %s", client_address, exc)
        finally:
            if conn is not request:
                conn.close()

    def _handshake(self, sock: socket.socket, deadline: float) -> ssl.SSLSocket | None:
        assert self.tls is not None
        try:
            tls = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            log.debug("admin: TLS setup failed: %s", exc)
            return None
        tls.setblocking(False)
        try:
            with selectors.DefaultSelector() as selector:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("TLS handshake not finished in time")
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        events = selectors.EVENT_READ
                    except ssl.SSLWantWriteError:
                        events = selectors.EVENT_WRITE
                    selector.register(tls, events)
                    selector.select(remaining)
                    selector.unregister(tls)
        except (ssl.SSLError, OSError) as exc:  # TimeoutError included
            log.debug("admin: TLS handshake failed: %s", exc)
            tls.close()
            return None
        tls.setblocking(True)
        return tls

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("admin: error serving %s", client_address, exc_info=True)


class AdminServer:
    """The admin endpoint on a background thread (see the module docstring for what it accepts)."""

    def __init__(
        self,
        settings: AdminSettings,
        admin: AdminBudget,
        decision_json: Callable[[], dict[str, Any]],
        budget_json: Callable[[], dict[str, Any]] | None = None,
        profile_json: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        host, port = parse_bind(settings.bind, "budget.admin.bind")
        app = _App(settings.token.encode(), admin, decision_json, budget_json, profile_json)
        try:
            self._httpd = _AdminHTTPServer((host, port), app, tls=settings.tls, timeout_s=settings.timeout_s,
                                           max_connections=settings.max_connections)
        except OSError as exc:
            raise UserError(f"budget.admin.bind: cannot listen on {settings.bind} ({exc.strerror or exc}); choose a "
                            "free address") from None
        self.tls = settings.tls is not None
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="powerplanner-admin", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{join_host_port(*self.address)}"

    @property
    def changes(self) -> int:
        """Budget changes accepted so far (PUT and DELETE that reached the budget)."""
        return self._httpd.changes

    @property
    def refused(self) -> int:
        """Connections refused because ``max_connections`` were being served."""
        return self._httpd.refused

    def start(self) -> AdminServer:
        self._thread.start()
        log.info("admin endpoint on %s", self.url)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

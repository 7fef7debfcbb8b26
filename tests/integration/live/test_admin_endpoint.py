"""The real admin server on a loopback port, spoken to over raw sockets: malformed requests get one JSON error
line (never a traceback, never silence), half-open and slow clients cannot hold more than
``max_connections`` threads and are cut off at their deadline, and it keeps answering throughout; then the
same over TLS with a self-signed certificate made by the ``openssl`` CLI (skipped where it is missing: the
venv has no ``cryptography`` package and the ``ssl`` module cannot make certificates).

Counts, never durations, are asserted; the waits below only bound how long a broken server could hang a test.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from powerplanner.config import AdminConfig
from powerplanner.live.admin import CONNECTION_THREAD_NAME, MAX_HEAD_BYTES, AdminServer
from powerplanner.live.admin_settings import AdminSettings
from powerplanner.live.budget import AdminBudget
from tests.support import tls

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"
GUARD_S = 30.0  # a socket read that waits this long means the server hung: the test fails, it does not assert time


def connection_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == CONNECTION_THREAD_NAME)


def wait_until(predicate: object, what: str) -> None:
    """Poll ``predicate`` (bounded by GUARD_S) and fail naming ``what`` if it never holds."""
    assert callable(predicate)
    end = time.monotonic() + GUARD_S
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"never: {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def serving(admin: AdminBudget | None = None, **settings: object) -> Iterator[AdminServer]:
    server = AdminServer(AdminSettings("127.0.0.1:0", TOKEN, **settings),  # type: ignore[arg-type]
                         admin or AdminBudget(), lambda: {"decision": None}).start()
    try:
        yield server
    finally:
        server.stop()


def connect(server: AdminServer) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=GUARD_S)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Everything until the server closes; (status, JSON body). Status 0: closed without an answer."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return 0, {}
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"Traceback" not in raw and b"<html" not in raw.lower()
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def exchange(server: AdminServer, data: bytes, *, half_close: bool = False) -> tuple[int, dict[str, object]]:
    with connect(server) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_answer(sock)


def put(body: bytes, headers: str = "") -> bytes:
    return f"PUT /budget HTTP/1.1\r\nHost: x\r\n{AUTH}{headers}\r\n".encode() + body


@pytest.mark.parametrize("request_bytes,status,needle", [
    (put(b'{"watts": 5000}'), 411, "Content-Length is required"),
    (put(b'{"watts": 5000}', "Content-Length: abc\r\n"), 400, "not a non-negative integer"),
    (put(b'{"watts": 5000}', "Content-Length: -15\r\n"), 400, "not a non-negative integer"),
    (put(b'{"watts": 5000}', "Content-Length: 1e3\r\n"), 400, "not a non-negative integer"),
    (put(b'{"watts": 5000}', "Content-Length: 15\r\nContent-Length: 16\r\n"), 400, "different values"),
    (put(b"x" * 5000, "Content-Length: 5000\r\n"), 413, "limit"),
    (put(b"", "Content-Length: 99999999999\r\n"), 413, "limit"),
    (put(b'{"watts": 5000}', "Transfer-Encoding: chunked\r\n"), 411, "Transfer-Encoding"),
    (put(b'{"watts": true}', "Content-Length: 15\r\n"), 400, "boolean is not watts"),
    (put(b'{"watts": NaN}', "Content-Length: 14\r\n"), 400, "NaN"),
    (put(b'{"watts": -1}', "Content-Length: 13\r\n"), 400, "positive"),
    (put(b'{"watts": "9"}', "Content-Length: 14\r\n"), 400, "string"),
    (b"GARBAGE\r\n\r\n", 400, "Bad request"),
    (b"POST /budget HTTP/1.1\r\n\r\n", 501, "Unsupported method"),
    (b"GET /budget HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 8192) + b"\r\n\r\n", 431, "headers"),
    (b"PUT /budget HTTP/1.1\r\nContent-Length: 15\r\nAuthorization: Bearer \r\n\r\n"
     + b'{"watts": 5000}', 401, "bearer token"),
])
def test_bad_requests_get_one_json_error(request_bytes: bytes, status: int, needle: str) -> None:
    admin = AdminBudget()
    with serving(admin, timeout_s=5.0) as server:
        got, body = exchange(server, request_bytes)
        assert got == status and needle in str(body.get("error")), body
        assert admin.watts is None and server.changes == 0
        # ... and the server still answers a good request afterwards
        got, body = exchange(server, put(b'{"watts": 5000}', "Content-Length: 15\r\n"))
        assert (got, body["admin_watts"]) == (200, 5000.0) and admin.watts == 5000.0


def test_a_body_shorter_than_its_content_length() -> None:
    with serving(timeout_s=0.5) as server:
        got, body = exchange(server, put(b'{"watts"', "Content-Length: 15\r\n"), half_close=True)
        assert got == 400 and "ended after 8 of the 15 bytes" in str(body["error"])
        got, body = exchange(server, put(b'{"watts"', "Content-Length: 15\r\n"))  # ... and the client waits
        assert got == 408 and "did not arrive" in str(body["error"])


def test_half_open_connections_are_bounded_and_cut_off() -> None:
    cap = 8
    with serving(timeout_s=1.0, max_connections=cap) as server:
        # Fill every slot with clients that connect and never send a byte.
        holders = [connect(server) for _ in range(cap)]
        wait_until(lambda: connection_threads() == cap, f"{cap} connection threads")
        # Over the cap: answered at once by the accepting thread (the client has not even sent its request).
        with connect(server) as late:
            status, body = read_answer(late)
        assert status == 503 and "max_connections" in str(body["error"]) and server.refused >= 1
        # The holders are cut off at their deadline, without an answer (they never asked anything).
        for sock in holders:
            assert read_answer(sock) == (0, {})
            sock.close()
        wait_until(lambda: connection_threads() == 0, "connection threads gone")
        assert exchange(server, put(b'{"watts": 4000}', "Content-Length: 15\r\n"))[0] == 200
        assert server.changes == 1



def test_the_audits_150_half_open_connections() -> None:
    """They held 155 threads before: now at most ``max_connections``, each cut off at its deadline, and the
    server answers a good request afterwards."""
    cap = 8
    with serving(timeout_s=5.0, max_connections=cap) as server:
        crowd: list[socket.socket] = []
        peak = 0
        for i in range(150):
            crowd.append(connect(server))
            if i % 3 == 0:  # some send a partial request, the others nothing at all
                crowd[-1].sendall(b"PUT /budget HTTP/1.1\r\nContent-Len"[: 5 + i % 20])
            peak = max(peak, connection_threads())
        peak = max(peak, *(connection_threads() for _ in range(20)))
        assert 1 <= peak <= cap
        answers = [read_answer(sock) for sock in crowd]  # each one is closed by the server: none hangs
        for sock in crowd:
            sock.close()
        assert all(status in (0, 503) for status, _ in answers)
        refused = sum(1 for status, _ in answers if status == 503)
        assert refused == server.refused and refused >= 150 - cap * 3, refused
        wait_until(lambda: connection_threads() == 0, "connection threads gone after the crowd")
        assert exchange(server, put(b'{"watts": 3000}', "Content-Length: 15\r\n"))[0] == 200
        assert server.changes == 1


def test_a_trickling_client_is_cut_off_at_its_deadline() -> None:
    request = put(b'{"watts": 5000}', "Content-Length: 15\r\n" + "X-Pad: " + "p" * 100 + "\r\n")
    with serving(timeout_s=0.5) as server, connect(server) as sock:
        sent = 0
        closed = False
        while sent < len(request) and not closed:
            try:
                sock.send(request[sent:sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 1
            time.sleep(0.03)  # ~5 s for the whole request, ten times its deadline
            readable, _, _ = select.select([sock], [], [], 0)
            closed = bool(readable)
        assert closed and sent < len(request), f"the server read all {sent} bytes of a trickled request"
        assert connection_threads() <= 1


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if tls.openssl_binary() is None:
        pytest.skip("the openssl CLI is not installed (and the venv has no `cryptography` to make a certificate)")
    return tls.self_signed(tmp_path_factory.mktemp("tls"))


def test_tls_serves_https_and_bounds_its_handshakes(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    cfg = AdminConfig(enabled=True, bind="127.0.0.1:0", token=TOKEN, tls_cert_file=str(cert),
                      tls_key_file=str(key), timeout_s=1.0, max_connections=4)
    admin = AdminBudget()
    server = AdminServer(AdminSettings.from_config(cfg), admin, lambda: {"decision": None}).start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        client = ssl.create_default_context(cafile=str(cert))
        resp = httpx.put(f"{server.url}/budget", json={"watts": 4200}, headers={"Authorization": f"Bearer {TOKEN}"},
                         verify=client)
        assert resp.status_code == 200 and admin.watts == 4200
        assert httpx.put(f"{server.url}/budget", json={"watts": True}, headers={"Authorization": f"Bearer {TOKEN}"},
                         verify=client).status_code == 400
        # Plain HTTP on the TLS port gets no budget change, and the server goes on.
        plain = exchange_plain(server, put(b'{"watts": 1000}', "Content-Length: 15\r\n"))
        assert b"200 OK" not in plain and admin.watts == 4200
        # Clients that open TCP and never start the handshake: bounded, then cut off.
        crowd = [connect(server) for _ in range(40)]
        assert max(connection_threads() for _ in range(50)) <= 4
        for sock in crowd:
            sock.settimeout(GUARD_S)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
            sock.close()
        wait_until(lambda: connection_threads() == 0, "TLS connection threads gone")
        resp = httpx.get(f"{server.url}/budget", headers={"Authorization": f"Bearer {TOKEN}"}, verify=client)
        assert resp.status_code == 200 and resp.json()["admin_watts"] == 4200
    finally:
        server.stop()


def exchange_plain(server: AdminServer, data: bytes) -> bytes:
    with connect(server) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

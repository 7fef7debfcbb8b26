"""An HTTP proxy in front of a real Prometheus that breaks its answers on demand, so a test sees what the
planner does with a Prometheus that is down, slow, garbled or says nothing."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FaultProxy:
    """An HTTP proxy in front of Prometheus whose ``mode`` injects faults: ``ok`` (forward), ``down``
    (connection closed), ``slow`` (answer after ``delay_s``), ``garbage`` (non-JSON), ``nan`` (every value
    NaN), ``empty`` (empty vectors), ``error500``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "ok"
        self.delay_s = 1.0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                mode = proxy.mode
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "slow":
                    time.sleep(proxy.delay_s)
                if mode == "garbage":
                    self._reply(200, b"<html>502 Bad Gateway</html>", "text/html")
                    return
                if mode == "error500":
                    self._reply(500, b"internal", "text/plain")
                    return
                upstream = httpx.get(proxy.upstream + self.path, timeout=10.0)
                body = upstream.content
                if mode in ("nan", "empty") and upstream.status_code == 200:
                    data = upstream.json()
                    result = data.get("data", {}).get("result")
                    if data.get("data", {}).get("resultType") == "vector" and isinstance(result, list):
                        if mode == "empty":
                            data["data"]["result"] = []
                        else:
                            for item in result:
                                item["value"][1] = "NaN"
                    body = httpx.Response(200, json=data).content
                self._reply(upstream.status_code, body, "application/json")

            def _reply(self, status: int, body: bytes, ctype: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

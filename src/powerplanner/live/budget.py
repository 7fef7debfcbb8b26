"""Where the power budget comes from. Every active source is read each cap tick; the lowest wins, so any
one of them (a facility signal, an operator at the admin endpoint, the schedule) can only make the
planner more conservative than the configured value, never less.

Sources: the config value (optionally hot-reloaded from the config file), the HTTP admin endpoint
(``PUT /budget``, ``DELETE /budget``, ``GET /budget``, ``GET /decision``; off by default, bearer token when
on), a PromQL query, and a daily UTC schedule. A source that cannot answer (file broken, query failed or
empty) is inactive for that tick and its error is reported; the config value is always there as a floor
of safety (it is never dropped).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from powerplanner.config import AdminConfig, ScheduleEntry, load_config
from powerplanner.errors import ConfigError, UserError, field_path
from powerplanner.live.prometheus import PrometheusClient, PrometheusError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetReading:
    """One source's answer: ``watts`` None means the source is inactive now; ``error`` says why, if broken."""

    source: str
    watts: float | None
    error: str | None = None


@dataclass(frozen=True)
class Budget:
    """The budget in force: the lowest active reading, and all readings for /metrics and logs."""

    watts: float
    source: str
    readings: tuple[BudgetReading, ...]

    @property
    def errors(self) -> tuple[BudgetReading, ...]:
        return tuple(r for r in self.readings if r.error)


class BudgetSource(Protocol):
    """One budget signal. ``now_utc`` is the injected clock's wall time (for schedules)."""

    name: str

    def read(self, now_utc: datetime) -> BudgetReading: ...


class StaticBudget:
    name = "config"

    def __init__(self, watts: float) -> None:
        self.watts = watts

    def read(self, now_utc: datetime) -> BudgetReading:
        return BudgetReading(self.name, self.watts)


class ConfigFileBudget:
    """``budget.watts`` re-read from the config file when it changes (mtime or size). A broken file keeps
    the last good value and reports the error: a typo must not lift the budget."""

    name = "config"

    def __init__(self, path: Path, initial_watts: float) -> None:
        self.path = path
        self.watts = initial_watts
        self._stamp = self._file_stamp()
        self._error: str | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def read(self, now_utc: datetime) -> BudgetReading:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.watts = load_config(self.path).budget.watts
                self._error = None
                log.info("config reloaded: budget.watts = %g W", self.watts)
            except ConfigError as exc:
                self._error = f"config reload failed, keeping {self.watts:g} W: {exc.lines[0]}"
                log.warning("%s", self._error)
        return BudgetReading(self.name, self.watts, self._error)


class AdminBudget:
    """The value an operator set through ``PUT /budget`` (None until set; ``DELETE /budget`` clears it)."""

    name = "admin"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watts: float | None = None

    def set(self, watts: float | None) -> None:
        with self._lock:
            self._watts = watts

    @property
    def watts(self) -> float | None:
        with self._lock:
            return self._watts

    def read(self, now_utc: datetime) -> BudgetReading:
        return BudgetReading(self.name, self.watts)


class PromQLBudget:
    """A scalar (or one-element vector) in watts from Prometheus, e.g. a facility or price signal."""

    name = "promql"

    def __init__(self, client: PrometheusClient, query: str) -> None:
        self._client = client
        self.query = query

    def read(self, now_utc: datetime) -> BudgetReading:
        try:
            samples = self._client.query(self.query)
        except PrometheusError as exc:
            return BudgetReading(self.name, None, f"budget.promql failed ({exc.kind}): {exc.message}")
        values = [s.value for s in samples if s.value is not None]
        if len(samples) != 1 or not values or values[0] <= 0:
            return BudgetReading(self.name, None, f"budget.promql returned {len(samples)} sample(s), need one "
                                 "positive number; ignoring it")
        return BudgetReading(self.name, values[0])


class ScheduleBudget:
    """Daily UTC schedule: the entry with the latest start at or before now applies; before the first
    start of the day, the last entry (from the previous day) still applies."""

    name = "schedule"

    def __init__(self, entries: Sequence[ScheduleEntry]) -> None:
        self.entries = sorted(((_minutes(e.start), e.watts) for e in entries), key=lambda x: x[0])

    def watts_at(self, now_utc: datetime) -> float | None:
        if not self.entries:
            return None
        minute = now_utc.hour * 60 + now_utc.minute
        active = [w for start, w in self.entries if start <= minute]
        return active[-1] if active else self.entries[-1][1]

    def read(self, now_utc: datetime) -> BudgetReading:
        return BudgetReading(self.name, self.watts_at(now_utc))


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class CompositeBudget:
    """All sources; the lowest active reading wins. The first source is the configured value."""

    def __init__(self, sources: Sequence[BudgetSource]) -> None:
        if not sources:
            raise ValueError("need at least one budget source")
        self.sources = tuple(sources)

    def current(self, now_utc: datetime) -> Budget:
        readings = tuple(src.read(now_utc) for src in self.sources)
        active = [r for r in readings if r.watts is not None and math.isfinite(r.watts) and r.watts > 0]
        if not active:  # unreachable with a config source, but never return "no budget"
            raise RuntimeError("no active budget source")
        best = min(active, key=lambda r: float(r.watts or 0.0))
        return Budget(watts=float(best.watts or 0.0), source=best.source, readings=readings)


# -- the admin endpoint ------------------------------------------------------------------------------


class BudgetBody(BaseModel):
    """Body of ``PUT /budget``."""

    model_config = ConfigDict(extra="forbid")
    watts: float = Field(gt=0, allow_inf_nan=False, description="New budget in watts (the lowest source wins).")


def read_token(cfg: AdminConfig) -> str | None:
    """The bearer token, from ``token_file`` (preferred) or ``token``."""
    if cfg.token_file:
        try:
            token = Path(cfg.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"budget.admin.token_file: cannot read {cfg.token_file!r} ({exc}); "
                            "point it at a readable file holding the token") from None
        if not token:
            raise UserError(f"budget.admin.token_file: {cfg.token_file!r} is empty; put the bearer token in it")
        return token
    return cfg.token


def parse_bind(bind: str, field_name: str) -> tuple[str, int]:
    """``host:port`` -> (host, port), with a clear error naming the config field."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) < 65536):
        raise UserError(f"{field_name}: {bind!r} is not host:port; use e.g. 127.0.0.1:8081")
    return host.strip("[]") or "0.0.0.0", int(port)


class AdminServer:
    """``PUT /budget`` {"watts": W}, ``DELETE /budget``, ``GET /budget``, ``GET /decision`` on a thread.
    Every request needs ``Authorization: Bearer <token>`` (compared in constant time)."""

    def __init__(
        self,
        bind: str,
        token: str,
        admin: AdminBudget,
        decision_json: Callable[[], dict[str, Any]],
        budget_json: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        if not token:
            raise UserError("budget.admin: a bearer token is required when the admin endpoint is enabled")
        host, port = parse_bind(bind, "budget.admin.bind")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("admin: " + format, *args)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization", "")
                given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
                if not hmac.compare_digest(given.encode(), token.encode()):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", "Bearer")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path == "/decision":
                    self._send(200, decision_json())
                elif self.path == "/budget":
                    self._send(200, budget_json() if budget_json else {"admin_watts": admin.watts})
                else:
                    self._send(404, {"error": "unknown path; use /budget or /decision"})

            def do_PUT(self) -> None:
                if not self._authorized():
                    return
                if self.path != "/budget":
                    self._send(404, {"error": "unknown path; PUT /budget"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, 65536))
                try:
                    body = BudgetBody.model_validate_json(raw)
                except ValidationError as exc:
                    problems = "; ".join(f"{field_path(e['loc'], top='body')}: {e['msg']}" for e in exc.errors())
                    self._send(400, {"error": f'{problems}; send {{"watts": <positive number>}}'})
                    return
                admin.set(body.watts)
                log.warning("admin: budget set to %g W", body.watts)
                server.changes += 1
                self._send(200, {"admin_watts": body.watts})

            def do_DELETE(self) -> None:
                if not self._authorized():
                    return
                if self.path != "/budget":
                    self._send(404, {"error": "unknown path; DELETE /budget"})
                    return
                admin.set(None)
                server.changes += 1
                self._send(200, {"admin_watts": None})

        self.changes = 0
        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise UserError(f"budget.admin.bind: cannot listen on {bind} ({exc.strerror}); choose a free address") \
                from None
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="powerplanner-admin", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> AdminServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

"""How a Prometheus query fails: the kinds of failure, named once, and the error that carries one.

The kind decides what the client does (transport errors and 5xx are retried, the others are not) and names the
fault in the planner's error counter (``powerplanner_errors_total{kind="prometheus_<kind>"}``, docs/operations.md).
"""

from __future__ import annotations

from enum import StrEnum


class PrometheusErrorKind(StrEnum):
    """Why a query failed. ``prometheus_<value>`` is the ``kind`` label of ``powerplanner_errors_total``."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    HTTP = "http"  # 5xx or 429
    GARBAGE = "garbage"  # an answer that is not Prometheus' API
    QUERY = "query"  # Prometheus refused the query
    AUTH = "auth"  # 401/403: the credentials or the tenant are wrong (docs/operations.md, "Managed Prometheus")
    CRASH = "crash"  # the metrics source itself raised (the run loop reports it so)


TRANSPORT = frozenset({PrometheusErrorKind.UNREACHABLE, PrometheusErrorKind.TIMEOUT})
RETRIED = TRANSPORT | {PrometheusErrorKind.HTTP}


class PrometheusError(Exception):
    """A query that failed, with the kind of failure; ``fix`` names the setting to change when it is known
    (credentials, TLS), else the start-up check says to check ``prometheus.url``."""

    def __init__(self, kind: PrometheusErrorKind, message: str, fix: str | None = None) -> None:
        super().__init__(message if fix is None else f"{message}; {fix}")
        self.kind = kind
        self.message = message
        self.fix = fix

    @property
    def line(self) -> str:
        """The message with its fix, for logs and the reading's ``source_error``."""
        return self.message if self.fix is None else f"{self.message}; {self.fix}"

    @property
    def transport(self) -> bool:
        """True when Prometheus itself is unavailable (further queries this tick would fail the same way)."""
        return self.kind in TRANSPORT

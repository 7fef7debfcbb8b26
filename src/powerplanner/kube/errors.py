"""One hierarchy for every failed Kubernetes call, whichever client made it.

The planner and ``verify`` use the official ``kubernetes`` client, the agent lightkube's credentials over its
``httpx2`` transport (agent/kubeapi.py says why). Each maps its transport's failures here once
(``live/kube_client.py`` for the official client, ``agent/kubeapi.py`` for the agent's), and the HTTP status of an
error answer is mapped by :func:`error_for_status` alone, so "404 means not found, 409 a conflict, 5xx and 429
worth a retry" is written once. Callers branch on the class (``except NotFound``) or on :attr:`KubernetesError.kind`, a
:class:`KubeErrorKind` whose values are the ``kubernetes_<kind>`` error labels of the planner's
``/metrics`` (docs/operations.md). This module imports nothing but the standard library: the agent loads it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class KubeErrorKind(StrEnum):
    """What went wrong, as the planner counts it (``powerplanner_errors_total{kind="kubernetes_<kind>"}``)."""

    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409: the object changed since it was read
    FORBIDDEN = "forbidden"  # 401, 403
    INVALID = "invalid"  # any other 4xx: the request itself is wrong
    SERVER = "server"  # 5xx, 429: the API server is failing or throttling
    TIMEOUT = "timeout"  # no answer in time
    UNREACHABLE = "unreachable"  # no answer: connection refused or reset, TLS failure
    BAD_RESPONSE = "bad_response"  # an answer that is not the JSON object asked for
    SHAPE = "shape"  # the object exists but does not hold what is needed (a DGD without a prefill service)
    NOT_LEADER = "not_leader"  # a write refused before it was sent: this planner does not hold the Lease


# Failures of the API server or of the path to it, not of the request: worth a retry, and an "endpoint" problem
# for the user (exit code 3) rather than a configuration one.
TRANSIENT_KINDS = frozenset({KubeErrorKind.SERVER, KubeErrorKind.TIMEOUT, KubeErrorKind.UNREACHABLE})


class KubernetesError(Exception):
    """A Kubernetes call that did not give what was asked. ``message`` is one line naming the call and why;
    ``status`` the HTTP status when the server answered with one. Raise a subclass: the class is the kind."""

    kind: ClassVar[KubeErrorKind]

    def __init__(self, message: str, *, status: int | None = None) -> None:
        if type(self) is KubernetesError:
            raise TypeError("raise a subclass of KubernetesError: the class says what went wrong")
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def transient(self) -> bool:
        """The server or the path to it failed, not the request: a retry may succeed."""
        return self.kind in TRANSIENT_KINDS


class ApiStatusError(KubernetesError):
    """The API server answered with an error status (``status`` is set)."""


class NotFound(ApiStatusError):
    """HTTP 404: the object does not exist (or no longer does)."""

    kind = KubeErrorKind.NOT_FOUND


class Conflict(ApiStatusError):
    """HTTP 409: the object changed since it was read (a stale ``resourceVersion``) or already exists."""

    kind = KubeErrorKind.CONFLICT


class Forbidden(ApiStatusError):
    """HTTP 401 or 403: the identity may not do this (RBAC) or is not known."""

    kind = KubeErrorKind.FORBIDDEN


class Invalid(ApiStatusError):
    """Any other 4xx: the request is wrong (a bad patch, a gone watch, an unknown resource version)."""

    kind = KubeErrorKind.INVALID


class ServerError(ApiStatusError):
    """HTTP 5xx or 429: the API server fails or throttles."""

    kind = KubeErrorKind.SERVER


class Unreachable(KubernetesError):
    """No answer: connection refused or reset, TLS failure, a name that does not resolve."""

    kind = KubeErrorKind.UNREACHABLE


class Timeout(Unreachable):
    """No answer in time (a kind of :class:`Unreachable`)."""

    kind = KubeErrorKind.TIMEOUT


class BadResponse(KubernetesError):
    """An answer that is not the JSON object asked for."""

    kind = KubeErrorKind.BAD_RESPONSE


class NotLeader(KubernetesError):
    """A write this planner did not send: it does not hold the leader Lease now (live/leader.py)."""

    kind = KubeErrorKind.NOT_LEADER


class ShapeError(KubernetesError):
    """The object exists but does not hold what is needed (a DGD without a prefill service, a ConfigMap
    without a budget); the message names what is missing and the fix."""

    kind = KubeErrorKind.SHAPE


def error_for_status(status: int, message: str) -> KubernetesError:
    """The error for an HTTP ``status`` the API server answered with: the one status-to-class table."""
    if status == 404:
        return NotFound(message, status=status)
    if status == 409:
        return Conflict(message, status=status)
    if status in (401, 403):
        return Forbidden(message, status=status)
    if status == 429 or status >= 500:
        return ServerError(message, status=status)
    if status >= 400:
        return Invalid(message, status=status)
    return BadResponse(message, status=status)  # not an error status: the caller asked for an answer it lacks

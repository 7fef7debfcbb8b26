"""The one mapping of the official client's failures to powerplanner.kube.errors, and the shared retry policy."""

from __future__ import annotations

import json

import pytest
import urllib3.exceptions
from kubernetes.client.rest import ApiException

from powerplanner.kube.errors import (
    Conflict,
    Forbidden,
    Invalid,
    KubernetesError,
    NotFound,
    ServerError,
    Timeout,
    Unreachable,
)
from powerplanner.live.kube_client import call_with_retries, error_from


def api_exception(status: int, reason: str = "", message: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    if message is not None:
        exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


@pytest.mark.parametrize(("status", "cls"), [
    (400, Invalid), (401, Forbidden), (403, Forbidden), (404, NotFound), (409, Conflict), (422, Invalid),
    (429, ServerError), (500, ServerError), (503, ServerError),
])
def test_each_http_status_maps_to_its_class(status: int, cls: type[KubernetesError]) -> None:
    err = error_from(api_exception(status, "Reason"), "get x")
    assert type(err) is cls and err.status == status and err.message == f"get x: HTTP {status} Reason"


def test_the_servers_own_explanation_is_kept_on_one_line() -> None:
    err = error_from(api_exception(403, "Forbidden", 'pods "p" is forbidden:\nUser "u" cannot patch'), "patch p")
    assert err.message == 'patch p: HTTP 403 Forbidden: pods "p" is forbidden: User "u" cannot patch'
    assert error_from(api_exception(500, "", "etcd is down"), "get x").message == "get x: HTTP 500 etcd is down"


def test_no_answer_is_unreachable_or_timeout() -> None:
    refused = urllib3.exceptions.MaxRetryError(
        None, "/api", urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection"))  # type: ignore[arg-type]
    err = error_from(refused, "list pods")
    assert type(err) is Unreachable and err.status is None
    assert err.message.startswith("list pods: the Kubernetes API cannot be reached (NewConnectionError: ")
    slow = urllib3.exceptions.MaxRetryError(None, "/api", urllib3.exceptions.ConnectTimeoutError("slow"))  # type: ignore[arg-type]
    assert type(error_from(slow, "x")) is Timeout
    assert type(error_from(urllib3.exceptions.ReadTimeoutError(None, "/api", "read timed out"), "x")) is Timeout  # type: ignore[arg-type]
    assert type(error_from(TimeoutError("t"), "x")) is Timeout
    assert type(error_from(ConnectionResetError("reset"), "x")) is Unreachable
    tls = error_from(ApiException(status=0, reason="SSLError\ncertificate verify failed"), "get x")  # rest.py's wrap
    assert type(tls) is Unreachable and "SSLError certificate verify failed" in tls.message


class Flaky:
    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_transient_failures_are_retried_with_backoff() -> None:
    sleeps: list[float] = []
    fn = Flaky(api_exception(503), urllib3.exceptions.ReadTimeoutError(None, "/", "slow"))  # type: ignore[arg-type]
    assert call_with_retries("x", fn, retries=3, backoff_s=0.5, sleep=sleeps.append) == "ok"
    assert fn.calls == 3 and sleeps == [0.5, 1.0]


def test_a_request_error_is_raised_at_once_and_the_last_transient_one_after_the_retries() -> None:
    fn = Flaky(api_exception(404))
    with pytest.raises(NotFound):
        call_with_retries("x", fn, retries=3, backoff_s=0.0, sleep=lambda _s: None)
    assert fn.calls == 1
    fn = Flaky(*(api_exception(500) for _ in range(5)))
    with pytest.raises(ServerError):
        call_with_retries("x", fn, retries=2, backoff_s=0.0, sleep=lambda _s: None)
    assert fn.calls == 3


def test_a_conflict_is_retried_only_when_asked() -> None:
    fn = Flaky(api_exception(409))
    with pytest.raises(Conflict):
        call_with_retries("x", fn, retries=2, backoff_s=0.0, sleep=lambda _s: None)
    fn = Flaky(api_exception(409))
    assert call_with_retries("x", fn, retries=2, backoff_s=0.0, sleep=lambda _s: None, retry_conflict=True) == "ok"


def test_a_bug_is_not_mistaken_for_a_cluster_failure() -> None:
    with pytest.raises(KeyError):
        call_with_retries("x", Flaky(KeyError("bug")), retries=2, backoff_s=0.0, sleep=lambda _s: None)

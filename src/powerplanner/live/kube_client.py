"""The official ``kubernetes`` client for the planner and ``verify``: building it from the config, and the one
place its failures become :mod:`powerplanner.kube.errors` (:func:`error_from`), with the retry policy the
planner's writers share (:func:`call_with_retries`).

What the client raises: :class:`ApiException` when the server answered with an error status (and with status
0 when TLS failed: kubernetes/client/rest.py), urllib3's errors when it did not answer (a ``MaxRetryError``
whose ``reason`` is the cause, since urllib3's own retries are off), and ``OSError`` below that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import kubernetes.client
import urllib3.exceptions
from kubernetes.client.rest import ApiException

from powerplanner.config import KubernetesConfig
from powerplanner.errors import UserError
from powerplanner.kube.errors import Conflict, KubernetesError, Timeout, Unreachable, error_for_status
from powerplanner.retry import retrying

log = logging.getLogger(__name__)

T = TypeVar("T")

# Everything the client raises for a failed call (anything else is a bug and propagates).
CLIENT_FAILURES: tuple[type[Exception], ...] = (ApiException, urllib3.exceptions.HTTPError, OSError)


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _server_message(exc: ApiException) -> str:
    """The reason phrase, and the server's own explanation (the Status object's ``message``) when it sent one."""
    reason = str(exc.reason or "").strip()
    message = ""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        message = str(json.loads(exc.body or "{}").get("message") or "")
    return _one_line(f"{reason}: {message}" if reason and message else reason or message)


def error_from(exc: Exception, what: str) -> KubernetesError:
    """The :class:`~powerplanner.kube.errors.KubernetesError` for a failure of the official client during
    ``what`` (a short description of the call: ``"get DynamoGraphDeployment default/llm (v1alpha1)"``)."""
    if isinstance(exc, ApiException) and int(exc.status or 0) > 0:
        status = int(exc.status or 0)
        return error_for_status(status, f"{what}: HTTP {status} {_server_message(exc)}".rstrip())
    if isinstance(exc, ApiException):  # status 0: the client's wrapping of a TLS failure
        return Unreachable(f"{what}: the Kubernetes API cannot be reached ({_one_line(str(exc.reason or ''))})")
    cause = getattr(exc, "reason", None)
    cause = cause if isinstance(cause, BaseException) else exc
    detail = f"{type(cause).__name__}: {_one_line(str(cause))}" if str(cause) else type(cause).__name__
    # urllib3's NewConnectionError (refused, no such host) subclasses its ConnectTimeoutError: not a timeout.
    timed_out = isinstance(cause, (urllib3.exceptions.TimeoutError, TimeoutError))
    if timed_out and not isinstance(cause, urllib3.exceptions.NewConnectionError):
        return Timeout(f"{what}: timed out waiting for the Kubernetes API ({detail})")
    return Unreachable(f"{what}: the Kubernetes API cannot be reached ({detail})")


def call_with_retries(what: str, fn: Callable[[], T], *, retries: int, backoff_s: float,
                      sleep: Callable[[float], None] = time.sleep, retry_conflict: bool = False) -> T:
    """``fn()``, retried ``retries`` times with exponential backoff when the failure is transient (5xx, 429,
    timeout, unreachable) and, with ``retry_conflict``, on 409 (:func:`powerplanner.retry.retrying`). Other
    failures raise at once; the last one raises when the retries run out."""

    def once() -> T:
        try:
            return fn()
        except CLIENT_FAILURES as exc:
            raise error_from(exc, what) from None

    def worth_a_retry(exc: BaseException) -> bool:
        return isinstance(exc, KubernetesError) and (exc.transient or (retry_conflict and isinstance(exc, Conflict)))

    def announce(exc: BaseException | None, _wait_s: float) -> None:
        log.warning("%s, retrying", exc.message if isinstance(exc, KubernetesError) else exc)

    policy = retrying(sleep=sleep, first_wait_s=backoff_s, attempts=retries + 1, retry_on=worth_a_retry,
                      before_sleep=announce)
    result: T = policy(once)
    return result


def build_api_client(cfg: KubernetesConfig) -> kubernetes.client.ApiClient:
    """An API client from ``kubernetes.kubeconfig``, else the in-cluster service account, else ~/.kube/config.
    urllib3's own retries are off: the callers retry themselves, with backoff (:func:`call_with_retries`)."""
    from kubernetes import config as kube_config

    configuration = kubernetes.client.Configuration()
    try:
        if cfg.kubeconfig:
            kube_config.load_kube_config(config_file=cfg.kubeconfig, client_configuration=configuration)
        else:
            try:
                kube_config.load_incluster_config(client_configuration=configuration)
            except kube_config.ConfigException:
                kube_config.load_kube_config(client_configuration=configuration)
    except Exception as exc:  # kubeconfig loading raises ConfigException, YAML, OS and key errors alike
        where = (f"kubeconfig {cfg.kubeconfig!r}" if cfg.kubeconfig
                 else "no in-cluster service account and no ~/.kube/config")
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"kubernetes.kubeconfig: cannot load Kubernetes credentials ({where}: {detail}); "
                        "set kubernetes.kubeconfig to a valid kubeconfig or run in-cluster") from None
    configuration.retries = 0
    return kubernetes.client.ApiClient(configuration)

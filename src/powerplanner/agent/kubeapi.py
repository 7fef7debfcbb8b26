"""The agent's Kubernetes access through lightkube: list and watch pods, and, at exit, read its own pod and the
DaemonSet that owns it (to tell an uninstall from a restart: docs/operations.md).

What lightkube gives (docs/internals.md, "Libraries instead of hand-written parts"): the kubeconfig model and
context selection, the in-cluster service account, and the credential flows: a bearer token, a token file
(re-read when the server answers 401, as client-go does, since bound tokens rotate), basic auth, and exec
credential plugins (``client.authentication.k8s.io`` ``v1beta1``/``v1alpha1``; ``v1`` is read as ``v1beta1``,
whose token answer it shares). Why lightkube and not the official ``kubernetes`` package: the agent runs on every
GPU node, and the official client loads every API model (idle agent 77 MB resident against 50 MB with lightkube,
measured the same way: docs/internals.md). The planner keeps the official client.

What stays here, and why: the TLS context, built in memory: lightkube (like the official client) writes inline
``*-data`` credentials to temporary files; here a CA is loaded from memory (``cadata``) and a client certificate
and key from an anonymous in-memory file (``memfd``), so a key never touches a filesystem. And the four requests
themselves over lightkube's ``httpx2`` transport: the pod watch needs a watch that ends at each resync window
(agent/pods.py relists then), which lightkube's self-restarting ``watch`` hides.

Failures are the shared hierarchy of :mod:`powerplanner.kube.errors`, mapped once in :func:`_mapped`: an error
status through its one status-to-class table, no answer as ``Unreachable``/``Timeout``, a credential plugin that
fails as ``Unreachable``, an answer that is not a JSON object as ``BadResponse``.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
from lightkube.config.client_adapter import user_auth
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from powerplanner.agent.kube_tls import tls_context
from powerplanner.errors import EndpointError
from powerplanner.input_files import read_yaml
from powerplanner.kube.errors import BadResponse, Timeout, Unreachable, error_for_status

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_EXEC_VERSIONS = ("client.authentication.k8s.io/v1alpha1", "client.authentication.k8s.io/v1beta1")


@dataclass(frozen=True)
class KubeEndpoint:
    """Where the API server is and how to authenticate to it: lightkube's selected context and the TLS context."""

    config: SingleConfig
    verify: ssl.SSLContext

    @property
    def server(self) -> str:
        return str(self.config.cluster.server).rstrip("/")

    def auth(self) -> httpx2.Auth | None:
        """A fresh credential flow (lightkube's): each client gets its own token cache."""
        return user_auth(self.config.user)


def _in_cluster(service_account: Path = SERVICE_ACCOUNT) -> KubeEndpoint | None:
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or not (service_account / "token").exists():
        return None
    try:
        config = KubeConfig.from_service_account(service_account).get()
    except (LightkubeConfigError, KeyError, OSError) as exc:
        raise EndpointError(f"in-cluster credentials: {exc}; check the pod's service account mount") from None
    assert config is not None  # from_service_account always has its one context
    return KubeEndpoint(config, tls_context(config, lambda fault: EndpointError(f"in-cluster credentials: {fault}")))


def _from_kubeconfig(path: Path) -> KubeEndpoint:
    def fail(problem: str) -> EndpointError:
        return EndpointError(f"{path}: {problem}; fix the kubeconfig or set kubernetes.kubeconfig to another file")

    raw = read_yaml(path, EndpointError, what="kubeconfig",
                    not_found="kubeconfig not found; fix the path or set kubernetes.kubeconfig to another file")
    if not isinstance(raw, dict):
        raise fail("the kubeconfig is not a mapping")
    try:
        config = KubeConfig.from_dict({"clusters": [], "contexts": [], "users": [], **raw}, fname=path).get()
    except LightkubeConfigError as exc:
        raise fail(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:  # a wrong shape (msgspec's errors are ValueErrors)
        raise fail(f"unreadable ({type(exc).__name__}: {exc})") from None
    if config is None:
        raise fail("no current-context")
    user = config.user
    if user is not None and user.auth_provider:
        raise fail("auth-provider credentials are not supported (kubectl dropped them too); use an exec plugin, "
                   "a token or a client certificate")
    if user is not None and user.exec is not None and user.exec.apiVersion not in _EXEC_VERSIONS:
        if user.exec.apiVersion != "client.authentication.k8s.io/v1":
            raise fail(f"exec apiVersion {user.exec.apiVersion!r} is not client.authentication.k8s.io/v1beta1")
        user.exec.apiVersion = _EXEC_VERSIONS[1]  # the token answer lightkube reads is the same in v1
    if user is not None and user.token_file:
        user.token_file = str(config.abs_file(user.token_file))  # relative to the kubeconfig, as kubectl reads it
    return KubeEndpoint(config, tls_context(config, fail))


def endpoint_from(kubeconfig: str | None) -> KubeEndpoint:
    """The configured kubeconfig; else in-cluster; else ``$KUBECONFIG`` or ``~/.kube/config``."""
    if kubeconfig:
        return _from_kubeconfig(Path(kubeconfig))
    endpoint = _in_cluster()
    if endpoint is not None:
        return endpoint
    default = Path(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config")
    if not default.exists():
        raise EndpointError(
            "no Kubernetes credentials: not in a pod with a service account and no kubeconfig; "
            "run the agent as the DaemonSet or set kubernetes.kubeconfig"
        )
    return _from_kubeconfig(default)


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """The one place the transport's and lightkube's failures become :mod:`powerplanner.kube.errors`."""
    try:
        yield
    except httpx2.TimeoutException as exc:
        raise Timeout(f"{what}: {type(exc).__name__}: {exc}") from None
    except httpx2.HTTPError as exc:  # connection refused or reset, TLS failure, a torn stream
        raise Unreachable(f"{what}: {type(exc).__name__}: {exc}") from None
    except LightkubeConfigError as exc:  # the exec credential plugin failed, a token file vanished
        raise Unreachable(f"{what}: credentials: {exc}") from None
    except OSError as exc:  # a token file cannot be read, a plugin cannot be started
        raise Unreachable(f"{what}: {exc}") from None
    except ValueError:
        raise BadResponse(f"{what}: the answer is not JSON") from None


class PodApi:
    """``GET /api/v1/pods`` as a list and as a watch, with a field selector; one pod and one DaemonSet by name."""

    def __init__(
        self, endpoint: KubeEndpoint, request_timeout_s: float = 10.0, transport: httpx2.BaseTransport | None = None
    ) -> None:
        self._timeout_s = request_timeout_s
        self._client = httpx2.Client(base_url=endpoint.server, auth=endpoint.auth(), verify=endpoint.verify,
                                     transport=transport, trust_env=False)

    def _check(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            response.read()
            try:
                message = str(json.loads(response.text).get("message", ""))
            except (ValueError, AttributeError):
                message = response.text[:200]
            raise error_for_status(response.status_code, f"HTTP {response.status_code}: {message}")

    def _get_json(self, path: str, timeout_s: float | None, params: dict[str, str] | None = None) -> dict[str, Any]:
        """One JSON object by path; typed errors only (:class:`~powerplanner.kube.errors.KubernetesError`)."""
        with _mapped(f"GET {path}"):
            response = self._client.get(path, params=params,
                                        timeout=self._timeout_s if timeout_s is None else timeout_s)
            self._check(response)
            body = response.json()
        if not isinstance(body, dict):
            raise BadResponse(f"GET {path}: the answer is not a JSON object")
        return body

    def get_pod(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any]:
        """``GET /api/v1/namespaces/{namespace}/pods/{name}`` (RBAC: get pods)."""
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
        return self._get_json(path, timeout_s)

    def get_daemonset(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any]:
        """``GET /apis/apps/v1/namespaces/{namespace}/daemonsets/{name}`` (RBAC: get apps daemonsets)."""
        path = f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/daemonsets/{quote(name, safe='')}"
        return self._get_json(path, timeout_s)

    def list_pods(self, field_selector: str) -> tuple[list[dict[str, Any]], str]:
        """The pods and the list's resourceVersion."""
        body = self._get_json("/api/v1/pods", None, {"fieldSelector": field_selector})
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    def watch_pods(self, field_selector: str, resource_version: str, timeout_s: float) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) until the server ends the stream or ``timeout_s`` of silence."""
        params = {"watch": "true", "fieldSelector": field_selector, "timeoutSeconds": str(max(1, int(timeout_s))),
                  "allowWatchBookmarks": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        timeout = httpx2.Timeout(self._timeout_s, read=timeout_s + self._timeout_s)
        with _mapped("watch /api/v1/pods"), \
                self._client.stream("GET", "/api/v1/pods", params=params, timeout=timeout) as response:
            self._check(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def close(self) -> None:
        self._client.close()

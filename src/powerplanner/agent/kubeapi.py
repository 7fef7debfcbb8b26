"""A small Kubernetes API client for the agent over ``httpx``: list and watch pods, and, at exit, read its own
pod and the DaemonSet that owns it (to tell an uninstall from a restart: docs/operations.md).

Why not the official ``kubernetes`` package here: importing it loads every API model (~37 MB resident),
which alone would double the footprint of an agent that runs on every GPU node and needs two calls. The
planner keeps the official client; the agent's tests drive the API with it (create, patch, delete pods)
against the same emulated server the agent watches.

Credentials: in a pod, the service account (token re-read on every request, since bound tokens rotate; the
cluster CA); else a kubeconfig (``kubernetes.kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``) with a
bearer token or a client certificate, inline (``*-data``) or as files. Exec and auth-provider plugins are not
supported (the agent runs in-cluster; a kubeconfig is for development and tests).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from powerplanner.errors import EndpointError
from powerplanner.input_files import read_yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeApiError(Exception):
    """A request to the API server did not give the object asked for (the subclasses say how)."""


class ApiError(KubeApiError):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class NotFound(ApiError):
    """HTTP 404: the object does not exist (or no longer does)."""


class ApiUnreachable(KubeApiError):
    """No answer: connection refused or reset, TLS failure, timeout."""


class BadResponse(KubeApiError):
    """An answer that is not the JSON object asked for."""


@dataclass(frozen=True)
class KubeEndpoint:
    """Where the API server is and how to authenticate to it."""

    server: str
    verify: ssl.SSLContext | bool = True
    token: str | None = None
    token_file: str | None = None
    cert: tuple[str, str] | None = None

    def headers(self) -> dict[str, str]:
        token = self.token
        if self.token_file:
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
        return {"Authorization": f"Bearer {token}"} if token else {}


def _in_cluster() -> KubeEndpoint | None:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    token = SERVICE_ACCOUNT / "token"
    if not host or not port or not token.exists():
        return None
    if ":" in host:
        host = f"[{host}]"
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    return KubeEndpoint(server=f"https://{host}:{port}", verify=context, token_file=str(token))


def _materialise(data: str, directory: Path, name: str) -> str:
    """Write inline (base64) credential data to a private file; ssl needs files for client certificates."""
    path = directory / name
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return str(path)


def _from_kubeconfig(path: Path) -> KubeEndpoint:
    def fail(problem: str) -> EndpointError:
        return EndpointError(f"{path}: {problem}; fix the kubeconfig or set kubernetes.kubeconfig to another file")

    config = read_yaml(path, EndpointError, what="kubeconfig",
                       not_found="kubeconfig not found; fix the path or set kubernetes.kubeconfig to another file")
    if not isinstance(config, dict):
        raise fail("the kubeconfig is not a mapping")
    base = path.parent

    def named(kind: str, name: str | None) -> dict[str, Any]:
        for item in config.get(f"{kind}s") or []:
            if item.get("name") == name:
                return dict(item.get(kind) or {})
        raise fail(f"no {kind} named {name!r}")

    context = named("context", config.get("current-context"))
    cluster = named("cluster", context.get("cluster"))
    user = named("user", context.get("user")) if context.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise fail("exec and auth-provider credentials are not supported by the agent (use a token or a certificate)")
    server = cluster.get("server")
    if not server:
        raise fail("the current context's cluster has no server")
    private = Path(tempfile.mkdtemp(prefix="powerplanner-kube-"))

    def file_of(key: str) -> str | None:
        if user.get(f"{key}-data") or cluster.get(f"{key}-data"):
            return _materialise(user.get(f"{key}-data") or cluster[f"{key}-data"], private, key)
        value = user.get(key) or cluster.get(key)
        return str(base / value) if value else None

    verify: ssl.SSLContext | bool = True
    if cluster.get("insecure-skip-tls-verify"):
        verify = False
    elif cluster.get("certificate-authority-data") or cluster.get("certificate-authority"):
        verify = ssl.create_default_context(cafile=file_of("certificate-authority"))
    cert_file, key_file = file_of("client-certificate"), file_of("client-key")
    if cert_file and key_file:
        if isinstance(verify, ssl.SSLContext):
            verify.load_cert_chain(cert_file, key_file)
        else:
            context_ssl = ssl.create_default_context()
            if verify is False:
                context_ssl.check_hostname = False
                context_ssl.verify_mode = ssl.CERT_NONE
            context_ssl.load_cert_chain(cert_file, key_file)
            verify = context_ssl
    token_file = user.get("tokenFile")
    return KubeEndpoint(server=str(server).rstrip("/"), verify=verify, token=user.get("token"),
                        token_file=str(base / token_file) if token_file else None)


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


class PodApi:
    """``GET /api/v1/pods`` as a list and as a watch, with a field selector; one pod and one DaemonSet by name."""

    def __init__(
        self, endpoint: KubeEndpoint, request_timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._endpoint = endpoint
        self._timeout_s = request_timeout_s
        self._client = httpx.Client(base_url=endpoint.server, verify=endpoint.verify, cert=endpoint.cert,
                                    transport=transport)

    def _check(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            try:
                message = str(json.loads(response.text).get("message", ""))
            except (ValueError, AttributeError):
                message = response.text[:200]
            if response.status_code == 404:
                raise NotFound(404, message)
            raise ApiError(response.status_code, message)

    def _get_object(self, path: str, timeout_s: float | None) -> dict[str, Any]:
        """One object by path; typed errors only (:class:`KubeApiError` subclasses), never an httpx error."""
        try:
            response = self._client.get(path, headers=self._endpoint.headers(),
                                        timeout=self._timeout_s if timeout_s is None else timeout_s)
            self._check(response)
            body = response.json()
        except httpx.HTTPError as exc:
            raise ApiUnreachable(f"GET {path}: {type(exc).__name__}: {exc}") from None
        except OSError as exc:  # the service account token cannot be read
            raise ApiUnreachable(f"GET {path}: {exc}") from None
        except ValueError:
            raise BadResponse(f"GET {path}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise BadResponse(f"GET {path}: the answer is not a JSON object")
        return body

    def get_pod(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any]:
        """``GET /api/v1/namespaces/{namespace}/pods/{name}`` (RBAC: get pods)."""
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
        return self._get_object(path, timeout_s)

    def get_daemonset(self, namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any]:
        """``GET /apis/apps/v1/namespaces/{namespace}/daemonsets/{name}`` (RBAC: get apps daemonsets)."""
        path = f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/daemonsets/{quote(name, safe='')}"
        return self._get_object(path, timeout_s)

    def list_pods(self, field_selector: str) -> tuple[list[dict[str, Any]], str]:
        """The pods and the list's resourceVersion."""
        response = self._client.get(
            "/api/v1/pods",
            params={"fieldSelector": field_selector},
            headers=self._endpoint.headers(),
            timeout=self._timeout_s,
        )
        self._check(response)
        body = response.json()
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    def watch_pods(self, field_selector: str, resource_version: str, timeout_s: float) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) until the server ends the stream or ``timeout_s`` of silence."""
        params = {"watch": "true", "fieldSelector": field_selector, "timeoutSeconds": str(max(1, int(timeout_s))),
                  "allowWatchBookmarks": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        timeout = httpx.Timeout(self._timeout_s, read=timeout_s + self._timeout_s)
        with self._client.stream("GET", "/api/v1/pods", params=params, headers=self._endpoint.headers(),
                                 timeout=timeout) as response:
            self._check(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def close(self) -> None:
        self._client.close()

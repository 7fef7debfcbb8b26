"""Read-only access to the Kubernetes API for the checks, through the official client.

Objects come back as plain dicts (``_preload_content=False``) so the pure rules in
:mod:`powerplanner.verify.workloads` work on exactly what the API sent. Every failure becomes a
:class:`ClusterError` that names the HTTP status, so a check can say "forbidden" rather than crash.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

DGD_GROUP = "nvidia.com"
DGD_PLURAL = "dynamographdeployments"
DGD_VERSIONS = ("v1alpha1", "v1beta1")
TIMEOUT_S = 5.0


class ClusterError(Exception):
    """A failed API call; ``status`` is the HTTP status (0 when the API could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def forbidden(self) -> bool:
        return self.status == 403


def _wrap(exc: Exception, what: str) -> ClusterError:
    if isinstance(exc, ApiException):
        reason = exc.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            reason = json.loads(exc.body or "{}").get("message") or reason
        return ClusterError(int(exc.status or 0), f"{what}: HTTP {exc.status} {reason}".strip())
    return ClusterError(0, f"{what}: the Kubernetes API cannot be reached ({type(exc).__name__}: {exc})")


class ClusterReader:
    """The handful of reads verify needs. ``api_client`` is injected (kubeconfig, in-cluster, or a test's)."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._client = api_client
        # Typed as Any: with _preload_content=False the client returns the raw urllib3 response, not the model
        # its annotations promise.
        self._core: Any = kubernetes.client.CoreV1Api(api_client)
        self._custom: Any = kubernetes.client.CustomObjectsApi(api_client)

    @property
    def host(self) -> str:
        return str(self._client.configuration.host)

    def server_version(self) -> str:
        # GET /version (the generated VersionApi asks for "/version/", which not every server routes).
        client: Any = self._client
        try:
            method, url, headers, body, post = client.param_serialize("GET", "/version", auth_settings=["BearerToken"])
            resp = client.call_api(method, url, header_params=headers, body=body, post_params=post,
                                   _request_timeout=TIMEOUT_S)
            data = resp.read()
        except Exception as exc:  # urllib3 and API errors alike
            raise _wrap(exc, "GET /version") from None
        if not 200 <= int(resp.status) < 300:
            raise ClusterError(int(resp.status), f"GET /version: HTTP {resp.status}")
        try:
            return str(json.loads(data).get("gitVersion", "unknown"))
        except (ValueError, AttributeError):
            return "unknown"

    def may(self, verb: str, group: str, resource: str, namespace: str | None, subresource: str = "",
            name: str = "") -> tuple[bool, str]:
        """SelfSubjectAccessReview: may the current identity do ``verb`` on ``resource`` (the object ``name``
        when given: rights the chart grants by resourceNames)? (allowed, reason)."""
        attributes = {"verb": verb, "group": group, "resource": resource, "subresource": subresource,
                      "namespace": namespace or ""}
        if name:
            attributes["name"] = name
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes}}
        api: Any = kubernetes.client.AuthorizationV1Api(self._client)
        try:
            resp = api.create_self_subject_access_review(body, _preload_content=False, _request_timeout=TIMEOUT_S)
        except Exception as exc:
            raise _wrap(exc, "create SelfSubjectAccessReview") from None
        status = json.loads(resp.data or b"{}").get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or status.get("evaluationError") or "")

    def get_dgd(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The DynamoGraphDeployment in whichever served version has it; None when no version has it."""
        last: ClusterError | None = None
        for version in DGD_VERSIONS:
            try:
                resp = self._custom.get_namespaced_custom_object(
                    DGD_GROUP, version, namespace, DGD_PLURAL, name, _preload_content=False,
                    _request_timeout=TIMEOUT_S,
                )
            except Exception as exc:
                err = _wrap(exc, f"get {DGD_PLURAL}.{DGD_GROUP}/{version} {namespace}/{name}")
                if err.status == 404:
                    continue
                last = err
                continue
            return dict(json.loads(resp.data))
        if last is not None:
            raise last
        return None

    def list_pods(self, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        """Pods of a namespace (all namespaces for None). The selector is a hint: callers filter again."""
        try:
            if namespace is None:
                resp = self._core.list_pod_for_all_namespaces(
                    label_selector=label_selector, _preload_content=False, _request_timeout=TIMEOUT_S
                )
            else:
                resp = self._core.list_namespaced_pod(
                    namespace, label_selector=label_selector, _preload_content=False, _request_timeout=TIMEOUT_S
                )
        except Exception as exc:
            raise _wrap(exc, f"list pods in {namespace or 'all namespaces'}") from None
        return list(json.loads(resp.data).get("items") or [])

    def list_nodes(self) -> list[dict[str, Any]]:
        try:
            resp = self._core.list_node(_preload_content=False, _request_timeout=TIMEOUT_S)
        except Exception as exc:
            raise _wrap(exc, "list nodes") from None
        return list(json.loads(resp.data).get("items") or [])

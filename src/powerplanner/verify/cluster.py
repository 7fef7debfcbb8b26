"""Read-only access to the Kubernetes API for the checks, through the official client.

Objects come back as plain dicts (``_preload_content=False``) so the pure rules in
:mod:`powerplanner.kube.dgd` and :mod:`powerplanner.verify.workloads` work on exactly what the API sent. Every
failure becomes a :class:`~powerplanner.kube.errors.KubernetesError` (the planner's own mapping,
live/kube_client.py) whose message names the call and the HTTP status, so a check can say "forbidden" rather
than crash.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes.client

from powerplanner.kube.dgd import DGD_GROUP, DGD_PLURAL, DGD_VERSIONS
from powerplanner.kube.errors import BadResponse, KubernetesError, NotFound, error_for_status
from powerplanner.live.kube_client import CLIENT_FAILURES, error_from

TIMEOUT_S = 5.0


def _json(data: bytes | str | None, what: str) -> dict[str, Any]:
    """The answer's JSON object, or :class:`~powerplanner.kube.errors.BadResponse`."""
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        raise BadResponse(f"{what}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise BadResponse(f"{what}: the answer is not a JSON object")
    return body


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
        except CLIENT_FAILURES as exc:
            raise error_from(exc, "GET /version") from None
        if not 200 <= int(resp.status) < 300:
            raise error_for_status(int(resp.status), f"GET /version: HTTP {resp.status}")
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
        except CLIENT_FAILURES as exc:
            raise error_from(exc, "create SelfSubjectAccessReview") from None
        status = _json(resp.data, "create SelfSubjectAccessReview").get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or status.get("evaluationError") or "")

    def get_dgd(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The DynamoGraphDeployment in whichever served version has it; None when no version has it."""
        last: KubernetesError | None = None
        for version in DGD_VERSIONS:
            what = f"get {DGD_PLURAL}.{DGD_GROUP}/{version} {namespace}/{name}"
            try:
                resp = self._custom.get_namespaced_custom_object(
                    DGD_GROUP, version, namespace, DGD_PLURAL, name, _preload_content=False,
                    _request_timeout=TIMEOUT_S,
                )
            except CLIENT_FAILURES as exc:
                err = error_from(exc, what)
                if not isinstance(err, NotFound):
                    last = err
                continue
            return _json(resp.data, what)
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
        except CLIENT_FAILURES as exc:
            raise error_from(exc, f"list pods in {namespace or 'all namespaces'}") from None
        return list(_json(resp.data, "list pods").get("items") or [])

    def list_nodes(self) -> list[dict[str, Any]]:
        try:
            resp = self._core.list_node(_preload_content=False, _request_timeout=TIMEOUT_S)
        except CLIENT_FAILURES as exc:
            raise error_from(exc, "list nodes") from None
        return list(_json(resp.data, "list nodes").get("items") or [])

"""The Kubernetes actuator: reads a DynamoGraphDeployment and its worker pods, scales roles and writes the
per-GPU power-limit annotation, with the official ``kubernetes`` client (sync).

The DGD is read by the pure rules of :mod:`powerplanner.kube.dgd` (shapes, roles, readiness), the same ones
``verify`` applies; this module adds the calls. What it relies on besides:

- DynamoGraphDeploymentScalingAdapter ``<dgd>-<service lowercased>`` with a scale subresource: when it
  exists, scaling goes through it, because the operator overwrites a direct DGD patch from the adapter.
- Worker pods carry ``nvidia.com/dynamo-graph-deployment-name`` and ``nvidia.com/dynamo-sub-component-type``
  (powerplanner.contract); the label selector is sent, and the pods are filtered client-side too (emulators
  and some proxies ignore selectors).

Writes are merge patches. A v1beta1 replica change rewrites the ``components`` list, so it carries the
``metadata.resourceVersion`` of a fresh read: a concurrent writer makes it fail with 409, and the actuator re-reads
and re-applies (no lost update). 5xx, 429 and timeouts are retried with backoff (live/kube_client.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import kubernetes.client

from powerplanner import contract
from powerplanner.config import KubernetesConfig
from powerplanner.errors import EndpointError, UserError
from powerplanner.kube import dgd as dgd_rules
from powerplanner.kube.dgd import ADAPTER_PLURAL, DGD_GROUP, DGD_PLURAL, DGD_VERSIONS
from powerplanner.kube.errors import BadResponse, Conflict, Forbidden, KubernetesError, NotFound
from powerplanner.live.cluster_view import ClusterState, PodInfo, RoleCluster
from powerplanner.live.kube_client import call_with_retries
from powerplanner.live.pod_watch import watch_pods
from powerplanner.model.roles import Role

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
ADAPTER_RECHECK_READS = 12  # a missing scaling adapter is looked for again every this many cluster reads

T = TypeVar("T")


def cap_annotation_value(cap_watts: float) -> str:
    """The annotation's positive integer watts, rounded down so the written cap never exceeds the plan."""
    return contract.format_power_annotation(cap_watts)


def pod_info(pod: Any) -> PodInfo:
    """A pod (the client's ``V1Pod``) as the loop sees it."""
    meta = pod.metadata
    ready = False
    status = pod.status
    if status is not None and status.conditions:
        ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions)
    annotations = meta.annotations or {}
    created = meta.creation_timestamp.isoformat() if meta.creation_timestamp is not None else ""
    return PodInfo(
        name=meta.name,
        ready=ready and (status is None or status.phase in (None, "Running")),
        terminating=meta.deletion_timestamp is not None,
        cap_watts=contract.power_annotation_watts(annotations.get(contract.POWER_LIMIT_ANNOTATION)),
        created=created,
        cap_revision=contract.parse_revision(annotations.get(contract.REVISION_ANNOTATION)),
    )


def cap_patch(value: str, annotations: Mapping[str, str] | None) -> dict[str, Any]:
    """The merge patch that writes cap ``value`` with the next revision after the pod's current one."""
    revision = contract.next_revision((annotations or {}).get(contract.REVISION_ANNOTATION))
    annotations_patch = {contract.POWER_LIMIT_ANNOTATION: value, contract.REVISION_ANNOTATION: revision}
    return {"metadata": {"annotations": annotations_patch}}


def _role_of(pod: Any) -> str | None:
    return (pod.metadata.labels or {}).get(contract.SUB_COMPONENT_LABEL)


@dataclass
class _Found:
    version: str | None = None
    adapters: dict[str, str | None] = field(default_factory=dict)  # service -> adapter version, None = absent


class KubernetesActuator:
    """:class:`~powerplanner.live.cluster_view.Actuator` over the Kubernetes API. The DGD's API version is
    discovered on first read."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        dgd_name: str,
        prefill_service: str | None = None,
        decode_service: str | None = None,
        retries: int = 3,
        backoff_s: float = 0.1,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.namespace = namespace
        self.dgd_name = dgd_name
        self._overrides = {Role.PREFILL: prefill_service, Role.DECODE: decode_service}
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._retries = retries
        self._backoff_s = backoff_s
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._found = _Found()
        self._reads = 0
        self._last: ClusterState | None = None
        # The cap last written per role, for pods that appear between cap ticks (see cap_new_pod). One lock
        # serialises every annotation write so a new pod can never get a stale, higher cap after a cut.
        self._cap_lock = threading.Lock()
        self._role_caps: dict[Role, str] = {}
        self._new_pods_capped: dict[str, str] = {}

    @classmethod
    def from_config(cls, cfg: KubernetesConfig, api_client: kubernetes.client.ApiClient) -> KubernetesActuator:
        return cls(api_client, cfg.namespace, cfg.dgd_name, cfg.prefill_service, cfg.decode_service)

    def _call(self, what: str, fn: Callable[[], T], retry_conflict: bool = True) -> T:
        return call_with_retries(what, fn, retries=self._retries, backoff_s=self._backoff_s, sleep=self._sleep,
                                 retry_conflict=retry_conflict)

    # -- reading ------------------------------------------------------------------------------------
    def _get_dgd(self) -> tuple[str, dict[str, Any]]:
        versions = [self._found.version] if self._found.version else list(DGD_VERSIONS)
        missing: list[str] = []
        for version in versions:
            try:
                obj = self._call(
                    f"get DynamoGraphDeployment {self.namespace}/{self.dgd_name} ({version})",
                    lambda v=version: self._custom.get_namespaced_custom_object(  # type: ignore[misc]
                        DGD_GROUP, v, self.namespace, DGD_PLURAL, self.dgd_name, _request_timeout=self._timeout_s
                    ),
                )
            except NotFound:
                missing.append(version)
                continue
            self._found.version = version
            if not isinstance(obj, dict):
                raise BadResponse(f"DynamoGraphDeployment {self.dgd_name!r} is not a JSON object")
            return version, obj
        raise NotFound(
            f"DynamoGraphDeployment {self.dgd_name!r} not found in namespace {self.namespace!r} "
            f"(tried {', '.join(missing)}); check kubernetes.dgd_name and kubernetes.namespace",
            status=404,
        )

    def _adapter(self, service: str, dgd_version: str) -> tuple[str | None, int | None]:
        """(API version, spec.replicas) of the service's scaling adapter, or (None, None) when there is none.
        A known adapter is read on every call (its replicas are the desired count the operator will copy into
        the DGD); absence is re-checked every ``ADAPTER_RECHECK_READS`` calls, in case one is created later."""
        cached = self._found.adapters.get(service, "unknown")
        if cached is None and self._reads % ADAPTER_RECHECK_READS:
            return None, None
        name = dgd_rules.adapter_name(self.dgd_name, service)
        versions = [cached] if cached not in (None, "unknown") else list(dict.fromkeys((dgd_version, "v1alpha1")))
        for version in versions:
            try:
                obj = self._call(
                    f"get scaling adapter {name}",
                    lambda v=version: self._custom.get_namespaced_custom_object(  # type: ignore[misc]
                        DGD_GROUP, v, self.namespace, ADAPTER_PLURAL, name, _request_timeout=self._timeout_s
                    ),
                )
            except NotFound:
                continue
            self._found.adapters[service] = version
            return version, dgd_rules.adapter_replicas(obj)
        self._found.adapters[service] = None
        return None, None

    def _list_pods(self) -> list[Any]:
        pods = self._call(
            f"list pods of {self.dgd_name}",
            lambda: self._core.list_namespaced_pod(
                self.namespace, label_selector=f"{contract.DGD_LABEL}={self.dgd_name}",
                _request_timeout=self._timeout_s,
            ),
        )
        return [p for p in pods.items
                if p.metadata is not None and (p.metadata.labels or {}).get(contract.DGD_LABEL) == self.dgd_name]

    def read_state(self) -> ClusterState:
        self._reads += 1
        version, dgd = self._get_dgd()
        roles_spec = dgd_rules.identify_roles(dgd, self._overrides)
        ready, detail = dgd_rules.dgd_ready(dgd)
        pods = self._list_pods()
        roles: dict[Role, RoleCluster] = {}
        for role, svc in roles_spec.items():
            infos = tuple(sorted((pod_info(p) for p in pods if _role_of(p) == role.value),
                                 key=lambda i: (i.created, i.name)))
            status_ready, status_available = dgd_rules.replica_status(dgd, svc.name)
            live_ready = sum(1 for p in infos if p.ready and not p.terminating)
            ready_n = status_ready if status_ready is not None else (
                status_available if status_available is not None else live_ready)
            draining = sum(1 for p in infos if p.terminating)
            if infos:  # the status may lag a scale-down: a terminating pod is draining, not also ready
                ready_n = min(ready_n, sum(1 for p in infos if not p.terminating))
            adapter_version, adapter_replicas = self._adapter(svc.name, version)
            # Desired replicas: the larger of the DGD's and the adapter's (the operator copies the adapter's
            # into the DGD a moment later); the larger is the worst case for provisioned power.
            desired = max(svc.replicas, adapter_replicas if adapter_replicas is not None else 0)
            roles[role] = RoleCluster(
                service=svc.name,
                spec_replicas=desired,
                ready_replicas=ready_n,
                starting_replicas=max(0, desired - ready_n),
                draining_replicas=draining,
                gpus_per_replica=svc.gpus_per_replica,
                pods=infos,
                adapter=dgd_rules.adapter_name(self.dgd_name, svc.name) if adapter_version else None,
            )
        meta = dgd.get("metadata") or {}
        state = ClusterState(
            dgd_name=self.dgd_name,
            namespace=self.namespace,
            api_version=version,
            ready=ready,
            ready_detail=detail,
            roles=roles,
            resource_version=meta.get("resourceVersion"),
            uid=meta.get("uid"),
        )
        self._last = state
        return state

    # -- writing ------------------------------------------------------------------------------------
    def scale(self, role: Role, replicas: int) -> None:
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        version, dgd = self._get_dgd()
        svc = dgd_rules.identify_roles(dgd, self._overrides)[role]
        adapter_version, _replicas = self._adapter(svc.name, version)
        if adapter_version is not None:
            name = dgd_rules.adapter_name(self.dgd_name, svc.name)
            self._call(
                f"scale {name} to {replicas}",
                lambda: self._custom.patch_namespaced_custom_object_scale(
                    DGD_GROUP, adapter_version, self.namespace, ADAPTER_PLURAL, name,
                    {"spec": {"replicas": replicas}}, _request_timeout=self._timeout_s, _content_type=MERGE_PATCH,
                ),
            )
            log.info("scaled %s (%s) to %d through adapter %s", role.value, svc.name, replicas, name)
            return
        self._patch_dgd_replicas(svc.name, replicas)
        log.info("scaled %s (%s) to %d by patching the DGD", role.value, svc.name, replicas)

    def _patch_dgd_replicas(self, service: str, replicas: int) -> None:
        what = f"patch DGD {self.dgd_name} {service}.replicas={replicas}"
        last: KubernetesError | None = None
        for _attempt in range(self._retries + 1):
            version, dgd = self._get_dgd()  # a fresh read on every attempt
            body = dgd_rules.replicas_patch(dgd, service, replicas)
            try:
                self._call(
                    what,
                    lambda v=version, b=body: self._custom.patch_namespaced_custom_object(  # type: ignore[misc]
                        DGD_GROUP, v, self.namespace, DGD_PLURAL, self.dgd_name, b,
                        _request_timeout=self._timeout_s, _content_type=MERGE_PATCH,
                    ),
                    retry_conflict=False,
                )
                return
            except Conflict as exc:
                last = exc
                log.info("%s: conflict, re-reading the DGD", what)
        assert last is not None
        raise last

    def set_cap(self, role: Role, cap_watts: float) -> int:
        value = cap_annotation_value(cap_watts)
        with self._cap_lock:
            self._role_caps[role] = value
            return self._annotate_role(role, value)

    def _annotate_role(self, role: Role, value: str) -> int:
        pods = [p for p in self._list_pods() if _role_of(p) == role.value]
        patched = 0
        failures: list[KubernetesError] = []
        for pod in pods:
            info = pod_info(pod)
            if (pod.metadata.annotations or {}).get(contract.POWER_LIMIT_ANNOTATION) == value:
                continue
            if info.terminating and info.cap_watts is not None and info.cap_watts <= int(value):
                continue  # a draining pod follows cuts (the plan counts it at the role's cap), never raises
            try:
                self._call(
                    f"annotate pod {info.name} {contract.POWER_LIMIT_ANNOTATION}={value}",
                    lambda name=info.name, body=cap_patch(value, pod.metadata.annotations):  # type: ignore[misc]
                    self._core.patch_namespaced_pod(
                        name, self.namespace, body, _request_timeout=self._timeout_s, _content_type=MERGE_PATCH,
                    ),
                )
                patched += 1
            except NotFound:
                continue  # the pod went away meanwhile
            except KubernetesError as exc:
                failures.append(exc)
        if failures:
            first = failures[0]
            raise type(first)(f"{len(failures)} pod(s) of {role.value} not annotated: {first.message}",
                              status=first.status)
        return patched

    def cap_new_pod(self, pod: Any) -> bool:
        """Give a worker pod that has no cap annotation its role's current cap, at once. Called for pods a
        watch reports, so a replica the operator just created does not start at its GPUs' default limit
        until the next cap tick. Never overwrites an existing annotation (the cap tick owns those), and caps a
        pod once (``_new_pods_capped``): a restarted watch re-lists it unannotated; a 2nd patch bumps its revision."""
        meta = getattr(pod, "metadata", None)
        if meta is None or meta.deletion_timestamp is not None:
            return False
        labels, annotations = meta.labels or {}, meta.annotations or {}
        if labels.get(contract.DGD_LABEL) != self.dgd_name or contract.POWER_LIMIT_ANNOTATION in annotations:
            return False
        try:
            role = Role(labels.get(contract.SUB_COMPONENT_LABEL, ""))
        except ValueError:
            return False
        with self._cap_lock:
            value = self._role_caps.get(role)
            key = meta.uid or meta.name
            if value is None or self._new_pods_capped.get(key) == value:
                return False
            try:
                self._call(
                    f"annotate new pod {meta.name} {contract.POWER_LIMIT_ANNOTATION}={value}",
                    lambda: self._core.patch_namespaced_pod(
                        meta.name, self.namespace, cap_patch(value, meta.annotations),
                        _request_timeout=self._timeout_s, _content_type=MERGE_PATCH,
                    ),
                )
            except NotFound:
                return False
            except KubernetesError as exc:
                log.warning("could not cap new pod %s: %s", meta.name, exc.message)
                return False
            if len(self._new_pods_capped) >= 4096:  # bounded: only recent pods are re-listed unannotated
                self._new_pods_capped.clear()
            self._new_pods_capped[key] = value
        log.info("new %s pod %s capped at %s W", role.value, meta.name, value)
        return True

    def forget_caps(self) -> None:
        """Drop the caps written in an earlier leadership term: another planner may have cut them since."""
        with self._cap_lock:
            self._role_caps.clear()

    def watch_pods(self, on_pod: Callable[[str, Any], None], stop: threading.Event, read_timeout_s: float = 5.0,
                   backoff_s: float = 1.0) -> None:
        """The DGD's pod events to ``on_pod`` until ``stop`` is set (live/pod_watch.py)."""
        watch_pods(self._core, self.namespace, self.dgd_name, on_pod, stop, read_timeout_s, backoff_s)

    def emit_event(self, reason: str, message: str, warning: bool = False) -> None:
        """A Kubernetes Event on the DGD; failures are logged, never raised (events are best effort)."""
        now = datetime.now(UTC)
        version = self._found.version or DGD_VERSIONS[0]
        body = {
            # Named like client-go's recorder (<object>.<unique hex>) rather than generateName: unique, readable.
            "metadata": {"name": f"{self.dgd_name}.{time.time_ns():x}", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": f"{DGD_GROUP}/{version}",
                "kind": "DynamoGraphDeployment",
                "name": self.dgd_name,
                "namespace": self.namespace,
                **({"uid": self._last.uid} if self._last and self._last.uid else {}),
            },
            "reason": reason, "message": message[:1024], "type": "Warning" if warning else "Normal",
            "source": {"component": "powerplanner"},
            "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1,
        }
        try:
            self._call("create event", lambda: self._core.create_namespaced_event(
                self.namespace, body, _request_timeout=self._timeout_s))  # type: ignore[arg-type]
        except KubernetesError as exc:
            log.warning("could not emit event %s: %s", reason, exc.message)


def check_reachable(actuator: KubernetesActuator) -> ClusterState:
    """Read the DGD once at start-up; unreachable API -> :class:`EndpointError`, missing/odd DGD -> UserError."""
    try:
        return actuator.read_state()
    except KubernetesError as exc:
        if exc.transient:
            raise EndpointError(f"kubernetes: {exc.message}; check the API server address and credentials") from None
        if isinstance(exc, Forbidden):
            raise UserError(f"kubernetes: {exc.message}; grant the planner get/list/patch on DGDs, scaling "
                            "adapters and pods (see the Helm chart's RBAC)") from None
        raise UserError(f"kubernetes: {exc.message}") from None

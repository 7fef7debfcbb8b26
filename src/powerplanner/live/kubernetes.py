"""The Kubernetes actuator: reads a DynamoGraphDeployment and its worker pods, scales roles and writes the
per-GPU power-limit annotation, with the official ``kubernetes`` client (sync).

Shapes it relies on (ai-dynamo/dynamo, ``deploy/cloud/operator/api/v1alpha1/dynamographdeployment_types.go``
and ``api/v1beta1``; DESIGN.md section 2):

- v1alpha1 ``spec.services.<Name>``: ``replicas``, ``subComponentType`` (``prefill``/``decode``),
  ``resources.limits.gpu``; status ``status.services.<Name>.{readyReplicas,availableReplicas}``.
- v1beta1 ``spec.components``: list of ``{name, type, replicas, podTemplate}``; status
  ``status.components`` (a map keyed by component name; a list of ``{name, ...}`` is accepted too).
- ``status.conditions[type=Ready]`` (``status.state == "successful"`` when there are no conditions).
- DynamoGraphDeploymentScalingAdapter ``<dgd>-<service lowercased>`` with a scale subresource: when it
  exists, scaling goes through it, because the operator overwrites a direct DGD patch from the adapter.
- Worker pods carry ``nvidia.com/dynamo-graph-deployment-name`` and ``nvidia.com/dynamo-sub-component-type``;
  the label selector is sent, and the pods are filtered client-side too (emulators and some proxies ignore
  selectors).

Writes are merge patches. A v1beta1 replica change rewrites the ``components`` list, so it carries the
``metadata.resourceVersion`` of a fresh read: a concurrent writer makes it fail with 409, and the actuator
re-reads and re-applies (no lost update). 5xx, 429 and timeouts are retried with backoff.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import kubernetes.client
import urllib3.exceptions
from kubernetes.client.rest import ApiException

from powerplanner import contract
from powerplanner.config import KubernetesConfig
from powerplanner.errors import EndpointError, UserError
from powerplanner.model.roles import ROLES, Role

log = logging.getLogger(__name__)

DGD_GROUP = "nvidia.com"
DGD_PLURAL = "dynamographdeployments"
ADAPTER_PLURAL = "dynamographdeploymentscalingadapters"
DGD_VERSIONS = ("v1alpha1", "v1beta1")
LABEL_DGD = contract.DGD_LABEL
LABEL_SUBTYPE = contract.SUB_COMPONENT_LABEL
CAP_ANNOTATION = contract.POWER_LIMIT_ANNOTATION
REVISION_ANNOTATION = contract.REVISION_ANNOTATION  # see contract.py: +1 with every cap the planner writes
FALLBACK_NAMES: Mapping[Role, tuple[str, ...]] = {
    Role.PREFILL: ("VllmPrefillWorker", "prefill", "TRTLLMPrefillWorker"),
    Role.DECODE: ("VllmDecodeWorker", "decode", "TRTLLMDecodeWorker"),
}
MERGE_PATCH = "application/merge-patch+json"
ADAPTER_RECHECK_READS = 12  # a missing scaling adapter is looked for again every this many cluster reads

T = TypeVar("T")


class KubernetesError(Exception):
    """A Kubernetes call that failed after retries. ``kind``: conflict, server, timeout, unreachable,
    not_found, forbidden, invalid, shape (the DGD does not look like a prefill/decode deployment)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class PodInfo:
    name: str
    ready: bool
    terminating: bool
    cap_watts: int | None  # the power-limit annotation, when it is a valid positive integer
    created: str = ""
    cap_revision: int | None = None  # REVISION_ANNOTATION, when a valid positive integer


@dataclass(frozen=True)
class RoleCluster:
    """One role of the DGD as the cluster shows it now."""

    service: str
    spec_replicas: int
    ready_replicas: int
    starting_replicas: int
    draining_replicas: int
    gpus_per_replica: int | None
    pods: tuple[PodInfo, ...] = ()
    adapter: str | None = None  # name of its scaling adapter, when one exists

    @property
    def annotated_cap_watts(self) -> float | None:
        """Highest cap annotation among the role's pods, draining ones included (the worst case for
        provisioned power); None when a live pod has none (it runs at its GPU's default limit until the
        next cap tick)."""
        live = [p for p in self.pods if not p.terminating]
        if not live or any(p.cap_watts is None for p in live):
            return None
        return float(max(p.cap_watts for p in self.pods if p.cap_watts is not None))


@dataclass(frozen=True)
class ClusterState:
    dgd_name: str
    namespace: str
    api_version: str
    ready: bool
    ready_detail: str
    roles: Mapping[Role, RoleCluster]
    resource_version: str | None = None
    uid: str | None = None

    def role(self, role: Role) -> RoleCluster:
        return self.roles[role]

    def pod_names(self) -> dict[Role, list[str]]:
        return {r: [p.name for p in self.roles[r].pods] for r in ROLES}


class Actuator(Protocol):
    """What the live loop needs from the cluster."""

    def read_state(self) -> ClusterState: ...

    def scale(self, role: Role, replicas: int) -> None: ...

    def set_cap(self, role: Role, cap_watts: float) -> int:
        """Write the per-GPU cap on every live pod of ``role``; returns how many pods were patched."""
        ...

    def emit_event(self, reason: str, message: str, warning: bool = False) -> None: ...


def cap_annotation_value(cap_watts: float) -> str:
    """The annotation's positive integer watts, rounded down so the written cap never exceeds the plan."""
    return contract.format_power_annotation(cap_watts)


def _int(raw: Any, default: int = 0) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


# -- reading the DGD (pure helpers) -----------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    role_hint: str | None  # subComponentType (v1alpha1) or type (v1beta1)
    replicas: int
    gpus_per_replica: int | None


def services_of(dgd: Mapping[str, Any]) -> list[ServiceSpec]:
    """The worker services of a DGD of either version."""
    spec = dgd.get("spec") or {}
    out: list[ServiceSpec] = []
    if isinstance(spec.get("components"), list):
        for comp in spec["components"]:
            if not isinstance(comp, Mapping) or "name" not in comp:
                continue
            gpus = 0
            containers = (((comp.get("podTemplate") or {}).get("spec") or {}).get("containers")) or []
            for container in containers:
                limits = ((container or {}).get("resources") or {}).get("limits") or {}
                gpus += _int(limits.get("nvidia.com/gpu"), 0)
            hint = comp.get("subComponentType") or comp.get("type")
            out.append(ServiceSpec(str(comp["name"]), hint and str(hint), _int(comp.get("replicas"), 1), gpus or None))
    elif isinstance(spec.get("services"), Mapping):
        for name, svc in spec["services"].items():
            svc = svc or {}
            gpus = _int(((svc.get("resources") or {}).get("limits") or {}).get("gpu"), 0)
            hint = svc.get("subComponentType")
            out.append(ServiceSpec(str(name), hint and str(hint), _int(svc.get("replicas"), 1), gpus or None))
    return out


def identify_roles(
    services: Sequence[ServiceSpec], overrides: Mapping[Role, str | None] | None = None
) -> dict[Role, ServiceSpec]:
    """Map prefill/decode to services: an explicit override, else exactly one service whose
    subComponentType/type is the role, else the fallback names. Raises ``KubernetesError('shape')``."""
    by_name = {s.name: s for s in services}
    found: dict[Role, ServiceSpec] = {}
    for role in ROLES:
        wanted = (overrides or {}).get(role)
        if wanted:
            if wanted not in by_name:
                raise KubernetesError("shape", f"service {wanted!r} (kubernetes.{role.value}_service) is not in "
                                      f"the DGD; it has: {', '.join(sorted(by_name))}")
            found[role] = by_name[wanted]
            continue
        typed = [s for s in services if s.role_hint == role.value]
        if len(typed) == 1:
            found[role] = typed[0]
            continue
        if len(typed) > 1:
            raise KubernetesError("shape", f"{len(typed)} services have subComponentType {role.value}; set "
                                  f"kubernetes.{role.value}_service to the one to manage")
        named = [by_name[n] for n in FALLBACK_NAMES[role] if n in by_name]
        if not named:
            raise KubernetesError("shape", f"no {role.value} service in the DGD (no subComponentType {role.value}, "
                                  f"none of {', '.join(FALLBACK_NAMES[role])}); set kubernetes.{role.value}_service")
        found[role] = named[0]
    return found


def dgd_ready(dgd: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the operator reports the DGD Ready, and why not."""
    status = dgd.get("status") or {}
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            ok = str(cond.get("status")) == "True"
            why = f"Ready={cond.get('status')} ({cond.get('reason') or ''}: {cond.get('message') or ''})"
            return ok, "Ready" if ok else why
    state = status.get("state")
    if state == "successful":
        return True, "state=successful"
    return False, f"state={state!r}, no Ready condition"


def replica_status(dgd: Mapping[str, Any], service: str) -> tuple[int | None, int | None]:
    """(readyReplicas, availableReplicas) of a service from the DGD status, None when absent."""
    status = dgd.get("status") or {}
    entry: Any = None
    for key in ("services", "components"):
        block = status.get(key)
        if isinstance(block, Mapping):
            entry = block.get(service)
        elif isinstance(block, list):
            entry = next((c for c in block if isinstance(c, Mapping) and c.get("name") == service), None)
        if entry is not None:
            break
    if not isinstance(entry, Mapping):
        return None, None
    ready = entry.get("readyReplicas")
    available = entry.get("availableReplicas")
    return (None if ready is None else _int(ready)), (None if available is None else _int(available))


def pod_info(pod: Any) -> PodInfo:
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
        cap_watts=contract.power_annotation_watts(annotations.get(CAP_ANNOTATION)),
        created=created,
        cap_revision=contract.parse_revision(annotations.get(REVISION_ANNOTATION)),
    )


def cap_patch(value: str, annotations: Mapping[str, str] | None) -> dict[str, Any]:
    """The merge patch that writes cap ``value`` with the next revision after the pod's current one."""
    revision = contract.next_revision((annotations or {}).get(REVISION_ANNOTATION))
    return {"metadata": {"annotations": {CAP_ANNOTATION: value, REVISION_ANNOTATION: revision}}}


# -- the actuator -----------------------------------------------------------------------------------


@dataclass
class _Found:
    version: str | None = None
    adapters: dict[str, str | None] = field(default_factory=dict)  # service -> adapter version, None = absent


class KubernetesActuator:
    """:class:`Actuator` over the Kubernetes API. The DGD's API version is discovered on first read."""

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

    @classmethod
    def from_config(cls, cfg: KubernetesConfig, api_client: kubernetes.client.ApiClient) -> KubernetesActuator:
        return cls(api_client, cfg.namespace, cfg.dgd_name, cfg.prefill_service, cfg.decode_service)

    # -- calls with retries -------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T], retry_conflict: bool = True) -> T:
        last: KubernetesError | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(self._backoff_s * (2 ** (attempt - 1)))
            try:
                return fn()
            except ApiException as exc:
                status = int(exc.status or 0)
                if status == 409:
                    last = KubernetesError("conflict", f"{what}: conflict (409)")
                    if retry_conflict:
                        log.info("%s: conflict, retrying with a fresh read", what)
                        continue
                    raise last from None
                if status >= 500 or status == 429:
                    last = KubernetesError("server", f"{what}: API server answered {status} {exc.reason}")
                    log.warning("%s: HTTP %s, retrying", what, status)
                    continue
                kind = {404: "not_found", 403: "forbidden", 401: "forbidden"}.get(status, "invalid")
                raise KubernetesError(kind, f"{what}: HTTP {status} {exc.reason}") from None
            except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
                last = KubernetesError("timeout", f"{what}: timed out ({type(exc).__name__})")
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                reason = getattr(exc, "reason", None)
                kind = "timeout" if isinstance(reason, urllib3.exceptions.TimeoutError) else "unreachable"
                last = KubernetesError(kind, f"{what}: {kind} ({type(reason or exc).__name__})")
            log.warning("%s, retrying", last.message if last else what)
        assert last is not None
        raise last

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
            except KubernetesError as exc:
                if exc.kind == "not_found":
                    missing.append(version)
                    continue
                raise
            self._found.version = version
            if not isinstance(obj, dict):
                raise KubernetesError("shape", f"DynamoGraphDeployment {self.dgd_name!r} is not a JSON object")
            return version, obj
        raise KubernetesError(
            "not_found",
            f"DynamoGraphDeployment {self.dgd_name!r} not found in namespace {self.namespace!r} "
            f"(tried {', '.join(missing)}); check kubernetes.dgd_name and kubernetes.namespace",
        )

    def _adapter(self, service: str, dgd_version: str) -> tuple[str | None, int | None]:
        """(API version, spec.replicas) of the service's scaling adapter, or (None, None) when there is none.
        A known adapter is read on every call (its replicas are the desired count the operator will copy into
        the DGD); absence is re-checked every ``ADAPTER_RECHECK_READS`` calls, in case one is created later."""
        cached = self._found.adapters.get(service, "unknown")
        if cached is None and self._reads % ADAPTER_RECHECK_READS:
            return None, None
        name = f"{self.dgd_name}-{service.lower()}"
        versions = [cached] if cached not in (None, "unknown") else list(dict.fromkeys((dgd_version, "v1alpha1")))
        for version in versions:
            try:
                obj = self._call(
                    f"get scaling adapter {name}",
                    lambda v=version: self._custom.get_namespaced_custom_object(  # type: ignore[misc]
                        DGD_GROUP, v, self.namespace, ADAPTER_PLURAL, name, _request_timeout=self._timeout_s
                    ),
                )
            except KubernetesError as exc:
                if exc.kind == "not_found":
                    continue
                raise
            self._found.adapters[service] = version
            spec = obj.get("spec") if isinstance(obj, dict) else None
            replicas = spec.get("replicas") if isinstance(spec, dict) else None
            return version, (None if replicas is None else _int(replicas))
        self._found.adapters[service] = None
        return None, None

    def _list_pods(self) -> list[Any]:
        pods = self._call(
            f"list pods of {self.dgd_name}",
            lambda: self._core.list_namespaced_pod(
                self.namespace, label_selector=f"{LABEL_DGD}={self.dgd_name}", _request_timeout=self._timeout_s
            ),
        )
        return [p for p in pods.items
                if p.metadata is not None and (p.metadata.labels or {}).get(LABEL_DGD) == self.dgd_name]

    def read_state(self) -> ClusterState:
        self._reads += 1
        version, dgd = self._get_dgd()
        roles_spec = identify_roles(services_of(dgd), self._overrides)
        ready, detail = dgd_ready(dgd)
        pods = self._list_pods()
        roles: dict[Role, RoleCluster] = {}
        for role, svc in roles_spec.items():
            infos = tuple(
                sorted(
                    (pod_info(p) for p in pods if (p.metadata.labels or {}).get(LABEL_SUBTYPE) == role.value),
                    key=lambda i: (i.created, i.name),
                )
            )
            status_ready, status_available = replica_status(dgd, svc.name)
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
                adapter=f"{self.dgd_name}-{svc.name.lower()}" if adapter_version else None,
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
        svc = identify_roles(services_of(dgd), self._overrides)[role]
        adapter_version, _replicas = self._adapter(svc.name, version)
        if adapter_version is not None:
            name = f"{self.dgd_name}-{svc.name.lower()}"
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
            spec = dgd.get("spec") or {}
            body: dict[str, Any]
            if isinstance(spec.get("components"), list):
                comps = copy.deepcopy(spec["components"])
                for comp in comps:
                    if isinstance(comp, dict) and comp.get("name") == service:
                        comp["replicas"] = replicas
                rv = (dgd.get("metadata") or {}).get("resourceVersion")
                body = {"metadata": {"resourceVersion": rv}, "spec": {"components": comps}}
            else:
                body = {"spec": {"services": {service: {"replicas": replicas}}}}
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
            except KubernetesError as exc:
                if exc.kind != "conflict":
                    raise
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
        pods = [p for p in self._list_pods() if (p.metadata.labels or {}).get(LABEL_SUBTYPE) == role.value]
        patched = 0
        failures: list[KubernetesError] = []
        for pod in pods:
            info = pod_info(pod)
            if (pod.metadata.annotations or {}).get(CAP_ANNOTATION) == value:
                continue
            if info.terminating and info.cap_watts is not None and info.cap_watts <= int(value):
                continue  # a draining pod follows cuts (the plan counts it at the role's cap), never raises
            try:
                self._call(
                    f"annotate pod {info.name} {CAP_ANNOTATION}={value}",
                    lambda name=info.name, body=cap_patch(value, pod.metadata.annotations):  # type: ignore[misc]
                    self._core.patch_namespaced_pod(
                        name, self.namespace, body, _request_timeout=self._timeout_s, _content_type=MERGE_PATCH,
                    ),
                )
                patched += 1
            except KubernetesError as exc:
                if exc.kind == "not_found":
                    continue  # the pod went away meanwhile
                failures.append(exc)
        if failures:
            raise KubernetesError(failures[0].kind, f"{len(failures)} pod(s) of {role.value} not annotated: "
                                  f"{failures[0].message}")
        return patched

    def cap_new_pod(self, pod: Any) -> bool:
        """Give a worker pod that has no cap annotation its role's current cap, at once. Called for pods a
        watch reports, so a replica the operator just created does not start at its GPUs' default limit
        until the next cap tick. Never overwrites an existing annotation (the cap tick owns those)."""
        meta = getattr(pod, "metadata", None)
        if meta is None or meta.deletion_timestamp is not None:
            return False
        labels = meta.labels or {}
        if labels.get(LABEL_DGD) != self.dgd_name or CAP_ANNOTATION in (meta.annotations or {}):
            return False
        try:
            role = Role(labels.get(LABEL_SUBTYPE, ""))
        except ValueError:
            return False
        with self._cap_lock:
            value = self._role_caps.get(role)
            if value is None:
                return False
            try:
                self._call(
                    f"annotate new pod {meta.name} {CAP_ANNOTATION}={value}",
                    lambda: self._core.patch_namespaced_pod(
                        meta.name, self.namespace, cap_patch(value, meta.annotations),
                        _request_timeout=self._timeout_s, _content_type=MERGE_PATCH,
                    ),
                )
            except KubernetesError as exc:
                if exc.kind != "not_found":
                    log.warning("could not cap new pod %s: %s", meta.name, exc.message)
                return False
        log.info("new %s pod %s capped at %s W", role.value, meta.name, value)
        return True

    def watch_pods(self, on_pod: Callable[[str, Any], None], stop: threading.Event, read_timeout_s: float = 5.0,
                   backoff_s: float = 1.0) -> None:
        """Stream the DGD's pod events to ``on_pod(type, pod)`` until ``stop`` is set; reconnects after errors
        and after ``read_timeout_s`` without events (so ``stop`` is noticed)."""
        from kubernetes import watch

        while not stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._core.list_namespaced_pod, self.namespace, label_selector=f"{LABEL_DGD}={self.dgd_name}",
                    timeout_seconds=60, _request_timeout=read_timeout_s,
                ):
                    if stop.is_set():
                        break
                    if isinstance(event, dict) and event.get("type") in ("ADDED", "MODIFIED"):
                        on_pod(str(event["type"]), event.get("object"))
            except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
                continue  # quiet stream or server closed it: reconnect
            except Exception as exc:  # the watch is an optimisation; the cap tick still covers every pod
                log.warning("pod watch failed, retrying in %g s: %s", backoff_s, exc)
                stop.wait(backoff_s)
            finally:
                stream.stop()

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
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "powerplanner"},
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
        }
        try:
            self._call("create event", lambda: self._core.create_namespaced_event(
                self.namespace, body, _request_timeout=self._timeout_s))  # type: ignore[arg-type]
        except KubernetesError as exc:
            log.warning("could not emit event %s: %s", reason, exc.message)


def build_api_client(cfg: KubernetesConfig) -> kubernetes.client.ApiClient:
    """An API client from ``kubernetes.kubeconfig``, else the in-cluster service account, else ~/.kube/config.
    urllib3's own retries are off: the actuator retries itself, with backoff."""
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


def check_reachable(actuator: KubernetesActuator) -> ClusterState:
    """Read the DGD once at start-up; unreachable API -> :class:`EndpointError`, missing/odd DGD -> UserError."""
    try:
        return actuator.read_state()
    except KubernetesError as exc:
        if exc.kind in ("unreachable", "timeout", "server"):
            raise EndpointError(f"kubernetes: {exc.message}; check the API server address and credentials") from None
        if exc.kind == "forbidden":
            raise UserError(f"kubernetes: {exc.message}; grant the planner get/list/patch on DGDs, scaling "
                            "adapters and pods (see the Helm chart's RBAC)") from None
        raise UserError(f"kubernetes: {exc.message}") from None

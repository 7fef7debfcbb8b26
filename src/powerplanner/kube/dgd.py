"""Reading a DynamoGraphDeployment (DGD): its worker services, which one is prefill and which decode, whether it
is Ready, its replica status. Pure: plain mappings in, as the API returns them (no client objects, no I/O),
plain values out. The planner (live/actuator.py) and ``verify`` (verify/checks.py) both read a DGD through this
module, so ``verify`` passes a DGD exactly when the planner can manage it. docs/install.md ("Which services the
planner manages") says the same for users.

Shapes (ai-dynamo/dynamo, ``deploy/cloud/operator/api/v1alpha1`` and ``api/v1beta1``):

- v1alpha1 ``spec.services.<Name>``: ``replicas``, ``subComponentType`` (``prefill``/``decode``),
  ``resources.limits.gpu``; status ``status.services.<Name>.{readyReplicas,availableReplicas}``.
- v1beta1 ``spec.components``: a list of ``{name, type, replicas, podTemplate}`` (GPUs: the sum of the
  containers' ``nvidia.com/gpu`` limits); status ``status.components``, a map keyed by component name (a list
  of ``{name, ...}`` is accepted too). A component's ``subComponentType``, when it has one, wins over ``type``.

Which service has a role, per role (the first rule that applies):

1. ``kubernetes.<role>_service`` names it: that service, whatever its type; one the DGD lacks is an error.
2. Exactly one service typed with the role. Two or more is an error: one must be chosen in the config.
3. No service typed with the role: the fallback names (``FALLBACK_NAMES``), among the services not typed
   prefill or decode; exactly one must be there. A typed service wins over a fallback name, so a typed ``P``
   beside an untyped ``prefill`` means ``P`` (the untyped one is not a second prefill service).

One service cannot be both roles. Ready: the ``Ready`` condition when there is one (``status: "True"``), else
``status.state == "successful"``, the operator's spelling (its CRD allows only ``initializing``, ``pending``,
``successful``, ``failed``); any other value, ``Successful`` included, is not Ready. Not Ready is the safe
side: the planner then only cuts power.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from powerplanner.kube.errors import ShapeError
from powerplanner.model.roles import ROLES, Role

DGD_GROUP = "nvidia.com"
DGD_PLURAL = "dynamographdeployments"
ADAPTER_PLURAL = "dynamographdeploymentscalingadapters"
DGD_VERSIONS = ("v1alpha1", "v1beta1")
READY_STATE = "successful"
FALLBACK_NAMES: Mapping[Role, tuple[str, ...]] = {
    Role.PREFILL: ("VllmPrefillWorker", "prefill", "TRTLLMPrefillWorker"),
    Role.DECODE: ("VllmDecodeWorker", "decode", "TRTLLMDecodeWorker"),
}
_ROLE_VALUES = frozenset(r.value for r in ROLES)


@dataclass(frozen=True)
class ServiceSpec:
    """One service (v1alpha1) or component (v1beta1) of the DGD's spec."""

    name: str
    role_hint: str | None  # subComponentType, else type (v1beta1)
    replicas: int
    gpus_per_replica: int | None  # None when the spec names no GPU


@dataclass(frozen=True)
class DgdRoles:
    """The service of each role that could be identified, and one line per problem (empty when both are)."""

    services: Mapping[Role, ServiceSpec]
    problems: tuple[str, ...]

    def name(self, role: Role) -> str | None:
        svc = self.services.get(role)
        return None if svc is None else svc.name


def _map(raw: Any) -> Mapping[str, Any]:
    return raw if isinstance(raw, Mapping) else {}


def _int(raw: Any, default: int = 0) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


def _hint(raw: Any) -> str | None:
    return str(raw) if raw else None


def _components(dgd: Mapping[str, Any]) -> list[Any] | None:
    """The v1beta1 components list, or None for a v1alpha1 DGD."""
    components = _map(dgd.get("spec")).get("components")
    return components if isinstance(components, list) else None


def type_field(dgd: Mapping[str, Any]) -> str:
    """The spec field that marks a worker's role in this DGD's version."""
    return "type" if _components(dgd) is not None else "subComponentType"


def services_of(dgd: Mapping[str, Any]) -> list[ServiceSpec]:
    """The services of a DGD of either version (frontends included: roles are picked by :func:`read_roles`)."""
    components = _components(dgd)
    out: list[ServiceSpec] = []
    if components is not None:
        for comp in components:
            if not isinstance(comp, Mapping) or "name" not in comp:
                continue
            gpus = 0
            containers = _map(_map(comp.get("podTemplate")).get("spec")).get("containers")
            for container in containers if isinstance(containers, list) else []:
                gpus += _int(_map(_map(_map(container).get("resources")).get("limits")).get("nvidia.com/gpu"))
            hint = _hint(comp.get("subComponentType") or comp.get("type"))
            out.append(ServiceSpec(str(comp["name"]), hint, _int(comp.get("replicas"), 1), gpus or None))
        return out
    for name, raw in _map(_map(dgd.get("spec")).get("services")).items():
        svc = _map(raw)
        gpus = _int(_map(_map(svc.get("resources")).get("limits")).get("gpu"))
        out.append(ServiceSpec(str(name), _hint(svc.get("subComponentType")), _int(svc.get("replicas"), 1),
                               gpus or None))
    return out


def _names(services: Sequence[ServiceSpec]) -> str:
    return ", ".join(sorted(s.name for s in services)) or "no services"


def _pick(role: Role, services: Sequence[ServiceSpec], override: str | None,
          field: str) -> tuple[ServiceSpec | None, str | None]:
    """The service of ``role`` (rules 1 to 3 of the module docstring), or None and the problem."""
    by_name = {s.name: s for s in services}
    setting = f"kubernetes.{role.value}_service"
    if override:
        if override in by_name:
            return by_name[override], None
        return None, f"service {override!r} ({setting}) is not in the DGD; it has: {_names(services)}"
    typed = [s for s in services if s.role_hint == role.value]
    if len(typed) == 1:
        return typed[0], None
    if typed:
        return None, (f"{len(typed)} {role.value} services ({_names(typed)}): each has {field} {role.value}; set "
                      f"{setting} to the one to manage")
    named = [by_name[n] for n in FALLBACK_NAMES[role] if n in by_name and by_name[n].role_hint not in _ROLE_VALUES]
    if len(named) == 1:
        return named[0], None
    if named:
        return None, (f"{len(named)} {role.value} services by name ({_names(named)}) and none has {field} "
                      f"{role.value}; mark the one to manage with {field}: {role.value} or set {setting}")
    return None, (f"no {role.value} service in the DGD (no {field} {role.value}, none of "
                  f"{', '.join(FALLBACK_NAMES[role])}); mark the worker with {field}: {role.value} or set {setting}")


def read_roles(dgd: Mapping[str, Any], overrides: Mapping[Role, str | None] | None = None) -> DgdRoles:
    """The prefill and decode services of ``dgd``; ``overrides``: ``kubernetes.<role>_service`` from the config."""
    services = services_of(dgd)
    field = type_field(dgd)
    found: dict[Role, ServiceSpec] = {}
    problems: list[str] = []
    for role in ROLES:
        svc, problem = _pick(role, services, (overrides or {}).get(role), field)
        if svc is not None:
            found[role] = svc
        if problem is not None:
            problems.append(problem)
    prefill, decode = found.get(Role.PREFILL), found.get(Role.DECODE)
    if prefill is not None and decode is not None and prefill.name == decode.name:
        problems.append(f"service {prefill.name!r} is both the prefill and the decode service; set "
                        "kubernetes.prefill_service and kubernetes.decode_service to two services")
        found = {}
    return DgdRoles(found, tuple(problems))


def identify_roles(dgd: Mapping[str, Any],
                   overrides: Mapping[Role, str | None] | None = None) -> dict[Role, ServiceSpec]:
    """Both roles' services, or :class:`~powerplanner.kube.errors.ShapeError` naming every problem."""
    roles = read_roles(dgd, overrides)
    if roles.problems:
        raise ShapeError("; ".join(roles.problems))
    return dict(roles.services)


def dgd_ready(dgd: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the operator reports the DGD Ready, and why not (see the module docstring)."""
    status = _map(dgd.get("status"))
    conditions = status.get("conditions")
    for cond in conditions if isinstance(conditions, list) else []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            ok = str(cond.get("status")) == "True"
            why = f"Ready={cond.get('status')} ({cond.get('reason') or ''}: {cond.get('message') or ''})"
            return ok, "Ready" if ok else why
    state = status.get("state")
    if state == READY_STATE:
        return True, f"state={READY_STATE}"
    return False, f"state={state!r}, no Ready condition"


def replica_status(dgd: Mapping[str, Any], service: str) -> tuple[int | None, int | None]:
    """(readyReplicas, availableReplicas) of a service from the DGD status, None when absent."""
    status = _map(dgd.get("status"))
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


def adapter_name(dgd_name: str, service: str) -> str:
    """The DynamoGraphDeploymentScalingAdapter the operator creates for a service: ``<dgd>-<service lowercased>``.
    When it exists, scaling goes through it: the operator overwrites a direct DGD patch from the adapter."""
    return f"{dgd_name}-{service.lower()}"


def adapter_replicas(adapter: Any) -> int | None:
    """``spec.replicas`` of a scaling adapter object, None when it has none (0 when it is not a number)."""
    raw = _map(_map(adapter).get("spec")).get("replicas")
    return None if raw is None else _int(raw)


def replicas_patch(dgd: Mapping[str, Any], service: str, replicas: int) -> dict[str, Any]:
    """The merge patch that sets ``service``'s replicas. v1alpha1: the one field. v1beta1: a merge patch cannot
    address one element of a list, so it rewrites ``spec.components`` and carries the DGD's
    ``metadata.resourceVersion``: a concurrent writer makes it fail with 409 instead of losing its update."""
    components = _components(dgd)
    if components is None:
        return {"spec": {"services": {service: {"replicas": replicas}}}}
    comps = copy.deepcopy(components)
    for comp in comps:
        if isinstance(comp, dict) and comp.get("name") == service:
            comp["replicas"] = replicas
    return {"metadata": {"resourceVersion": _map(dgd.get("metadata")).get("resourceVersion")},
            "spec": {"components": comps}}

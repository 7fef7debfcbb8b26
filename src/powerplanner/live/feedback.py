"""Is the planner's feedback path alive? Blind-feedback detection and its diagnosis.

The planner learns that a cap is in force only from the agents' series in Prometheus (applied limit and
acted-on revision, labelled ``pod_name``/``pod_namespace``, see live/ledger.py). When those series do not reach
it (the monitor relabels them, Prometheus does not scrape the agents) nothing is ever acknowledged, and that is
not the same as "all applied": :class:`~powerplanner.live.ledger.CapLedger` keeps counting each pod at the
highest cap annotated since its last acknowledgement. :class:`FeedbackWatch` notices the state (a Ready worker
pod without any agent series for ``planner.blind_ticks`` ticks) so the loop can say so (gauge, Event, log), and
:func:`diagnose_agent_series` names the likely cause from what Prometheus does hold; ``powerplanner verify``
uses the same function. See docs/operations.md ("The planner's feedback is blind").

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from powerplanner import contract
from powerplanner.live.kubernetes import ClusterState
from powerplanner.model.roles import ROLES

# The agent's metrics whose workload labels the planner reads, and the labels a diagnosis looks at: ours, and
# the names Prometheus gives labels it renames (``exported_<name>``, honor_labels: false).
FEEDBACK_METRICS = (contract.AGENT_LIMIT_APPLIED_WATTS, contract.AGENT_LIMIT_REVISION)
EXPORTED_POD_LABEL = f"exported_{contract.AGENT_POD_LABEL}"
EXPORTED_NAMESPACE_LABEL = f"exported_{contract.AGENT_NAMESPACE_LABEL}"
LEGACY_EXPORTED_POD_LABEL = "exported_pod"  # an agent older than the contract labels ``pod``: renamed like this
_DIAGNOSIS_LABELS = (contract.AGENT_POD_LABEL, contract.AGENT_NAMESPACE_LABEL, EXPORTED_POD_LABEL,
                     EXPORTED_NAMESPACE_LABEL, LEGACY_EXPORTED_POD_LABEL)
HONOR_LABELS_FIX = ("set honorLabels: true on the agents' PodMonitor/ServiceMonitor (the chart's monitors do), "
                    "or drop the relabelling that writes those labels")
SCRAPE_FIX = ("make Prometheus scrape the agents: metrics.podMonitor.enabled (Prometheus Operator, with the labels "
              "your Prometheus selects) or the prometheus.io pod annotations, and check the agents are Running")


def diagnosis_query() -> str:
    """One instant query: how many agent series there are per workload label set (ours and renamed ones)."""
    names = "|".join(FEEDBACK_METRICS)
    return f'count by ({", ".join(_DIAGNOSIS_LABELS)}) ({{__name__=~"{names}"}})'


@dataclass(frozen=True)
class FeedbackDiagnosis:
    """What the agents' series in Prometheus say about a deployment's pods. ``cause`` is one clear line,
    ``fix`` what to do; ``missing`` the pods without series under our labels."""

    ok: bool
    kind: str  # ok, no_series, relabelled, no_pod_label, other_namespaces, some_pods
    cause: str
    fix: str
    missing: tuple[str, ...] = ()
    attributed: tuple[str, ...] = ()


def _listed(names: Iterable[str], limit: int = 5) -> str:
    items = sorted(names)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def diagnose_agent_series(
    label_sets: Sequence[Mapping[str, str]], namespace: str, pods: Sequence[str] | None
) -> FeedbackDiagnosis:
    """Why ``pods`` of ``namespace`` have (or lack) agent series. ``label_sets`` are the answer of
    :func:`diagnosis_query` (one label set per group); ``pods`` None: any pod of the namespace will do."""
    pod_label, ns_label = contract.AGENT_POD_LABEL, contract.AGENT_NAMESPACE_LABEL
    ours = {s[pod_label] for s in label_sets if s.get(pod_label) and s.get(ns_label) == namespace}
    wanted = set(pods) if pods is not None else None
    attributed = ours if wanted is None else ours & wanted
    missing = set() if wanted is None else wanted - ours
    if (ours if wanted is None else not missing):
        return FeedbackDiagnosis(True, "ok", f"agent series ({pod_label}, {ns_label}) for "
                                 f"{len(attributed)} pod(s) of {namespace}", "", (), tuple(sorted(attributed)))
    renamed = {s.get(EXPORTED_POD_LABEL) or s.get(LEGACY_EXPORTED_POD_LABEL) or "" for s in label_sets
               if s.get(EXPORTED_POD_LABEL) or s.get(LEGACY_EXPORTED_POD_LABEL)}
    renamed.discard("")
    lacking = tuple(sorted(missing))
    have = tuple(sorted(attributed))
    who = f"{len(missing)} of {len(wanted)} pod(s) ({_listed(missing)})" if wanted is not None else "no pod"
    if not label_sets:
        return FeedbackDiagnosis(False, "no_series", "no agent series in Prometheus "
                                 f"({' / '.join(FEEDBACK_METRICS)}): Prometheus does not scrape the agents",
                                 SCRAPE_FIX, lacking, have)
    if renamed and (wanted is None or renamed & missing or not attributed):
        label = EXPORTED_POD_LABEL if any(s.get(EXPORTED_POD_LABEL) for s in label_sets) else LEGACY_EXPORTED_POD_LABEL
        return FeedbackDiagnosis(False, "relabelled", f"agent series carry {label} / lack {pod_label} for {who}: "
                                 "the monitor relabels them (the Prometheus Operator renames an exposed label that "
                                 "clashes with a target label when honorLabels is off)", HONOR_LABELS_FIX, lacking,
                                 have)
    if not any(s.get(pod_label) for s in label_sets):
        return FeedbackDiagnosis(False, "no_pod_label", f"agent series carry no {pod_label} label at all: the "
                                 "agents map no GPU to a pod, or they are older than the planner",
                                 "check the agents' kubelet PodResources socket (mapping_failures_total) and run "
                                 "agents of the planner's version", lacking, have)
    namespaces = {s[ns_label] for s in label_sets if s.get(pod_label) and s.get(ns_label)}
    if not ours:
        return FeedbackDiagnosis(False, "other_namespaces", f"agent series name pods only in namespace(s) "
                                 f"{_listed(namespaces - {namespace}) or '(none)'}, none in {namespace}",
                                 f"check that agent.allowed_namespaces lists {namespace} and that the agents run on "
                                 "the nodes of its worker pods", lacking, have)
    return FeedbackDiagnosis(False, "some_pods", f"no agent series for {who}: the agents on their nodes are not "
                             "scraped, not running, or have not mapped the pods' GPUs", SCRAPE_FIX, lacking, have)


@dataclass(frozen=True)
class FeedbackStatus:
    """One tick's verdict. ``blind_pods``: Ready worker pods without agent series for ``blind_ticks`` ticks
    or more; ``started``/``ended``: this tick began or ended a blind episode."""

    blind: bool
    blind_pods: tuple[str, ...] = ()
    watched_pods: int = 0
    started: bool = False
    ended: bool = False


class FeedbackWatch:
    """Counts, per Ready worker pod, the consecutive ticks without any agent series.

    Only positive evidence moves a count: a read that failed (Prometheus down: a different fault, reported as
    such) or a pod that is not Ready (its GPUs may not be mapped yet) leaves it as it was. A power source that
    cannot acknowledge (``series_pods`` None) is not watched."""

    def __init__(self, blind_ticks: int) -> None:
        if blind_ticks < 1:
            raise ValueError("blind_ticks must be at least 1")
        self.blind_ticks = blind_ticks
        self._missing_ticks: dict[str, int] = {}
        self._blind = False

    @property
    def blind(self) -> bool:
        return self._blind

    def update(self, state: ClusterState, series_pods: frozenset[str] | None, source_ok: bool) -> FeedbackStatus:
        if series_pods is None:
            self._missing_ticks.clear()
        else:
            pods = [p for role in ROLES for p in state.role(role).pods]
            present = {p.name for p in pods}
            for name in [n for n in self._missing_ticks if n not in present]:
                del self._missing_ticks[name]  # the pod is gone
            if source_ok:
                for pod in pods:
                    if not pod.ready or pod.terminating:
                        continue
                    if pod.name in series_pods:
                        self._missing_ticks.pop(pod.name, None)
                    else:
                        self._missing_ticks[pod.name] = self._missing_ticks.get(pod.name, 0) + 1
        blind_pods = tuple(sorted(n for n, ticks in self._missing_ticks.items() if ticks >= self.blind_ticks))
        was = self._blind
        self._blind = bool(blind_pods)
        watched = sum(1 for role in ROLES for p in state.role(role).pods if p.ready and not p.terminating)
        return FeedbackStatus(self._blind, blind_pods, watched, started=self._blind and not was,
                              ended=was and not self._blind)

"""The Prometheus checks of `powerplanner verify`: Prometheus answers, the frontend series the planner reads are
there with the labels it filters on, and every Ready worker pod has the agents' series under the contract's
labels.

They read through :class:`~powerplanner.live.prometheus.PrometheusClient` only, and record what they found for
the checks after them (:mod:`powerplanner.verify.state`).
"""

from __future__ import annotations

from powerplanner.live.feedback import diagnose_agent_series, diagnosis_query
from powerplanner.live.prometheus import DYNAMO_FRONTEND, VLLM_FRONTEND, PrometheusError
from powerplanner.verify.result import CheckResult, failed, passed, skipped
from powerplanner.verify.state import VerifyState, probe, selector_text
from powerplanner.verify.workloads import name_of, pod_is_ready, pod_is_terminating


def check_prometheus(state: VerifyState) -> CheckResult:
    name = "prometheus"
    if state.prometheus is None:
        return failed(name, "no Prometheus to check", "pass --prometheus URL or a --config with prometheus.url")
    url = state.prometheus.url
    result = probe(name, lambda: state.query("vector(1)"), lambda _: f"answers queries at {url}",
                   f"cannot query Prometheus at {url}",
                   "check the URL (--prometheus / prometheus.url) and that Prometheus is running and reachable "
                   "from here (kubectl port-forward when outside the cluster)")
    state.prom_ok = result.passed
    return result


def check_frontend_metrics(state: VerifyState) -> CheckResult:
    name = "frontend-metrics"
    if not state.prom_ok:
        return skipped(name, "prometheus")
    names = VLLM_FRONTEND if state.settings.frontend == "vllm" else DYNAMO_FRONTEND
    wanted: dict[str, str | None] = {names.model_label: state.settings.model}
    if names.namespace_label is not None:
        wanted[names.namespace_label] = state.settings.dynamo_namespace
    series = [names.requests_total] + [f"{m}_count" for m in (names.ttft_seconds, names.itl_seconds,
                                                                names.input_tokens, names.output_tokens)]
    problems: list[str] = []
    seen_models: set[str] = set()
    for metric in series:
        try:
            samples = state.query(f'{{__name__="{metric}"}}')
        except PrometheusError as exc:
            problems.append(f"{metric}: {exc.line}")
            continue
        if not samples:
            problems.append(f"{metric}: no series")
            continue
        missing = sorted({label for s in samples for label in wanted if label not in s.labels})
        if missing:
            problems.append(f"{metric}: series lack the label(s) {', '.join(missing)}")
            continue
        matching = [s for s in samples if all(v is None or s.labels.get(k) == v for k, v in wanted.items())]
        if not matching:
            have = sorted({",".join(f"{k}={s.labels.get(k)}" for k in wanted) for s in samples})[:5]
            problems.append(f"{metric}: no series with {selector_text({k: v for k, v in wanted.items() if v})}"
                            f" (have: {'; '.join(have)})")
        seen_models |= {s.labels.get(names.model_label, "") for s in matching}
    if problems:
        return failed(name, "the frontend metrics the planner reads are missing or mislabelled",
                      "make Prometheus scrape the Dynamo frontend (a PodMonitor on the frontend pods) and set "
                      "prometheus.model / dynamo_namespace to the label values it exports", tuple(problems))
    return passed(name, f"{len(series)} frontend series present with labels {', '.join(wanted)} "
                  f"(models: {', '.join(sorted(seen_models))})")


def check_agent_series(state: VerifyState) -> CheckResult:
    """The planner's feedback path: every Ready worker pod has agent series under the contract's labels
    (pod_name, pod_namespace). When not, name why (live/feedback.py: the planner logs the same cause)."""
    name = "agent-series"
    if not state.prom_ok:
        return skipped(name, "prometheus")
    try:
        samples = state.query(diagnosis_query())
    except PrometheusError as exc:
        return failed(name, "cannot read the agents' series", "check Prometheus", (exc.line,))
    workers = None
    if state.workers is not None:
        workers = sorted(name_of(p) for pods in state.workers.values() for p in pods
                         if pod_is_ready(p) and not pod_is_terminating(p))
    found = diagnose_agent_series([s.labels for s in samples], state.settings.namespace, workers)
    state.agent_series_pods = set(found.attributed)
    if found.ok:
        return passed(name, found.cause)
    seen = sorted(samples, key=lambda s: -(s.value or 0.0))[:5]
    details = [f"worker pods without agent series: {', '.join(found.missing)}"] if found.missing else []
    details += [f"agent series with {selector_text(s.labels) or 'no workload labels'}: {s.value or 0:.0f}"
                for s in seen]
    return failed(name, found.cause, found.fix, tuple(details))

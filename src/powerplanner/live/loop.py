"""The run loop: every cap tick, read the budget, the cluster and Prometheus, ask the Planner, act.

Two timescales, one loop: the loop ticks every ``planner.cap_interval_s``; the Planner itself decides on
which ticks replicas may change (``adjustment_interval_s``), so the loop never second-guesses it. Faults
never stop the loop: a Prometheus fault gives ``source_ok=False`` (the planner holds replicas and still
obeys the budget with caps), a Kubernetes fault skips the tick's actuation, and every fault is counted
in /metrics by kind and logged. Time is an injected :class:`~powerplanner.live.clock.Clock`.

What the planner cannot trust it says on every tick (the decision's reasons, a gauge) and once per episode
(a log line and a Warning Event): load data missing for ``metrics_missing_ticks`` ticks (``MetricsMissing``,
the planner holds replicas), and a DGD whose GPUs per replica differ from the profile's (``GpuCountMismatch``,
the planner only cuts power). See docs/operations.md, "Troubleshooting by symptom".

With leader election (live/leader.py) a planner that does not hold the Lease still ticks (its /decision and
/metrics show what it would do) but executes nothing; on each new term ``on_elected`` runs first (it re-reads
what the previous leader may have changed) and the tick acts only once it succeeded.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from powerplanner.kube.errors import KubernetesError
from powerplanner.live.actuation import StepOutcome, catch_up_caps, execute
from powerplanner.live.budget import Budget, CompositeBudget
from powerplanner.live.calibration_view import CalibrationReporter, profile_json
from powerplanner.live.clock import Clock
from powerplanner.live.cluster_view import Actuator, ClusterState
from powerplanner.live.feedback import FeedbackDiagnosis, FeedbackWatch
from powerplanner.live.feedback_report import FeedbackReporter
from powerplanner.live.leader import Leadership
from powerplanner.live.ledger import CapLedger
from powerplanner.live.observe import build_observation, missing_cause, to_jsonable
from powerplanner.live.prometheus import MetricsReading, MetricsSource
from powerplanner.live.telemetry import LoopTelemetry
from powerplanner.model.roles import ROLES
from powerplanner.model.values import Decision, LoadForecast, Observation, Reason
from powerplanner.planning.calibration import Calibrator

log = logging.getLogger(__name__)

_MISMATCH_LOG_EVERY_TICKS = 60  # repeat the GPU-count mismatch warning this often (5 min at a 5 s cap tick)


class PlannerLike(Protocol):
    def tick(self, obs: Observation, oracle_load: LoadForecast | None = None) -> Decision: ...


@dataclass(frozen=True)
class LoopSettings:
    cap_interval_s: float
    window_s: float
    dry_run: bool = False
    emit_events: bool = True
    blind_ticks: int = 3  # planner.blind_ticks: ticks without agent series before the feedback is called blind
    metrics_missing_ticks: int = 3  # consecutive ticks without load data before the gauge and the Event


@dataclass(frozen=True)
class TickReport:
    """Everything one tick saw and did (for logs, tests and ``GET /decision``)."""

    time_s: float
    budget: Budget | None
    observation: Observation | None
    decision: Decision | None
    outcomes: tuple[StepOutcome, ...] = ()
    errors: tuple[str, ...] = ()
    duration_s: float = 0.0
    state: ClusterState | None = field(default=None, repr=False)


class LiveLoop:
    def __init__(
        self,
        planner: PlannerLike,
        metrics: MetricsSource,
        actuator: Actuator,
        budget: CompositeBudget,
        clock: Clock,
        settings: LoopSettings,
        telemetry: LoopTelemetry | None = None,
        timer: Callable[[], float] = time.perf_counter,
        ledger: CapLedger | None = None,
        diagnose_feedback: Callable[[Sequence[str]], FeedbackDiagnosis] | None = None,
        leadership: Leadership | None = None,
        on_elected: Callable[[], None] | None = None,
    ) -> None:
        self.planner = planner
        self.ledger = ledger if ledger is not None else CapLedger()
        self.metrics = metrics
        self.actuator = actuator
        self.budget = budget
        self.clock = clock
        self.settings = settings
        self.telemetry = telemetry or LoopTelemetry()
        self.telemetry.dry_run.set(1 if settings.dry_run else 0)
        self._timer = timer
        self._leadership = leadership
        self._on_elected = on_elected
        self._ready_term: int | None = None  # the leadership term on_elected succeeded for
        self._lock = threading.Lock()
        self._last: TickReport | None = None
        self._source_was_ok = True
        self._last_reasons: tuple[Reason, ...] = ()
        self._budget_faults: set[str] = set()  # sources whose fault was logged (log once per transition)
        self._missing_ticks = 0  # consecutive ticks whose decision says load data is missing
        self._mismatch_ticks = 0  # consecutive ticks whose decision says the GPU count does not match
        self._calibration = CalibrationReporter(self.telemetry, lambda r, m, w: self._event(r, m, warning=w))
        self.feedback = FeedbackWatch(settings.blind_ticks)
        self._feedback = FeedbackReporter(self.feedback, self.telemetry, diagnose_feedback,
                                          lambda r, m, w: self._event(r, m, warning=w))
        self._profile_json: dict[str, Any] | None = None
        self.ticks = 0

    @property
    def last(self) -> TickReport | None:
        with self._lock:
            return self._last

    def last_decision_json(self) -> dict[str, Any]:
        """Body of ``GET /decision``."""
        report = self.last
        if report is None:
            return {"decision": None, "detail": "no tick has run yet"}
        return {
            "time_s": report.time_s,
            "budget_watts": report.budget.watts if report.budget else None,
            "budget_source": report.budget.source if report.budget else None,
            "decision": to_jsonable(report.decision),
            "observation": to_jsonable(report.observation),
            "outcomes": [
                {"kind": o.step.kind.value, "role": o.step.role.value, "value": o.step.value, "outcome": o.outcome,
                 "detail": o.detail}
                for o in report.outcomes
            ],
            "errors": list(report.errors),
            "dry_run": self.settings.dry_run,
        }

    def profile_json(self) -> dict[str, Any] | None:
        """Body of ``GET /profile``: the learned profile (live/calibration_view.py); None when calibration is off."""
        with self._lock:
            return self._profile_json

    def _report_calibration(self) -> None:
        calibrator = getattr(self.planner, "calibration", None)
        if not isinstance(calibrator, Calibrator):
            return
        self._calibration.report(calibrator)
        body = profile_json(calibrator)
        with self._lock:
            self._profile_json = body

    def may_act(self) -> bool:
        """True without leader election; else while the Lease is held in a term ``on_elected`` succeeded for."""
        lead = self._leadership
        return lead is None or (lead.is_leader() and lead.term == self._ready_term)

    def _start_acting(self) -> bool:
        """Whether this tick may act; runs ``on_elected`` once per new term (a failure: observe, retry next tick)."""
        lead = self._leadership
        if lead is None:
            return True
        leader, term = lead.is_leader(), lead.term
        self.telemetry.leader.set(1 if leader else 0)
        if leader and term != self._ready_term:
            try:
                if self._on_elected is not None:
                    self._on_elected()
            except Exception as exc:  # fail closed: a new leader that cannot catch up does not act yet
                self.telemetry.error("leader_catch_up")
                log.error("holding the Lease but not acting this tick: %s", getattr(exc, "message", None) or exc)
                return False
            self._ready_term = term
            log.warning("acting as the leader (term %d)", term)
        return self.may_act()

    # -- one tick -----------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        # One function on purpose (about 80 lines): a tick is one ordered sequence (budget, cluster, ledger,
        # metrics, observation, decision, actuation, reports) whose order is what keeps the budget, and each
        # step's fault handling sits next to it; split up, the order would be spread over several methods.
        started = self._timer()
        now_s = self.clock.now_s()
        errors: list[str] = []
        tel = self.telemetry
        acting = self._start_acting()

        budget = self.budget.current(self.clock.utc_now())
        tel.budget_watts.set(budget.watts)
        for source in budget.readings:
            shown = source.watts if source.watts is not None else float("nan")
            tel.budget_source_watts.labels(source.source).set(shown)
            if source.error:
                tel.error(f"budget_{source.source}")
                errors.append(source.error)
                if source.source not in self._budget_faults:
                    log.warning("budget source %s: %s", source.source, source.error)
            elif source.source in self._budget_faults:
                log.warning("budget source %s answers again", source.source)
        self._budget_faults = {r.source for r in budget.readings if r.error}

        try:
            state = self.actuator.read_state()
        except KubernetesError as exc:
            tel.error(f"kubernetes_{exc.kind}")
            log.error("cannot read the cluster, skipping this tick: %s", exc.message)
            return self._finish(TickReport(now_s, budget, None, None, (), (*errors, exc.message)), started)
        tel.dgd_ready.set(1 if state.ready else 0)
        tel.record_worker_pods(state.pod_names())

        try:
            reading = self.metrics.read(self.settings.window_s, state.pod_names())
        except Exception as exc:  # a metrics source must not take the loop down
            log.exception("metrics source failed unexpectedly")
            reading = MetricsReading(None, None, None, None, None, source_ok=False,
                                     source_error=f"metrics source crashed: {exc!r}", error_kind="crash")
        if not reading.source_ok:
            tel.error(f"prometheus_{reading.error_kind or 'unknown'}")
            errors.append(reading.source_error or "metrics source failed")
            if self._source_was_ok:
                log.error("metrics source failed, holding replicas: %s", reading.source_error)
                self._event("MetricsUnavailable", f"Prometheus fault, holding replicas: {reading.source_error}",
                            warning=True)
        elif not self._source_was_ok:
            log.warning("metrics source recovered")
            self._event("MetricsRecovered", "Prometheus answers again")
        self._source_was_ok = reading.source_ok

        unacked = (self.ledger.update(state, reading.revision_by_pod, reading.holders_by_gpu)
                   if reading.revision_by_pod is not None else None)
        self._feedback.update(state, reading)
        counted = self.ledger.counted_state(state)  # gone pods whose GPUs are not released count as draining
        obs = build_observation(now_s, self.settings.window_s, reading, counted, budget.watts, unacked)
        tel.record_observation(obs)
        try:
            decision = self.planner.tick(obs)
        except Exception as exc:  # the planner is pure; a crash is a bug, but the loop keeps its promises
            tel.error("planner")
            log.exception("planner failed on this observation; nothing changes this tick")
            return self._finish(TickReport(now_s, budget, obs, None, (), (*errors, f"planner: {exc!r}"),
                                           state=state), started)
        tel.record_decision(decision)
        self._report_calibration()
        self._report_missing(obs, decision)
        self._report_mismatch(decision)

        current_caps = {role: obs.role(role).applied_cap_watts for role in ROLES}
        outcomes: list[StepOutcome] = []
        if acting:  # a follower decides (GET /decision shows it) but executes nothing
            outcomes = execute(decision.steps, counted, self.actuator, current_caps, dry_run=self.settings.dry_run)
            outcomes += catch_up_caps({role: decision.target(role).cap_watts for role in ROLES}, counted,
                                      self.actuator, current_caps, outcomes, decision.projected_provisioned_watts,
                                      self.settings.dry_run)
        for outcome in outcomes:
            tel.steps.labels(outcome.step.kind.value, outcome.outcome).inc()
            if outcome.outcome == "failed":
                tel.error(f"kubernetes_{outcome.error_kind or 'unknown'}")
                errors.append(outcome.detail)
        changed = [o for o in outcomes if o.changed]
        self._log_decision(budget, decision, outcomes, loud=bool(changed) or decision.reasons != self._last_reasons)
        self._last_reasons = decision.reasons
        if changed:
            self._event("PowerPlanApplied", self._summary(budget, decision, changed))
        return self._finish(TickReport(now_s, budget, obs, decision, tuple(outcomes), tuple(errors), state=state),
                            started)

    def _report_missing(self, obs: Observation, decision: Decision) -> None:
        """Gauge, log line and ``MetricsMissing`` Event once load data has been missing for N ticks in a row."""
        n = self.settings.metrics_missing_ticks
        missing = Reason.METRICS_MISSING in decision.reasons or Reason.SOURCE_ERROR_HOLD in decision.reasons
        if missing:
            self._missing_ticks += 1
            if self._missing_ticks == n:
                why = missing_cause(obs)
                log.warning("load metrics missing for %d tick(s): %s; holding replicas, caps not raised", n, why)
                self._event("MetricsMissing", f"No load data for {n} tick(s): {why}. Holding replicas and not "
                            "raising caps until it is back (docs/operations.md).", warning=True)
        else:
            if self._missing_ticks >= n:
                log.warning("load metrics are back after %d tick(s) without them", self._missing_ticks)
                self._event("MetricsRecovered", f"Load data is back after {self._missing_ticks} tick(s) without it")
            self._missing_ticks = 0
        self.telemetry.metrics_missing.set(1 if self._missing_ticks >= n else 0)

    def _report_mismatch(self, decision: Decision) -> None:
        """Gauge on every tick; log line and ``GpuCountMismatch`` Event once per episode (the log line again
        every ``_MISMATCH_LOG_EVERY_TICKS`` ticks while it lasts)."""
        mismatch = Reason.GPU_COUNT_MISMATCH in decision.reasons
        self.telemetry.gpu_count_mismatch.set(1 if mismatch else 0)
        if not mismatch:
            if self._mismatch_ticks:
                log.warning("GPUs per replica match the profile again; planning normally")
            self._mismatch_ticks = 0
            return
        why = next((note for note in decision.notes if "GPU(s) per replica" in note), "GPU count mismatch")
        if self._mismatch_ticks % _MISMATCH_LOG_EVERY_TICKS == 0:
            log.warning("%s", why)
        if self._mismatch_ticks == 0:
            self._event("GpuCountMismatch", why, warning=True)
        self._mismatch_ticks += 1

    def _finish(self, report: TickReport, started: float) -> TickReport:
        duration = self._timer() - started
        report = dataclasses.replace(report, duration_s=duration)
        self.telemetry.tick_seconds.observe(duration)
        self.telemetry.last_tick.set(self.clock.utc_now().timestamp())  # Unix time: staleness alerts
        with self._lock:
            self._last = report
        self.ticks += 1
        return report

    def _event(self, reason: str, message: str, warning: bool = False) -> None:
        if self.settings.emit_events and not self.settings.dry_run and self.may_act():
            self.actuator.emit_event(reason, message, warning=warning)

    @staticmethod
    def _summary(budget: Budget, decision: Decision, done: list[StepOutcome]) -> str:
        steps = ", ".join(
            f"{o.step.role.value} cap={o.step.value:g}W" if o.step.kind.value == "set_cap"
            else f"{o.step.role.value} replicas={int(o.step.value)}"
            for o in done
        )
        reasons = ",".join(str(r) for r in decision.reasons)
        return (f"budget {budget.watts:g} W ({budget.source}); projected {decision.projected_provisioned_watts:g} W; "
                f"{steps}; reasons: {reasons}")

    def _log_decision(self, budget: Budget, decision: Decision, outcomes: list[StepOutcome], loud: bool) -> None:
        """INFO when something changed or the reasons did; DEBUG for the steady state (a tick every few s)."""
        mode = "dry-run " if self.settings.dry_run else "" if self.may_act() else "follower (not acting) "
        log.log(
            logging.INFO if loud or self.settings.dry_run else logging.DEBUG,
            "%sdecision: budget=%gW(%s) prefill=%dx%gW decode=%dx%gW projected=%gW reasons=%s steps=[%s]",
            mode, budget.watts, budget.source, decision.prefill.replicas, decision.prefill.cap_watts,
            decision.decode.replicas, decision.decode.cap_watts, decision.projected_provisioned_watts,
            ",".join(str(r) for r in decision.reasons),
            "; ".join(f"{o.step.kind.value} {o.step.role.value}={o.step.value:g}:{o.outcome}" for o in outcomes),
        )

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, stop: threading.Event, once: bool = False, max_ticks: int | None = None) -> int:
        """Tick every cap interval until ``stop`` is set (SIGTERM/SIGINT), once, or ``max_ticks`` times.
        A slow tick is not made up for: the next one starts a full interval after it was due, or now."""
        interval = self.settings.cap_interval_s
        next_due = self.clock.now_s()
        ran = 0
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug must not stop the controller: count it, log it, try again next tick
                self.telemetry.error("internal")
                log.exception("tick failed unexpectedly; retrying on the next tick")
            ran += 1
            if once or (max_ticks is not None and ran >= max_ticks):
                break
            next_due += interval
            now = self.clock.now_s()
            if next_due < now:
                next_due = now
            self.clock.sleep_s(next_due - now, stop)
        return ran

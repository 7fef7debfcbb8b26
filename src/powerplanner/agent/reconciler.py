"""The reconciler: turns the pods on the node into GPU power limits, one pass at a time.

A pass reads the pod snapshot (from the watch), asks the mapper which pod holds which GPU, lets the pure
:func:`~powerplanner.agent.policy.plan_limits` decide, and applies what changed:

- apply only on change: the current limit is read from the GPU each pass and a set happens only when it
  differs from the target (so an external change is corrected at the next pass, and nothing is written
  when nothing changed);
- before the first change of a GPU its current limit is recorded in the state file. If that write fails, a
  change that *lowers* the limit (a cap below the current limit, parking) is applied anyway: refusing it
  would leave the GPU above what the planner counts, and the original stays recoverable (kept in memory,
  written by the next write that succeeds, and NVML's default limit in any case). A change that *raises* the
  limit is refused while the original cannot be recorded. Both are logged and counted
  (``powerplanner_agent_apply_failures_total{reason="state_file"}``);
- a GPU whose plan is *release* goes back to its recorded original limit and leaves the state file;
  a GPU the agent never changed is left alone;
- each GPU is handled on its own: an NVML error on one GPU is counted and logged, the others proceed.

A new agent (after a restart or a rollout) starts from the state file its predecessor left and the limits in
force: GPUs whose pods still ask keep their caps (no set at all when nothing changed), GPUs no managed pod
holds follow the normal plan (parked when parking is on, else back to their original).

:meth:`Reconciler.restore_all` puts every recorded GPU back to its original limit; the agent calls it at exit
only when it is being uninstalled or configured to (:mod:`powerplanner.agent.handover`). NVML errors there are
often transient (a driver busy with another client, a permission race with a GPU operator restart), so each
GPU gets a few attempts with a short backoff; a GPU still not restored after them stays in the state file, is
reported (exit status 1), and is restored at the agent's next start. A GPU is never counted as restored, nor
dropped from the state file, unless its limit was read back at the original value.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from powerplanner.agent.exporter import AgentMetrics, GpuSample
from powerplanner.agent.gpu import GpuBackend, GpuError, GpuInfo, ReadbackMismatch
from powerplanner.agent.mapping import MappingError, PodGpuMapper, PodSnapshot
from powerplanner.agent.policy import AgentPolicy, GpuPlan, Holding, Rejection, plan_limits
from powerplanner.agent.state import StateFileError, StateStore
from powerplanner.retry import retrying

_LOG = logging.getLogger("powerplanner.agent")
_EPSILON_WATTS = 0.0005  # NVML works in milliwatts


@dataclass
class PassResult:
    """What one pass did, for tests and logs."""

    plans: dict[str, GpuPlan] = field(default_factory=dict)
    changed: dict[str, float] = field(default_factory=dict)  # uuid -> watts set (or that would be set)
    failures: dict[str, str] = field(default_factory=dict)  # uuid -> reason


class Reconciler:
    """One pass = snapshot pods, map them to GPUs, plan, apply per GPU. Not thread-safe: one loop drives it."""

    def __init__(
        self,
        backend: GpuBackend,
        mapper: PodGpuMapper,
        pods: Callable[[], PodSnapshot],
        state: StateStore,
        metrics: AgentMetrics,
        policy: AgentPolicy,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        restore_attempts: int = 3,
        restore_backoff_s: float = 0.2,
    ) -> None:
        self._backend = backend
        self._mapper = mapper
        self._pods = pods
        self._state = state
        self._metrics = metrics
        self._policy = policy
        self._dry_run = dry_run
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._restore_attempts = max(1, restore_attempts)
        self._restore_backoff_s = restore_backoff_s
        self._gpus: list[GpuInfo] = backend.gpus()
        self._seen_rejections: set[tuple[str, str]] = set()
        self._last_holdings: list[Holding] = []
        self._unseen_since_s: dict[tuple[str, str], float] = {}  # holders the pod watch has not delivered
        self._state_unwritable = False

    def reconcile(self) -> PassResult:
        started = self._clock()
        try:
            return self._reconcile()
        finally:
            self._metrics.reconcile_seconds.observe(max(0.0, self._clock() - started))

    def _holdings(self, pods: PodSnapshot) -> list[Holding]:
        try:
            holdings = self._mapper.holdings(pods, self._gpus)
        except MappingError as exc:
            self._metrics.mapping_failures.labels(exc.reason).inc()
            _LOG.warning("%s; keeping the previous pod->GPU mapping", exc)
            return [h for h in self._last_holdings if (h.namespace, h.pod) in pods]
        self._last_holdings = holdings
        return holdings

    def _report_rejections(self, plans_rejections: list[Rejection]) -> None:
        current = set()
        for rejection in plans_rejections:
            key = (rejection.uid or f"{rejection.namespace}/{rejection.pod}", rejection.raw)
            current.add(key)
            if key in self._seen_rejections:
                continue
            self._metrics.annotation_rejections.labels(rejection.reason).inc()
            _LOG.error("%s (ignored: its GPUs keep their current limit unless another pod asks validly)",
                       rejection.message)
        # Forget pods that fixed or dropped their annotation, so a later relapse is reported again.
        self._seen_rejections = current

    def _flush_state(self) -> None:
        """Write entries a failed write left in memory only; logged when that starts and stops failing."""
        if self._dry_run or not self._state.dirty:
            return
        try:
            self._state.flush()
        except StateFileError as exc:
            if not self._state_unwritable:
                _LOG.error("%s; retrying at every pass (lowering changes still apply, raises wait)", exc)
            self._state_unwritable = True
            return
        if self._state_unwritable:
            _LOG.info("state file %s written again", self._state.path)
        self._state_unwritable = False

    def _reconcile(self) -> PassResult:
        self._flush_state()
        pods = self._pods()
        holdings = self._holdings(pods)
        now_s = self._wall_clock()
        unseen = {(h.namespace, h.pod) for h in holdings if (h.namespace, h.pod) not in pods}
        self._unseen_since_s = {key: self._unseen_since_s.get(key, now_s) for key in unseen}
        plans, rejections = plan_limits(self._gpus, pods, holdings, self._policy, now_s, self._unseen_since_s)
        self._report_rejections(rejections)
        result = PassResult(plans=plans)
        samples = []
        for gpu in self._gpus:
            plan = plans[gpu.uuid]
            applied = self._apply(gpu, plan, result)
            holder = plan.holder
            samples.append(
                GpuSample(
                    index=gpu.index,
                    uuid=gpu.uuid,
                    pod=holder.pod if holder else "",
                    namespace=holder.namespace if holder else "",
                    container=holder.container if holder else "",
                    requested_watts=float(plan.requested_watts) if plan.requested_watts is not None else None,
                    applied_watts=applied,
                    default_watts=gpu.default_limit_watts,
                    min_watts=gpu.min_limit_watts,
                    max_watts=gpu.max_limit_watts,
                    revision=plan.revision,
                )
            )
        self._metrics.publish(samples)
        return result

    def _fail(self, gpu: GpuInfo, reason: str, message: str, result: PassResult) -> None:
        self._metrics.apply_failures.labels(reason).inc()
        result.failures[gpu.uuid] = reason
        _LOG.error("GPU %d (%s): %s", gpu.index, gpu.uuid, message)

    def _apply(self, gpu: GpuInfo, plan: GpuPlan, result: PassResult) -> float | None:
        """Bring one GPU to its planned limit; return the limit it has afterwards (None if unreadable)."""
        try:
            current = self._backend.limit_watts(gpu.uuid)
        except GpuError as exc:
            self._fail(gpu, exc.reason, f"cannot read its power limit: {exc}", result)
            return None
        original = self._state.original(gpu.uuid)
        if plan.action in ("cap", "park"):
            target = plan.target_watts
        elif plan.action == "release":
            target = original
        else:
            target = None
        if target is None:
            return current
        if not math.isfinite(target) or not math.isfinite(current):
            self._fail(gpu, "invalid_argument", f"not setting a limit from {current!r} W to {target!r} W", result)
            return current
        if abs(current - target) < _EPSILON_WATTS:
            if plan.action == "release" and original is not None and not self._dry_run:
                self._forget(gpu, result)
            return current
        if self._dry_run:
            _LOG.info("dry run: would set GPU %d (%s) from %g W to %g W (%s)", gpu.index, gpu.uuid, current,
                      target, self._why(plan))
            result.changed[gpu.uuid] = target
            return current
        if original is None:
            lowering = target < current
            try:
                self._state.record_original(gpu.uuid, current, keep_if_unsaved=lowering)
            except StateFileError as exc:
                if not lowering:
                    self._fail(gpu, "state_file", f"{exc}; not raising a limit whose original could not be "
                               "recorded", result)
                    return current
                self._metrics.apply_failures.labels("state_file").inc()
                _LOG.error("GPU %d (%s): %s; lowering it anyway (the original %g W is kept in memory and written "
                           "at the next pass that can; NVML's default is %g W)", gpu.index, gpu.uuid, exc, current,
                           gpu.default_limit_watts)
                self._state_unwritable = True
        try:
            applied = self._backend.set_limit_watts(gpu.uuid, target)
        except GpuError as exc:
            self._fail(gpu, exc.reason, f"cannot set its power limit to {target:g} W: {exc}", result)
            return self._read_quietly(gpu.uuid)
        result.changed[gpu.uuid] = applied
        self._metrics.limit_changes.labels(plan.action).inc()
        for reason in plan.clamps:
            self._metrics.clamps.labels(reason).inc()
        _LOG.info("GPU %d (%s): power limit %g W -> %g W (%s)", gpu.index, gpu.uuid, current, applied,
                  self._why(plan))
        if plan.action == "release":
            self._forget(gpu, result)
        return applied

    def _forget(self, gpu: GpuInfo, result: PassResult) -> None:
        try:
            self._state.forget(gpu.uuid)
        except StateFileError as exc:
            self._fail(gpu, "state_file", str(exc), result)

    def _read_quietly(self, uuid: str) -> float | None:
        try:
            return self._backend.limit_watts(uuid)
        except GpuError:
            return None

    @staticmethod
    def _why(plan: GpuPlan) -> str:
        if plan.action == "cap" and plan.holder is not None:
            clamped = f", clamped: {', '.join(plan.clamps)}" if plan.clamps else ""
            return f"pod {plan.holder.namespace}/{plan.holder.pod} asks {plan.requested_watts} W{clamped}"
        if plan.action == "park" and plan.holder is not None:
            return f"new worker {plan.holder.namespace}/{plan.holder.pod} has no cap yet; parked until it does"
        if plan.action == "park":
            return "no pod holds it; parked"
        return "no pod asks for a cap; original limit"

    def restore_all(self) -> dict[str, str]:
        """Put every GPU the agent changed back to its original limit. Returns uuid -> failure reason.

        Failed GPUs are retried up to ``restore_attempts`` times in all, waiting ``restore_backoff_s`` (doubling)
        between rounds; what still fails stays in the state file for the next start.
        """
        known = {g.uuid: g for g in self._gpus}
        pending: dict[str, float] = {}
        for uuid, original in sorted(self._state.originals().items()):
            if uuid not in known:  # kept: if the GPU comes back (after a reset), a later start restores it
                _LOG.warning("state file names GPU %s, which this node does not have; keeping the entry", uuid)
            elif not self._dry_run:
                pending[uuid] = original
        rounds = itertools.count(1)

        def one_round() -> dict[str, str]:
            final = next(rounds) == self._restore_attempts
            failures = {}
            for uuid, original in list(pending.items()):
                reason = self._restore_one(known[uuid], original, final=final)
                if reason is None:
                    del pending[uuid]  # the next round retries only what failed
                else:
                    failures[uuid] = reason
            return failures

        policy = retrying(sleep=self._sleep, first_wait_s=self._restore_backoff_s, attempts=self._restore_attempts,
                          retry_on_result=bool)
        failures: dict[str, str] = policy(one_round)
        return failures

    def _restore_one(self, gpu: GpuInfo, original: float, final: bool) -> str | None:
        """One attempt at restoring one GPU; the failure reason, or None once it is back and forgotten."""
        try:
            current = self._backend.limit_watts(gpu.uuid)
            if abs(current - original) >= _EPSILON_WATTS:
                applied = self._backend.set_limit_watts(gpu.uuid, original)
                if abs(applied - original) >= _EPSILON_WATTS:
                    raise ReadbackMismatch(f"set {original:g} W but read back {applied:g} W", gpu.uuid)
                self._metrics.limit_changes.labels("restore").inc()
                _LOG.info("GPU %d (%s): restored power limit %g W -> %g W", gpu.index, gpu.uuid, current, original)
            self._state.forget(gpu.uuid)
        except GpuError as exc:
            self._metrics.apply_failures.labels(exc.reason).inc()
            then = "kept in the state file for the next start" if final else "retrying"
            _LOG.error("GPU %d (%s): cannot restore %g W: %s (%s)", gpu.index, gpu.uuid, original, exc, then)
            return exc.reason
        except StateFileError as exc:
            _LOG.error("%s", exc)
            return "state_file"
        return None

"""Says so when the planner's feedback goes blind or comes back (live/feedback.py decides; this reports): the
gauges, one log line and one Event per episode, with the likely cause. docs/operations.md, "The planner's feedback
is blind".

Apart from the loop for the same reason as live/calibration_view.py's reporter: the loop runs the tick, this
holds what one of its reports says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from powerplanner import contract
from powerplanner.live.cluster_view import ClusterState
from powerplanner.live.feedback import FeedbackDiagnosis, FeedbackWatch
from powerplanner.live.prometheus import MetricsReading
from powerplanner.live.telemetry import LoopTelemetry

log = logging.getLogger("powerplanner.live.loop")  # the loop's logger: operators filter on it


class FeedbackReporter:
    """Feeds each tick's cluster state and agent series to :class:`FeedbackWatch` and reports its transitions;
    ``event(reason, message, warning)`` emits a Kubernetes Event (the loop's, which only the leader sends)."""

    def __init__(self, watch: FeedbackWatch, telemetry: LoopTelemetry,
                 diagnose: Callable[[Sequence[str]], FeedbackDiagnosis] | None,
                 event: Callable[[str, str, bool], None]) -> None:
        self._watch = watch
        self.telemetry = telemetry
        self._diagnose_feedback = diagnose
        self._event = event

    def update(self, state: ClusterState, reading: MetricsReading) -> None:
        """Say so when the agents' series stop reaching the planner (live/feedback.py): the ledger already
        counts the pods conservatively; this makes the state visible, once per episode."""
        status = self._watch.update(state, reading.series_pods, reading.source_ok)
        self.telemetry.feedback_blind.set(1 if status.blind else 0)
        self.telemetry.feedback_blind_pods.set(len(status.blind_pods))
        if status.started:
            pods = status.blind_pods
            shown = ", ".join(pods[:5]) + (f" and {len(pods) - 5} more" if len(pods) > 5 else "")
            message = (f"no agent series ({contract.AGENT_POD_LABEL}, {contract.AGENT_NAMESPACE_LABEL}) for "
                       f"{len(pods)} of {status.watched_pods} Ready worker pod(s) ({shown}) for "
                       f"{self._watch.blind_ticks} tick(s): {self._cause(pods)}. Their caps are never "
                       "acknowledged: each counts at the highest cap annotated since its last acknowledgement, and "
                       "power moved between roles waits")
            log.warning("feedback blind: %s", message)
            self._event("FeedbackBlind", message, True)
        elif status.ended:
            log.warning("feedback restored: every Ready worker pod has agent series again")
            self._event("FeedbackRestored", "every Ready worker pod has agent series again", False)

    def _cause(self, pods: Sequence[str]) -> str:
        generic = ("likely the monitor relabels the agents' series (without honorLabels the Prometheus Operator "
                   "renames exposed labels that clash with its own) or Prometheus does not scrape the agents; "
                   "`powerplanner verify` names which")
        if self._diagnose_feedback is None:
            return generic
        try:
            found = self._diagnose_feedback(pods)
        except Exception as exc:  # a diagnosis is best effort: the warning must go out anyway
            log.debug("feedback diagnosis failed: %r", exc)
            return generic
        if found.ok:
            return "the series are in Prometheus again now (a scrape gap?)"
        return f"{found.cause}; fix: {found.fix}"

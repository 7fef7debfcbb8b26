"""The contract between the planner, the node agent and ``verify``: names and grammars all three must agree on.

One module, no dependencies of ours but ``errors``: the planner writes what the agent reads (pod annotations),
the agent exports what the planner and ``verify`` query (metric names and labels). A rule written twice drifts
(the planner once read ``"+350"`` as 350 W where the agent refused it), so every side imports it from here and
``tests/unit/test_contract.py`` pins it. See docs/architecture.md ("The planner/agent contract").
"""

from __future__ import annotations

import math
import re

from powerplanner.errors import UserError

# --- Kubernetes keys -------------------------------------------------------------------------------------------
# Per-GPU power limit a pod asks for (Dynamo's contract): a positive integer of watts, as a string.
POWER_LIMIT_ANNOTATION = "dynamo.nvidia.com/gpu-power-limit"
# Written by the planner in the same merge patch as every cap, +1 each time; the agent exports the revision it
# acted on, so the planner can tell "applied this write" from "still shows an older, equal value".
REVISION_ANNOTATION = "powerplanner.dev/gpu-power-limit-revision"
# The Dynamo operator labels every worker pod of a DynamoGraphDeployment with its name and role.
DGD_LABEL = "nvidia.com/dynamo-graph-deployment-name"
SUB_COMPONENT_LABEL = "nvidia.com/dynamo-sub-component-type"

# --- Agent metrics -----------------------------------------------------------------------------------------------
AGENT_METRIC_PREFIX = "powerplanner_agent_gpu_"
AGENT_DRAW_WATTS = "powerplanner_agent_gpu_power_draw_watts"
AGENT_ENERGY_JOULES = "powerplanner_agent_gpu_energy_joules"
AGENT_LIMIT_REQUESTED_WATTS = "powerplanner_agent_gpu_power_limit_requested_watts"
AGENT_LIMIT_APPLIED_WATTS = "powerplanner_agent_gpu_power_limit_applied_watts"
AGENT_LIMIT_DEFAULT_WATTS = "powerplanner_agent_gpu_power_limit_default_watts"
AGENT_LIMIT_MIN_WATTS = "powerplanner_agent_gpu_power_limit_min_watts"
AGENT_LIMIT_MAX_WATTS = "powerplanner_agent_gpu_power_limit_max_watts"
AGENT_LIMIT_REVISION = "powerplanner_agent_gpu_power_limit_revision"
# The workload's identity goes in labels no scraper sets: the Prometheus Operator attaches its own ``pod``,
# ``namespace`` and ``container`` target labels and, without honorLabels, renames ours to ``exported_*``
# (Kepler uses the same names for the same reason).
AGENT_POD_LABEL = "pod_name"
AGENT_NAMESPACE_LABEL = "pod_namespace"
AGENT_CONTAINER_LABEL = "container_name"
AGENT_GPU_LABELS = ("gpu", "uuid", AGENT_POD_LABEL, AGENT_NAMESPACE_LABEL, AGENT_CONTAINER_LABEL)

# --- Grammar of the cap annotation --------------------------------------------------------------------------------
MAX_ANNOTATION_CHARS = 16
MAX_REQUEST_WATTS = 100_000  # far above any GPU; larger values are typos, not requests to clamp
MAX_REVISION_DIGITS = 18
_DIGITS = re.compile(r"[0-9]+", re.ASCII)  # ASCII only: "٣٠٠" (Arabic-Indic digits) is not 300 W


class AnnotationError(UserError):
    """A pod's power-limit annotation is not a positive integer of watts. ``reason`` labels the metric."""

    def __init__(self, reason: str, line: str) -> None:
        super().__init__(line)
        self.reason = reason


def _preview(raw: str) -> str:
    return repr(raw if len(raw) <= 24 else raw[:24] + "...")


def parse_power_annotation(raw: str, where: str = "annotation") -> int:
    """The watts a pod asks for, or :class:`AnnotationError` saying what is wrong and how to fix it.

    The grammar is ``[0-9]+`` (ASCII), 1..100000, at most 16 characters: no sign, no spaces, no ``_``, no
    decimals. The agent and the planner both read annotations with this function.
    """
    fix = f'set {POWER_LIMIT_ANNOTATION} to a positive integer of watts, e.g. "350"'
    if raw == "" or raw.isspace():
        raise AnnotationError("empty", f"{where}: {POWER_LIMIT_ANNOTATION} is empty; {fix}")
    if len(raw) > MAX_ANNOTATION_CHARS:
        raise AnnotationError(
            "too_long", f"{where}: {POWER_LIMIT_ANNOTATION} is {len(raw)} characters long {_preview(raw)}; {fix}"
        )
    if raw.startswith("-") and _DIGITS.fullmatch(raw[1:]):
        raise AnnotationError("not_positive", f"{where}: {POWER_LIMIT_ANNOTATION}={_preview(raw)} is negative; {fix}")
    if not _DIGITS.fullmatch(raw):
        raise AnnotationError(
            "not_integer", f"{where}: {POWER_LIMIT_ANNOTATION}={_preview(raw)} is not an integer of watts; {fix}"
        )
    watts = int(raw)
    if watts == 0:
        raise AnnotationError("not_positive", f"{where}: {POWER_LIMIT_ANNOTATION}=\"0\" is not positive; {fix}")
    if watts > MAX_REQUEST_WATTS:
        raise AnnotationError(
            "too_large",
            f"{where}: {POWER_LIMIT_ANNOTATION}={_preview(raw)} exceeds {MAX_REQUEST_WATTS} W; {fix}",
        )
    return watts


def power_annotation_watts(raw: object) -> int | None:
    """The watts of an annotation value, or None when absent or refused (the agent then holds that GPU)."""
    if not isinstance(raw, str):
        return None
    try:
        return parse_power_annotation(raw)
    except AnnotationError:
        return None


def format_power_annotation(cap_watts: float) -> str:
    """The annotation for a planned cap: integer watts rounded down, so the written cap never exceeds the plan."""
    if not math.isfinite(cap_watts):
        raise ValueError(f"cap {cap_watts!r} W is not a finite number of watts")
    watts = math.floor(cap_watts + 1e-9)
    if watts < 1 or watts > MAX_REQUEST_WATTS:
        raise ValueError(f"cap {cap_watts!r} W is not between 1 and {MAX_REQUEST_WATTS} watts")
    return str(watts)


def parse_revision(raw: object) -> int | None:
    """The planner's revision annotation: a positive integer of at most 18 ASCII digits, else None (never
    acknowledged, which only makes the planner count the pod's older caps longer)."""
    if not isinstance(raw, str) or len(raw) > MAX_REVISION_DIGITS or not _DIGITS.fullmatch(raw):
        return None
    return int(raw) or None


def format_revision(revision: int) -> str:
    """The revision annotation's value (a positive integer)."""
    if revision < 1 or len(str(revision)) > MAX_REVISION_DIGITS:
        raise ValueError(f"revision {revision!r} is not a positive integer of at most {MAX_REVISION_DIGITS} digits")
    return str(revision)


def next_revision(current: object) -> str:
    """The revision to write with a new cap: one above the pod's current (valid) revision, else 1."""
    return format_revision((parse_revision(current) or 0) + 1)

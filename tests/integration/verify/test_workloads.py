"""The pure rules verify applies to API objects: the annotation's grammar, GPU counts and GPU nodes (the DGD's
roles and readiness are the planner's own reader, tests/unit/kube/test_dgd.py). No cluster needed; hypothesis
for the annotation grammar."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from powerplanner.contract import DGD_LABEL, MAX_REQUEST_WATTS, SUB_COMPONENT_LABEL, power_annotation_watts
from powerplanner.verify.result import CheckResult, Report, Status
from powerplanner.verify.workloads import (
    CAP_ANNOTATION,
    cap_annotation,
    is_gpu_node,
    pod_gpus,
    worker_pods,
)


def pod(annotation: str | None = None, **labels: str) -> dict[str, Any]:
    annotations = {CAP_ANNOTATION: annotation} if annotation is not None else {}
    return {"metadata": {"name": "p", "labels": labels, "annotations": annotations},
            "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}},
                                    {"resources": {"requests": {"nvidia.com/gpu": "1"}}}, {}]}}


@given(st.integers(min_value=1, max_value=MAX_REQUEST_WATTS))
def test_any_positive_integer_annotation_the_agent_takes_is_accepted(watts: int) -> None:
    assert cap_annotation(pod(str(watts))) == (watts, None)


@given(st.text(max_size=20) | st.integers(-10, 2 * MAX_REQUEST_WATTS).map(str)
       | st.sampled_from(["+350", " 350", "3_50", "\u0663\u0665\u0660", "350.0", "0"]))
def test_verify_accepts_exactly_what_the_agent_applies(raw: str) -> None:
    """One parser (contract.parse_power_annotation): verify never passes an annotation the agent refuses."""
    watts, why = cap_annotation(pod(raw))
    assert watts == power_annotation_watts(raw)
    if watts is None:
        assert why is not None and "positive integer of watts" in why


def test_missing_annotation() -> None:
    assert cap_annotation(pod()) == (None, "no annotation")


def test_gpu_count_sums_containers_limits_then_requests() -> None:
    assert pod_gpus(pod()) == 3


def test_worker_pods_filter_by_labels_client_side() -> None:
    pods = [pod(**{DGD_LABEL: "llm", SUB_COMPONENT_LABEL: r}) for r in ("prefill", "decode", "frontend")]
    pods.append(pod(**{DGD_LABEL: "other", SUB_COMPONENT_LABEL: "decode"}))
    found = worker_pods(pods, "llm")
    assert (len(found["prefill"]), len(found["decode"])) == (1, 1)


def test_gpu_nodes_by_label_or_resource() -> None:
    assert is_gpu_node({"metadata": {"labels": {"nvidia.com/gpu.present": "true"}}})
    assert is_gpu_node({"status": {"allocatable": {"nvidia.com/gpu": "8"}}})
    assert not is_gpu_node({"status": {"allocatable": {"nvidia.com/gpu": "0", "cpu": "8"}}})


def test_report_ok_only_when_every_check_passed() -> None:
    ok = CheckResult("a", Status.PASS, "fine")
    bad = CheckResult("b", Status.SKIP, "not checked: a", fix="fix a first")
    assert Report((ok,)).ok and not Report((ok, bad)).ok and not Report(()).ok
    assert Report((ok, bad)).to_dict()["counts"] == {"pass": 1, "fail": 0, "skip": 1}
    assert "fix: fix a first" in Report((ok, bad)).render_text()

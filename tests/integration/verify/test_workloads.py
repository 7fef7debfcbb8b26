"""The pure rules verify applies to API objects: DGD roles in both versions, the annotation's grammar, GPU
counts and GPU nodes. No cluster needed; hypothesis for the annotation grammar."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from powerplanner.contract import DGD_LABEL, MAX_REQUEST_WATTS, SUB_COMPONENT_LABEL, power_annotation_watts
from powerplanner.verify.result import CheckResult, Report, Status
from powerplanner.verify.workloads import (
    CAP_ANNOTATION,
    cap_annotation,
    dgd_is_ready,
    dgd_roles,
    is_gpu_node,
    pod_gpus,
    worker_pods,
)


def v1alpha1(services: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "nvidia.com/v1alpha1", "spec": {"services": services}}


def test_roles_from_sub_component_type_and_fallback_names() -> None:
    typed = dgd_roles(v1alpha1({"Frontend": {}, "A": {"subComponentType": "prefill"},
                                "B": {"subComponentType": "decode"}}))
    assert (typed.prefill, typed.decode, typed.problems) == (("A",), ("B",), ())
    named = dgd_roles(v1alpha1({"TRTLLMPrefillWorker": {}, "TRTLLMDecodeWorker": {}}))
    assert (named.prefill, named.decode) == (("TRTLLMPrefillWorker",), ("TRTLLMDecodeWorker",))


def test_roles_v1beta1_components() -> None:
    dgd = {"spec": {"components": [{"name": "fe", "type": "frontend"}, {"name": "p", "type": "prefill"},
                                   {"name": "d", "type": "decode"}]}}
    roles = dgd_roles(dgd)
    assert (roles.prefill, roles.decode) == (("p",), ("d",))


def test_roles_problems_name_what_is_wrong() -> None:
    roles = dgd_roles(v1alpha1({"P1": {"subComponentType": "prefill"}, "P2": {"subComponentType": "prefill"}}))
    assert roles.problems == ("2 prefill services (found: P1, P2); exactly one is needed",
                              "0 decode services (found: none); exactly one is needed")


def test_override_picks_the_named_service_or_none() -> None:
    dgd = v1alpha1({"P1": {"subComponentType": "prefill"}, "P2": {"subComponentType": "prefill"},
                    "D": {"subComponentType": "decode"}})
    assert dgd_roles(dgd, prefill_override="P2").prefill == ("P2",)
    assert dgd_roles(dgd, prefill_override="missing").prefill == ()


def test_ready_from_condition_or_state() -> None:
    assert dgd_is_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert not dgd_is_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}], "state": "successful"}})
    assert dgd_is_ready({"status": {"state": "successful"}})


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

"""`powerplanner verify` against the kmock emulator and a real Prometheus: a healthy installation passes
every check (exit 0), and each check is seen failing for its own reason, with a fix, while the others pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplanner.contract import POWER_LIMIT_ANNOTATION
from powerplanner.verify import CheckResult, Report, Status
from powerplanner.verify.checks import CHECK_NAMES
from powerplanner.verify.kubernetes_checks import planner_access
from tests.fixtures.k8s import PODS
from tests.integration.verify.world import AGENT_NS, DGD, NS, World, add_component_pod, as_json, only_failing, statuses


def check(report: Report, name: str) -> CheckResult:
    return next(c for c in report.checks if c.name == name)


def test_healthy_installation_passes_every_check(world: World) -> None:
    report = world.verify()
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert report.ok, report.render_text()
    budget = next(c for c in report.checks if c.name == "budget")
    assert "provisioned 1600 W <= budget 2000 W" in budget.summary
    assert any("sum of applied limits on the worker GPUs (agents) 1600 W" in d for d in budget.details)
    # One SelfSubjectAccessReview per right the planner needs, in the DGD's namespace.
    reviews = world.cluster.call(lambda: list(world.cluster.emulator.reviews))
    assert len(reviews) == len(planner_access("powerplanner-budget"))
    named = [r["spec"]["resourceAttributes"] for r in reviews if r["spec"]["resourceAttributes"].get("name")]
    assert {(a["verb"], a["resource"], a["name"]) for a in named} == {("get", "configmaps", "powerplanner-budget"),
                                                                   ("patch", "configmaps", "powerplanner-budget")}
    assert {r["spec"]["resourceAttributes"]["namespace"] for r in reviews} == {NS}


def test_cli_exit_code_and_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = world.cli("--json", capsys=capsys)
    body = as_json(out)
    assert code == 0 and body["ok"] is True and body["counts"] == {"pass": 11, "fail": 0, "skip": 0}
    world.cluster.deny("patch", "", "pods")
    code, out = world.cli(capsys=capsys)
    assert code == 1
    assert "[FAIL] rbac:" in out and "fix: install the chart with rbac.create=true" in out
    assert "10/11 checks passed" in out


def test_kubernetes_api_unreachable(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.kubeconfig import write_kubeconfig
    from tests.support.network import free_port

    dead = write_kubeconfig(tmp_path / "dead-kubeconfig", f"http://127.0.0.1:{free_port()}")
    report = world.verify(kubeconfig=str(dead))
    s = statuses(report)
    assert s["kubernetes-api"] is Status.FAIL and not report.ok
    assert all(s[n] is Status.SKIP for n in ("rbac", "dgd", "agents", "annotations", "budget"))
    # Prometheus-only checks still run: without the worker list, every GPU of the namespace is compared.
    assert s["prometheus"] is Status.PASS and s["applied-limits"] is Status.PASS
    assert s["planner"] is Status.FAIL  # its pod cannot be checked
    api = report.checks[0]
    assert api.fix and "kubeconfig" in api.fix and "cannot be reached" in api.details[0]


def test_rbac_denied_right_is_named(world: World) -> None:
    world.cluster.deny("update", "nvidia.com", "dynamographdeploymentscalingadapters", "scale")
    report = world.verify()
    assert only_failing(report) == {"rbac"}
    rbac = report.checks[1]
    assert rbac.details == ("update dynamographdeploymentscalingadapters/scale.nvidia.com in dynamo: denied "
                            "(denied by the test's policy)",)


def test_dgd_missing(world: World) -> None:
    report = world.verify(dgd="nope")
    assert {"dgd"} <= only_failing(report)
    assert statuses(report)["annotations"] is Status.SKIP and statuses(report)["budget"] is Status.SKIP
    assert "not found" in report.checks[2].summary


def test_dgd_with_two_prefill_services(world: World) -> None:
    world.cluster.patch("nvidia.com/v1alpha1/dynamographdeployments", NS, DGD, {"spec": {"services": {
        "ExtraPrefill": {"componentType": "worker", "subComponentType": "prefill", "replicas": 1}}}})
    report = world.verify()
    assert only_failing(report) == {"dgd"} | {"annotations", "budget"} - {"annotations", "budget"}
    assert "2 prefill services" in report.checks[2].details[0]


def test_dgd_is_read_as_the_planner_reads_it(world: World) -> None:
    """One reader (powerplanner.kube.dgd) for verify and the planner: a typed service wins over an untyped
    fallback name (not "2 prefill services"), and ``state: Successful`` is not the operator's Ready."""
    dgds = "nvidia.com/v1alpha1/dynamographdeployments"
    world.cluster.patch(dgds, NS, DGD, {"spec": {"services": {"prefill": {"componentType": "worker", "replicas": 1}}}})
    dgd = check(world.verify(), "dgd")
    assert dgd.status is Status.PASS and "prefill=VllmPrefillWorker, decode=VllmDecodeWorker, Ready" in dgd.summary
    world.cluster.patch(dgds, NS, DGD, {"status": {"conditions": None, "state": "Successful"}})
    dgd = check(world.verify(), "dgd")
    assert dgd.status is Status.PASS and "not Ready: state='Successful', no Ready condition" in dgd.summary


def test_dgd_v1beta1_is_understood(world: World) -> None:
    world.cluster.delete("nvidia.com/v1alpha1/dynamographdeployments", NS, DGD)
    world.cluster.add_dgd_v1beta1(name=DGD, namespace=NS)
    report = world.verify()
    assert report.ok, report.render_text()
    assert "nvidia.com/v1beta1" in report.checks[2].summary


def test_prometheus_unreachable(world: World) -> None:
    from tests.support.network import free_port

    report = world.verify(prometheus_url=f"http://127.0.0.1:{free_port()}")
    s = statuses(report)
    assert s["prometheus"] is Status.FAIL
    assert s["frontend-metrics"] is Status.SKIP and s["applied-limits"] is Status.SKIP
    assert s["planner"] is Status.FAIL  # its metrics cannot be checked
    assert s["budget"] is Status.PASS  # bounded from the annotations alone


def test_frontend_metrics_missing_label(world: World) -> None:
    world.state.frontend_labels = {"model": "llama-70b"}  # no dynamo_namespace
    world.publish()
    report = world.verify()
    assert only_failing(report) == {"frontend-metrics"}
    assert any("lack the label(s) dynamo_namespace" in d for d in report.checks[4].details)


def test_frontend_metrics_absent(world: World) -> None:
    world.state.frontend = False
    world.publish()
    report = world.verify()
    assert only_failing(report) == {"frontend-metrics"}
    assert "dynamo_frontend_requests_total: no series" in report.checks[4].details


def test_planner_pod_not_ready(world: World) -> None:
    world.cluster.delete(PODS, AGENT_NS, "pp-powerplanner-planner-0")
    add_component_pod(world.cluster, "pp-powerplanner-planner-1", "planner", "cpu-node", ready=False)
    report = world.verify()
    assert only_failing(report) == {"planner"}, report.render_text()
    assert any("no Ready planner pod" in d for d in report.checks[5].details)


def test_planner_metrics_absent(world: World) -> None:
    world.state.planner_budget_watts = None
    world.publish()
    report = world.verify()
    assert only_failing(report) == {"planner"}
    assert any("the planner's /metrics is not scraped" in d for d in report.checks[5].details)


def test_planner_metrics_stale(world: World) -> None:
    world.state.planner_timestamp_offset_s = 200.0  # exported with a timestamp 200 s in the past
    world.state.planner_labels = {"series": "stale"}
    world.publish()
    report = world.verify(max_age_s=60.0)
    assert only_failing(report) == {"planner"}
    assert any("stale" in d for d in report.checks[5].details), report.checks[5]


def test_planner_not_ticking(world: World) -> None:
    world.state.planner_ticking = False
    world.publish()
    report = world.verify()
    assert only_failing(report) == {"planner"}
    assert any("has not ticked" in d for d in report.checks[5].details)


def test_gpu_node_without_agent(world: World) -> None:
    world.cluster.delete(PODS, AGENT_NS, "pp-powerplanner-agent-node-b")
    report = world.verify()
    assert only_failing(report) == {"agents"}
    assert report.checks[6].details == ("no ready agent on node-b",)


def test_worker_pod_without_annotation(world: World) -> None:
    world.cluster.patch(PODS, NS, "llm-decode-1", {"metadata": {"annotations": {
        POWER_LIMIT_ANNOTATION: None}}})
    report = world.verify()
    assert only_failing(report) == {"annotations", "budget"}
    assert check(report, "annotations").details == ("decode pod llm-decode-1: no annotation",)


def test_worker_pod_with_invalid_annotation(world: World) -> None:
    world.cluster.patch(PODS, NS, "llm-prefill-0", {"metadata": {"annotations": {
        POWER_LIMIT_ANNOTATION: "250.5"}}})
    report = world.verify()
    assert "annotations" in only_failing(report)
    assert "'250.5' is not an integer of watts" in check(report, "annotations").details[0]


def test_applied_limit_differs_from_requested(world: World) -> None:
    world.state.gpus[0].applied_watts = 700.0  # e.g. NVML refused the change
    world.publish()
    report = world.verify()
    assert only_failing(report) == {"applied-limits"}
    detail = check(report, "applied-limits").details[0]
    assert "requested 300.0 W, applied 700 W" in detail and "llm-prefill-0" in detail


def test_agent_metrics_missing(world: World) -> None:
    world.state.gpus = []
    world.publish()
    report = world.verify()
    assert only_failing(report) == {"agent-series"}
    assert statuses(report)["applied-limits"] is Status.SKIP  # not failed twice for the same cause
    series = check(report, "agent-series")
    assert series.summary.startswith("no agent series in Prometheus") and "does not scrape the agents" in series.summary
    assert series.fix and "metrics.podMonitor.enabled" in series.fix


def test_relabelled_agent_series_are_named_with_the_fix(world: World) -> None:
    """What Prometheus keeps when a monitor without honorLabels writes its own pod_name/pod_namespace."""
    world.state.agent_pod_label, world.state.agent_namespace_label = "exported_pod_name", "exported_pod_namespace"
    world.publish()
    report = world.verify()
    assert only_failing(report) == {"agent-series"}
    series = check(report, "agent-series")
    assert "agent series carry exported_pod_name / lack pod_name for 3 of 3 pod(s)" in series.summary
    assert "the monitor relabels them" in series.summary
    assert series.fix and "set honorLabels: true" in series.fix
    assert series.details[0] == "worker pods without agent series: llm-decode-0, llm-decode-1, llm-prefill-0"


def test_an_old_agents_pod_label_renamed_by_the_operator_is_named(world: World) -> None:
    world.state.agent_pod_label, world.state.agent_namespace_label = "exported_pod", "exported_namespace"
    world.publish()
    series = check(world.verify(), "agent-series")
    assert "carry exported_pod / lack pod_name" in series.summary and series.fix and "honorLabels" in series.fix


def test_agent_series_of_one_node_missing(world: World) -> None:
    world.state.gpus = [g for g in world.state.gpus if g.node != "node-b"]
    world.publish()
    report = world.verify()
    assert "agent-series" in only_failing(report)
    assert "no agent series for 1 of 3 pod(s) (llm-decode-1)" in check(report, "agent-series").summary


def test_provisioned_over_budget(world: World) -> None:
    report = world.verify(budget_watts=1500.0)
    assert only_failing(report) == {"budget"}
    assert "provisioned 1600 W is over the budget 1500 W" in check(report, "budget").summary


def test_planner_budget_lower_than_configured_wins(world: World) -> None:
    world.state.planner_budget_watts = 1200.0  # e.g. cut through the admin endpoint
    world.publish()
    report = world.verify()
    assert only_failing(report) == {"budget"}
    assert "over the budget 1200 W" in check(report, "budget").summary


def test_as_impersonates_on_every_request(world: World) -> None:
    account = "system:serviceaccount:powerplanner:pp-powerplanner-planner"
    report = world.verify(as_user=account)
    assert report.ok, report.render_text()

    def impersonated() -> list[str | None]:
        return [dict(r.headers).get("Impersonate-User") for r in world.cluster.emulator._requests]

    seen = world.cluster.call(impersonated)
    assert seen and all(h == account for h in seen)  # the fixture seeds the store directly: all are verify's


def test_config_file_supplies_namespace_dgd_prometheus_budget_and_labels(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from powerplanner.cli import main

    config = tmp_path / "pp.yaml"
    config.write_text(
        f"budget: {{watts: 2000}}\n"
        f"kubernetes: {{namespace: {NS}, dgd_name: {DGD}, kubeconfig: '{world.kubeconfig}'}}\n"
        f"prometheus: {{url: '{world.prometheus.url}', model: llama-70b, dynamo_namespace: other}}\n"
    )
    code = main(["verify", "--config", str(config), "--json"])
    body = as_json(capsys.readouterr().out)
    failing = {c["name"] for c in body["checks"] if c["status"] != "pass"}
    assert code == 1 and failing == {"frontend-metrics"}  # the config asks for dynamo_namespace=other
    detail = next(c for c in body["checks"] if c["name"] == "frontend-metrics")["details"][0]
    assert 'no series with model=llama-70b,dynamo_namespace=other' in detail


def test_bad_config_is_a_user_error_not_a_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from powerplanner.cli import main

    config = tmp_path / "bad.yaml"
    config.write_text("budget: {watts: -1}\n")
    assert main(["verify", "--config", str(config)]) == 2
    assert "budget.watts" in capsys.readouterr().err
    assert main(["verify"]) == 2
    assert "--namespace: required without --config" in capsys.readouterr().err


def test_selectors_for_renamed_releases(world: World) -> None:
    from powerplanner.errors import UserError

    report = world.verify(agent_selector="app.kubernetes.io/component=agent,team=gpu")
    assert only_failing(report) == {"agents"}  # the seeded agent pods do not carry team=gpu
    report = world.verify(planner_selector="app.kubernetes.io/component=planner")
    assert report.ok, report.render_text()
    with pytest.raises(UserError, match="--agent-selector: 'nolabel' is not key=value"):
        world.verify(agent_selector="nolabel")

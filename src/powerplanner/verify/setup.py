"""Wire a :class:`~powerplanner.verify.checks.Verifier` from the command line: config file, kubeconfig,
Prometheus. Problems the user can fix before any check can run (a bad config file, no kubeconfig) are
:class:`~powerplanner.errors.UserError`; everything else is a failing check in the report."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import kubernetes.client
import kubernetes.config

from powerplanner.config import Config, load_config
from powerplanner.errors import EndpointError, UserError
from powerplanner.live.prometheus import PrometheusClient
from powerplanner.verify.checks import Verifier
from powerplanner.verify.cluster import ClusterReader
from powerplanner.verify.state import VerifySettings


def kubernetes_client(kubeconfig: str | None, context: str | None, as_user: str | None) -> kubernetes.client.ApiClient:
    """In-cluster when running in a pod and no kubeconfig is named, else the kubeconfig (KUBECONFIG, ~/.kube)."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context,
                                               client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise EndpointError(
            f"kubeconfig: cannot load it ({exc}); pass --kubeconfig FILE (and --context), set KUBECONFIG, or run "
            "verify inside the cluster"
        ) from None
    configuration.retries = 1
    client = kubernetes.client.ApiClient(configuration)
    if as_user:
        client.set_default_header("Impersonate-User", as_user)
    return client


def parse_selector(text: str, flag: str) -> dict[str, str]:
    """``a=b,c=d`` (equality selectors only) as a dict."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag}: {part!r} is not key=value; write labels as key=value,key=value")
        out[key.strip()] = value.strip()
    if not out:
        raise UserError(f"{flag}: empty; write labels as key=value,key=value")
    return out


def build_verifier(
    *,
    namespace: str | None,
    dgd: str | None,
    config_path: Path | None,
    prometheus_url: str | None,
    kubeconfig: str | None,
    context: str | None,
    as_user: str | None,
    budget_watts: float | None,
    max_age_s: float,
    planner_selector: str | None = None,
    agent_selector: str | None = None,
) -> Verifier:
    cfg: Config | None = load_config(config_path) if config_path is not None else None
    if namespace is None and cfg is None:
        raise UserError("--namespace: required without --config; pass the namespace of the DynamoGraphDeployment")
    if budget_watts is not None and budget_watts <= 0:
        raise UserError(f"--budget: must be a positive number of watts (got {budget_watts:g})")
    settings = VerifySettings(
        namespace=namespace or (cfg.kubernetes.namespace if cfg else "default"),
        dgd_name=dgd or (cfg.kubernetes.dgd_name if cfg else "llm"),
        prometheus_url=prometheus_url or (cfg.prometheus.url if cfg else None),
        frontend=cfg.prometheus.frontend if cfg else "dynamo",
        model=cfg.prometheus.model if cfg else None,
        dynamo_namespace=cfg.prometheus.dynamo_namespace if cfg else None,
        budget_watts=budget_watts if budget_watts is not None else (cfg.budget.watts if cfg else None),
        prefill_service=cfg.kubernetes.prefill_service if cfg else None,
        decode_service=cfg.kubernetes.decode_service if cfg else None,
        resource_name=cfg.agent.resource_name if cfg else "nvidia.com/gpu",
        budget_configmap=cfg.budget.admin.state_configmap if cfg else "powerplanner-budget",
        max_age_s=max_age_s,
    )
    if planner_selector is not None:
        selector = parse_selector(planner_selector, "--planner-selector")
        settings = dataclasses.replace(settings, planner_selector=selector)
    if agent_selector is not None:
        settings = dataclasses.replace(settings, agent_selector=parse_selector(agent_selector, "--agent-selector"))
    kube = kubeconfig or (cfg.kubernetes.kubeconfig if cfg else None)
    cluster = ClusterReader(kubernetes_client(kube, context, as_user))
    prometheus = None
    if settings.prometheus_url and cfg is not None:
        # the planner's own client settings (credentials, TLS, headers): verify sees what the planner sees
        prometheus = PrometheusClient.from_config(cfg.prometheus, url=settings.prometheus_url, retries=1)
    elif settings.prometheus_url:
        prometheus = PrometheusClient(settings.prometheus_url, timeout_s=5.0, retries=1, backoff_s=0.2)
    return Verifier(settings, cluster, prometheus)

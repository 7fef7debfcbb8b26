"""Render the Helm chart with Helm's own engine (helm-python-sdk, no helm binary) and parse the objects."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.repo import REPO_ROOT

CHART_DIR = REPO_ROOT / "deploy" / "helm" / "powerplanner"
RELEASE = "pp"
NAMESPACE = "dynamo"

# The value sets the acceptance asks for: the defaults plus variants that switch on every optional branch.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "monitoring": {
        "metrics": {
            "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "serviceMonitor": {"enabled": True, "interval": "10s"},
            "scrapeAnnotations": False,
        },
        "dashboard": {"namespace": "monitoring"},
    },
    "alerts": {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"},
                                              "alertLabels": {"team": "inference"}}}},
    "image-digests": {"image": {"tag": "", "digest": "sha256:" + "a" * 64},
                      "agentImage": {"digest": "sha256:" + "b" * 64}},
    "agent-privileged": {
        "agent": {"privileged": True, "runtimeClassName": "", "hostPID": True, "extraArgs": ["--dry-run"]},
    },
    "admin-token-secret": {"planner": {"admin": {"enabled": True, "token": "s3cret", "port": 8088}}},
    "ha": {"planner": {"replicas": 2}, "config": {"kubernetes": {"namespace": "inference", "dgd_name": "big"}}},
    "admin-existing-secret": {"planner": {"admin": {"enabled": True, "existingSecret": "my-token", "secretKey": "t"}}},
    "admin-exposed-tls": {
        "planner": {
            "admin": {
                "enabled": True,
                "existingSecret": "my-token",
                "expose": True,
                "allowedFrom": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                     "podSelector": {"matchLabels": {"app": "budget-controller"}}}
                ],
                "tls": {"secretName": "admin-cert"},
            }
        }
    },
    "custom-scheduling": {
        "config": {"kubernetes": {"namespace": "inference", "dgd_name": "vllm-disagg"}, "budget": {"watts": 9000}},
        "agent": {
            # Helm merges maps: null removes the default GPU label from the selector.
            "nodeSelector": {"node.kubernetes.io/instance-type": "p5.48xlarge", "nvidia.com/gpu.present": None},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                                   "values": ["NVIDIA-H100-80GB-HBM3"]}]}
                        ]
                    }
                }
            },
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}],
            "priorityClassName": "system-node-critical",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "commonLabels": {"team": "inference"},
        "fullnameOverride": "power",
    },
    "agent-only": {"planner": {"enabled": False}, "dashboard": {"enabled": False}},
}


# What every install must give (the chart has no placeholder tag): the images' tags. Merged under each value set.
IMAGE_VALUES: dict[str, Any] = {"image": {"tag": "0.1.0"}, "agentImage": {"tag": "0.1.0"}}


def with_images(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` over IMAGE_VALUES (a value set's own image settings win)."""
    return _merged(IMAGE_VALUES, values)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render_manifests(values: dict[str, Any], *, images: bool = True) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce it (Helm also validates the
    values against values.schema.json here). ``images=False`` renders without IMAGE_VALUES."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (pip install -e '.[test]')")
    with helm.Chart.load(str(CHART_DIR)) as chart:
        rendered: dict[str, str] = chart.render(with_images(values) if images else values, name=RELEASE,
                                                namespace=NAMESPACE)
    return rendered


def render_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for ``values`` (NOTES.txt excluded)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_manifests(values).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def config_of(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The parsed config file of the ConfigMap the ``component`` ("planner" or "agent") reads."""
    config_map = one(objects, "ConfigMap", f"-{component}-config")
    parsed: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return parsed


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, found {[o['metadata']['name'] for o in found]}"
    return found[0]

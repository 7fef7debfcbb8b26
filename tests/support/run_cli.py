"""What a test of `powerplanner run` from the command line writes and reads: its kubeconfig, its config
file, and its error lines (a start-up error is one clear line, never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.kubeconfig import write_kubeconfig


def kubeconfig(tmp_path: Path, server: str) -> Path:
    """``tmp_path/kubeconfig`` pointing at ``server``."""
    return write_kubeconfig(tmp_path / "kubeconfig", server)


def config(tmp_path: Path, prom_url: str, kube: Path, **extra: object) -> Path:
    """``tmp_path/cfg.yaml``: a 16 kW budget, a Prometheus that answers fast or not at all (no retries), the
    DGD ``default/llm``, metrics on a free port; ``extra`` replaces whole sections."""
    data: dict[str, object] = {
        "budget": {"watts": 16000},
        "prometheus": {"url": prom_url, "timeout_s": 0.5, "retries": 0, "model": "cli"},
        "kubernetes": {"namespace": "default", "dgd_name": "llm", "kubeconfig": str(kube)},
        "serve": {"metrics_bind": "127.0.0.1:0"},
        "planner": {"adjustment_interval_s": 30, "cap_interval_s": 5},
    }
    data.update(extra)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The non-blank lines the command wrote to stderr, which must hold no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]

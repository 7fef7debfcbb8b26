"""`powerplanner run` from the command line: start-up errors are one clear line and a non-zero exit;
`--once --dry-run` decides without touching the cluster; `--once` applies."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from powerplanner.cli import main
from tests.fixtures.k8s import CAP_ANNOTATION, EmulatedCluster
from tests.support.dynamo_frontend import LivePrometheus
from tests.support.network import free_port
from tests.support.run_cli import config, error_lines, kubeconfig

pytestmark = pytest.mark.integration


def test_json_needs_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["errors"] == [
        "--json prints one tick: add --once (the admin endpoint's GET /decision serves a running planner's)"]


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("budget:\n  watts: -1\n")
    assert main(["run", "--config", str(path), "--once"]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and "budget.watts" in lines[0]
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in error_lines(capsys)[0]


def test_unreachable_prometheus_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            cluster: EmulatedCluster) -> None:
    path = config(tmp_path, f"http://127.0.0.1:{free_port()}", kubeconfig(tmp_path, cluster.url))
    assert main(["run", "--config", str(path), "--once"]) == 3
    lines = error_lines(capsys)
    assert len(lines) == 1 and "prometheus.url" in lines[0] and "unreachable" in lines[0]


def test_unreachable_kubernetes_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            live_prometheus: LivePrometheus) -> None:
    path = config(tmp_path, live_prometheus.server.url, kubeconfig(tmp_path, f"http://127.0.0.1:{free_port()}"))
    assert main(["run", "--config", str(path), "--once"]) == 3
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: kubernetes:")


def test_missing_dgd_and_bad_kubeconfig(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        live_prometheus: LivePrometheus, cluster: EmulatedCluster) -> None:
    path = config(tmp_path, live_prometheus.server.url, kubeconfig(tmp_path, cluster.url))
    assert main(["run", "--config", str(path), "--once"]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and "kubernetes.dgd_name" in lines[0]
    broken = tmp_path / "broken-kubeconfig"
    broken.write_text("not: [a kubeconfig")
    path = config(tmp_path, live_prometheus.server.url, broken)
    assert main(["run", "--config", str(path), "--once"]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and "kubernetes.kubeconfig" in lines[0]


def test_once_dry_run_touches_nothing_and_once_applies(tmp_path: Path, live_prometheus: LivePrometheus,
                                                       cluster: EmulatedCluster,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("powerplanner.planning.planner", reason="the planner core (issue 3) is not in this tree yet")
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1)
    cluster.reconcile()
    path = config(tmp_path, live_prometheus.server.url, kubeconfig(tmp_path, cluster.url))
    capsys.readouterr()
    assert main(["run", "--config", str(path), "--once", "--dry-run", "--json"]) == 0
    tick = json.loads(capsys.readouterr().out)  # one JSON object on stdout, the logs on stderr
    assert tick["decision"]["prefill"]["replicas"] >= 1 and all(o["outcome"] == "dry_run" for o in tick["outcomes"])
    assert not [m for m, _p in cluster.requests() if m in ("PATCH", "POST", "PUT", "DELETE")]
    assert main(["run", "--config", str(path), "--once"]) == 0
    caps = [(p["metadata"].get("annotations") or {}).get(CAP_ANNOTATION) for p in cluster.pods("llm")]
    assert caps and all(c is not None and int(c) > 0 for c in caps)


def test_process_serves_metrics_and_stops_on_sigterm(tmp_path: Path, live_prometheus: LivePrometheus,
                                                     cluster: EmulatedCluster) -> None:
    """The real process: ticks, serves its own /metrics, and exits 0 on SIGTERM (graceful shutdown)."""
    pytest.importorskip("powerplanner.planning.planner", reason="the planner core (issue 3) is not in this tree yet")
    cluster.add_dgd_v1alpha1(prefill_replicas=1, decode_replicas=1)
    cluster.reconcile()
    port = free_port()
    path = config(tmp_path, live_prometheus.server.url, kubeconfig(tmp_path, cluster.url),
                  serve={"metrics_bind": f"127.0.0.1:{port}"},
                  planner={"adjustment_interval_s": 30, "cap_interval_s": 1})
    proc = subprocess.Popen([sys.executable, "-m", "powerplanner.cli", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        text = ""
        for _ in range(200):  # until the first decision is exported (or the process died)
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).text
                if 'powerplanner_replicas{role="decode",state="target"}' in text:  # a sample, not just # HELP
                    break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
        if 'powerplanner_replicas{role="decode",state="target"}' not in text:
            proc.kill()
            pytest.fail("no decision exported; process output:\n" + proc.communicate()[0].decode()[-3000:])
        assert 'powerplanner_replicas{role="decode",state="target"}' in text
        assert "powerplanner_tick_duration_seconds_count" in text
        assert "powerplanner_budget_watts 16000.0" in text
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out.decode()[-2000:]
        assert b"Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_admin_bind_flag_overrides_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, "http://127.0.0.1:1", tmp_path / "no-kubeconfig",
                  budget={"watts": 16000, "admin": {"enabled": True, "token": "t"}})
    assert main(["run", "--config", str(path), "--once", "--admin-bind", "pod-ip-missing"]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith("error: budget.admin.bind: 'pod-ip-missing' has no port; write host:port")

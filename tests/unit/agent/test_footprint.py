"""What the node agent's process loads: the CLI and the agent, and none of the heavy packages it never uses.

The agent runs on every GPU node with an idle memory goal of 80 MB (bench/agent_latency.py measures it;
docs/internals.md has the figures). The official ``kubernetes`` client alone is ~27 MB there (lightkube
replaces it), numpy and the planner core ~19 MB (the CLI's ``plan`` command loads them lazily)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("kubernetes", "numpy", "scipy", "matplotlib", "grpc_tools", "croniter")


def test_the_agent_process_loads_no_heavy_package() -> None:
    code = ("import sys, powerplanner.cli, powerplanner.commands.agent, powerplanner.agent.app, "
            "powerplanner.agent.nvml_backend, powerplanner.agent.sim_backend; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_shared_config_with_a_cron_schedule_loads_in_the_agent_without_croniter(tmp_path: Path) -> None:
    """One ConfigMap for both: the agent leaves the planner's budget to the planner (croniter is planner-only)."""
    path = tmp_path / "config.yaml"
    path.write_text("budget:\n  watts: 1000\n  schedule: [{cron: '0 8 * * 1-5', watts: 500}]\n"
                    "agent:\n  node_name: n1\n", encoding="utf-8")
    code = ("import sys; from powerplanner.config import load_agent_config; "
            f"print(load_agent_config({str(path)!r}).agent.node_name, 'croniter' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["n1", "False"]

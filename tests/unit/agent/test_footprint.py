"""What the node agent's process loads: the CLI and the agent, and none of the heavy packages it never uses.

The agent runs on every GPU node with an idle memory goal of 80 MB (bench/agent_latency.py measures it;
docs/internals.md has the figures). The official ``kubernetes`` client alone is ~27 MB there (lightkube
replaces it), numpy and the planner core ~19 MB (the CLI's ``plan`` command loads them lazily)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("kubernetes", "numpy", "scipy", "matplotlib", "grpc_tools")


def test_the_agent_process_loads_no_heavy_package() -> None:
    code = ("import sys, powerplanner.cli, powerplanner.commands.agent, powerplanner.agent.app, "
            "powerplanner.agent.nvml_backend, powerplanner.agent.sim_backend; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"

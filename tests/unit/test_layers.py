"""The arrows docs/architecture.md says must never exist ("Arrows that must never exist"), pinned on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "powerplanner"

FORBIDDEN: dict[str, set[str]] = {
    "model": {"planning", "kube", "sim", "live", "agent", "verify", "commands", "cli", "config", "core_settings",
              "<kubernetes>"},
    "planning": {"sim", "live", "agent", "verify", "commands", "cli", "config", "core_settings", "<kubernetes>"},
    "kube": {"planning", "sim", "live", "agent", "verify", "commands", "cli", "config", "<kubernetes>"},
    "contract": {"model", "planning", "kube", "sim", "live", "agent", "verify", "commands", "config"},
    "sim": {"live", "agent", "verify", "commands", "cli", "<kubernetes>"},
    "live": {"sim", "agent", "verify", "commands", "cli"},
    "agent": {"live", "planning", "sim", "verify", "commands", "cli", "<kubernetes>"},
    # Leaf modules the agent and the planner share: they import nothing of ours (budget_schedule: input_schema).
    "hostport": {"model", "planning", "kube", "sim", "live", "agent", "verify", "commands", "config", "<kubernetes>"},
    "retry": {"model", "planning", "kube", "sim", "live", "agent", "verify", "commands", "config", "<kubernetes>"},
    "budget_schedule": {"model", "planning", "kube", "sim", "live", "agent", "verify", "commands", "config",
                        "<kubernetes>"},
    "measure": {"live", "sim", "verify", "commands", "cli", "<kubernetes>"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "powerplanner":
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
            elif parts[0] == "kubernetes":
                found.add("<kubernetes>")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "powerplanner" and len(parts) > 1:
                    found.add(parts[1])
                elif parts[0] == "kubernetes":
                    found.add("<kubernetes>")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_arrow(package: str) -> None:
    path = SRC / package
    files = [SRC / f"{package}.py"] if not path.is_dir() else sorted(p for p in path.rglob("*.py")
                                                                      if "podresources_pb" not in p.parts)
    bad = {f"{f.relative_to(SRC)} -> {target}" for f in files for target in _imports(f) & FORBIDDEN[package]}
    assert not bad, sorted(bad)


def test_the_scan_sees_imports() -> None:
    """The scan itself: live/ imports the kubernetes client and planning/, so an empty result means a broken scan."""
    seen = set().union(*(_imports(p) for p in (SRC / "live").glob("*.py")))
    assert {"<kubernetes>", "planning", "kube", "contract"} <= seen

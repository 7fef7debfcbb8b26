"""`powerplanner plan` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from powerplanner.cli import main

OBS: dict[str, Any] = {
    "time_s": 0,
    "window_s": 60,
    "request_rate_per_s": 6.0,
    "isl_tokens": 2000,
    "osl_tokens": 300,
    "ttft_ms": 180,
    "itl_ms": 32,
    "budget_watts": 14000,
    "prefill": {"ready_replicas": 1, "applied_cap_watts": 700},
    "decode": {"ready_replicas": 4, "applied_cap_watts": 700},
}


def write(tmp_path: Path, data: Any, name: str = "obs.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_plan_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--observation", str(write(tmp_path, OBS)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "ours"
    assert out["budget_watts"] == 14000
    assert out["projected_provisioned_watts"] <= 14000
    assert set(out["predicted_attainment"]) == {"prefill", "decode"}
    assert out["steps"]
    assert {"kind", "role", "value", "provisioned_after_watts", "wait_for_drain"} <= set(out["steps"][0])
    assert all(s["provisioned_after_watts"] <= 14000 for s in out["steps"])


def test_plan_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--observation", str(write(tmp_path, OBS)), "--policy", "dynamo-power"]) == 0
    out = capsys.readouterr().out
    assert "dynamo-power" in out and "targets" in out and "reasons:" in out and "staged" in out


def test_plan_with_config_uses_its_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obs = {k: v for k, v in OBS.items() if k != "budget_watts"}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("budget:\n  watts: 9000\nplanner:\n  cap_levels: 8\n")
    assert main(["plan", "-o", str(write(tmp_path, obs)), "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["budget_watts"] == 9000


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({**OBS, "prefil": {}}, "prefil: unknown field"),
        ({**OBS, "request_rate_per_s": -1}, "request_rate_per_s: Input should be greater than or equal to 0"),
        ({k: v for k, v in OBS.items() if k != "decode"}, "decode: required field is missing"),
        ({**OBS, "prefill": {"ready_replicas": "two"}}, "prefill.ready_replicas"),
        ({k: v for k, v in OBS.items() if k != "budget_watts"}, "budget_watts is missing"),
        ("{not json", "invalid JSON"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_observation_files_are_user_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: Any, expected: str
) -> None:
    code = main(["plan", "--observation", str(write(tmp_path, payload))])
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_missing_file_and_unknown_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--observation", str(tmp_path / "nope.json")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["plan", "--observation", str(write(tmp_path, OBS)), "--policy", "greedy"]) == 2
    assert "use one of" in capsys.readouterr().err


def test_documented_example_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The example in docs/observation.md parses and plans."""
    doc = Path(__file__).resolve().parents[3] / "docs" / "observation.md"
    example = doc.read_text().split("```json", 1)[1].split("```", 1)[0]
    assert main(["plan", "--observation", str(write(tmp_path, example)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"] == "ours"

"""On --json, stdout holds exactly one JSON object, whatever happened: a result, a failed check, bad input or a
usage error (README, "Command line"). Strict JSON: no NaN or Infinity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from powerplanner.cli import main
from powerplanner.model.builtin import builtin_profiles


def only_json(capsys: pytest.CaptureFixture[str]) -> Any:
    out = capsys.readouterr().out
    return json.loads(out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))  # one object, or it raises


def test_profile_list_json_names_every_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "list", "--json"]) == 0
    listed = only_json(capsys)["profiles"]
    assert [p["name"] for p in listed] == sorted(builtin_profiles())
    assert {"gpu", "prefill_tp", "decode_tp", "source"} <= set(listed[0])


def test_profile_show_json_has_a_row_per_cap_and_role(capsys: pytest.CaptureFixture[str]) -> None:
    name = sorted(builtin_profiles())[0]
    assert main(["profile", "show", name, "--json", "--cap", "300", "--cap", "500"]) == 0
    shown = only_json(capsys)
    assert shown["name"] == name
    for role in ("prefill", "decode"):
        assert [row["cap_watts"] for row in shown["rows"][role]] == [300.0, 500.0]


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["verify", "--json"], 2, "--namespace: required without --config"),  # no kubeconfig, no config
        (["verify", "--json", "--bogus"], 2, "No such option: --bogus"),
        (["profile", "show", "no-such-profile", "--json"], 2, "no-such-profile"),
        (["plan", "--observation", "missing.json", "--json"], 2, "missing.json"),
    ],
)
def test_errors_are_json_too(argv: list[str], code: int, says: str, monkeypatch: pytest.MonkeyPatch,
                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("POWERPLANNER_CONFIG", raising=False)
    assert main(argv) == code
    error = only_json(capsys)
    assert error["ok"] is False and error["exit_code"] == code
    assert any(says in line for line in error["errors"]), error


def test_without_json_errors_stay_off_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show", "no-such-profile"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no-such-profile" in captured.err

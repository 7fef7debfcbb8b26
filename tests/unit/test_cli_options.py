"""The command line's common options: --version, shell completion, log format and level (the HTTP clients quiet
unless debug), and the POWERPLANNER_* environment variables standing in for --config and the log options."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from powerplanner import __version__
from powerplanner.cli import main
from powerplanner.commands.logs import configure_logging
from powerplanner.errors import UserError
from tests.support.logging_state import logging_restored
from tests.unit.planning.test_cli_plan import OBS


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"powerplanner {__version__}"


def test_shell_completion_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:  # typer's completion exits by itself
        main(["--show-completion", "bash"])
    assert done.value.code == 0
    assert "_powerplanner_completion" in capsys.readouterr().out


def _bare_root(level: str, log_format: str) -> tuple[logging.Logger, io.StringIO]:
    """A root of its own (pytest's capture sits on the real one), handing its lines to a buffer."""
    root = logging.Logger("root-under-test")
    configure_logging(level, log_format, root)
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    return root, out


def test_json_logs_are_one_object_per_line() -> None:
    root, out = _bare_root("info", "json")
    root.info("decision changed: %s", "scale_up")
    try:
        raise ValueError("boom")
    except ValueError:
        root.exception("tick failed")
    lines = out.getvalue().strip().splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[-1])
    assert first["message"] == "decision changed: scale_up" and first["level"] == "info"
    assert first["logger"] == "root-under-test" and first["time"].endswith("+00:00")
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


def test_text_logs_keep_their_format() -> None:
    root, out = _bare_root("warning", "text")
    root.warning("parked GPU 3")
    root.info("not shown")
    assert "WARNING root-under-test: parked GPU 3" in out.getvalue() and "not shown" not in out.getvalue()


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("debug", True)])
def test_http_client_request_lines_only_at_debug(level: str, shown: bool, caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(level, "text")
    caplog.set_level(logging.DEBUG)  # the root lets everything through: only the clients' own levels filter
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).info('HTTP Request: GET http://prometheus:9090/api/v1/query "HTTP/1.1 200 OK"')
    logging.getLogger("httpx").warning("retrying")
    assert any("HTTP Request" in r.getMessage() for r in caplog.records) is shown
    assert any(r.getMessage() == "retrying" for r in caplog.records)  # their warnings always show


@pytest.mark.parametrize("command", ["run", "agent"])
def test_an_unknown_log_format_is_one_line_and_exit_2(command: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--config", str(tmp_path / "c.yaml"), "--log-format", "xml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --log-format: unknown format 'xml'; use text or json"]


def test_log_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERPLANNER_LOG_LEVEL", "loud")
    assert main(["run", "--config", str(tmp_path / "c.yaml")]) == 2
    assert "--log-level: unknown level 'loud'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run"], ["agent"], ["verify"], ["plan", "--observation", "obs.json"]])
def test_the_config_path_comes_from_the_environment(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "from-env.yaml"
    monkeypatch.setenv("POWERPLANNER_CONFIG", str(missing))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "obs.json").write_text(json.dumps(OBS))
    assert main(command) != 0
    err = capsys.readouterr().err
    assert "from-env.yaml" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("flag", ["--budget-watts", "--budget"])
def test_verify_takes_the_budget_as_budget_watts_and_its_old_spelling(flag: str, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, Any] = {}

    def fake_build_verifier(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise UserError("stop here")

    monkeypatch.setattr("powerplanner.verify.setup.build_verifier", fake_build_verifier)
    assert main(["verify", flag, "16000"]) == 2
    assert seen["budget_watts"] == 16000.0


def test_an_old_and_a_new_spelling_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--budget-watts", "1", "--budget", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --budget is the old spelling of --budget-watts; give only " \
                                              "--budget-watts"


def test_plan_takes_observation_under_its_long_name_and_old_o(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "obs.json"
    path.write_text(json.dumps(OBS))
    assert main(["plan", "--observation", str(path), "--json"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert main(["plan", "-o", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == new
    assert main(["plan"]) == 2
    assert "give one with --observation FILE" in capsys.readouterr().err


def test_old_spellings_are_hidden_from_help(capsys: pytest.CaptureFixture[str]) -> None:
    main(["verify", "--help"])
    main(["plan", "--help"])
    out = capsys.readouterr().out
    assert "--budget-watts" in out and "--observation" in out
    assert not re.search(r"--budget\b(?!-)", out) and not re.search(r"(?<![\w-])-o\b", out)

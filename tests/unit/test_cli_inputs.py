"""Bad input files through the real ``powerplanner`` process: a non-zero exit, one line, never a traceback.

Run as a subprocess, so whatever escapes the CLI's own error handling (a RecursionError from a parser, a
MemoryError from reading ``/dev/zero``, a blocked read on a FIFO) would show here as a traceback or a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
OBSERVATION = {"prefill": {"ready_replicas": 1}, "decode": {"ready_replicas": 1}, "budget_watts": 5000}


def powerplanner(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "powerplanner.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode not in (0, None), result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def observation(tmp_path: Path) -> Path:
    path = tmp_path / "obs.json"
    path.write_text(json.dumps(OBSERVATION))
    return path


CONFIGS = {
    "duplicate-key": ("budget:\n  watts: 1000\n  watts: 99999\n", ["line 3", "duplicate key 'watts'", "line 2"]),
    "deep": ("a: " + "[" * 5000 + "]" * 5000 + "\n", ["nested more than 64 levels"]),
    "bool-watts": ("budget: {watts: true}\n", ["budget.watts", "not true/false"]),
    "tiny-cap-interval": ("budget: {watts: 1000}\nplanner: {cap_interval_s: 1e-9}\n",
                          ["planner.cap_interval_s", "greater than or equal to 0.1"]),
    "alias-bomb": ("a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7)),
        ["expands to more than"]),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bad_config_is_one_line(name: str, tmp_path: Path, observation: Path) -> None:
    text, needles = CONFIGS[name]
    config = tmp_path / "config.yaml"
    config.write_text(text)
    assert_one_line(powerplanner("plan", "-o", str(observation), "-c", str(config), cwd=tmp_path), *needles)


def test_dev_zero_and_a_fifo_are_refused_not_read(tmp_path: Path, observation: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)  # no writer: reading it would block forever
    for path in ("/dev/zero", str(fifo)):
        assert_one_line(powerplanner("plan", "-o", str(observation), "-c", path, cwd=tmp_path),
                        path, "not a regular file")


@pytest.mark.parametrize(("text", "needles"), [
    ('{"prefill":' * 3000 + "1" + "}" * 3000, ["nested more than 64 levels"]),
    ('{"prefill": {"ready_replicas": 1}, "prefill": {"ready_replicas": 9}, "decode": {"ready_replicas": 1}}',
     ["duplicate key 'prefill'"]),
])
def test_bad_observation_is_one_line(text: str, needles: list[str], tmp_path: Path) -> None:
    path = tmp_path / "obs.json"
    path.write_text(text)
    assert_one_line(powerplanner("plan", "-o", str(path), cwd=tmp_path), *needles)


def test_deep_trace_line_and_a_trace_years_long(tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"timestamp": 0, "input_length": 5, "output_length": 5, "x": ' + "[" * 5000 + "]" * 5000 + "}\n")
    assert_one_line(powerplanner("simulate", "--trace", str(deep), "--policies", "ours", "--workers", "1", "--json",
                                 "--report-dir", str(tmp_path / "r"), cwd=tmp_path), "line 1", "nested more than 64")
    years = tmp_path / "years.jsonl"
    years.write_text('{"timestamp": 0, "input_length": 100, "output_length": 10}\n'
                     '{"timestamp": 94672800000, "input_length": 100, "output_length": 10}\n')
    assert_one_line(powerplanner("simulate", "--trace", str(years), "--policies", "ours", "--workers", "1", "--json",
                                 "--report-dir", str(tmp_path / "r"), cwd=tmp_path),
                    "3.0 years apart", "--compress-gaps-s", "--duration-s")

"""The config model: defaults, and one clear line per problem for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplanner.cli import main
from powerplanner.config import load_config
from powerplanner.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "budget:\n  watts: 12000\n"))
    assert cfg.budget.watts == 12000
    assert cfg.budget.mode == "provisioned"
    assert cfg.planner.cap_interval_s <= cfg.planner.adjustment_interval_s
    assert cfg.agent.allowed_namespaces == []  # no namespace: the chart sets the DGD's
    assert cfg.agent.park is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("budget:\n  watts: abc\n", "budget.watts"),
        ("budget:\n  watts: -5\n", "budget.watts"),
        ("budget:\n  watts: .nan\n", "budget.watts"),
        ("budget: {watts: 100}\nplanner:\n  prefil: {min_replicas: 1}\n", "planner.prefil: unknown field"),
        ("budget: {watts: 100}\nplanner:\n  decode: {min_replicas: 5, max_replicas: 2}\n", "planner.decode"),
        ("budget: {watts: 100}\nsla:\n  ttft_ms: [1]\n", "sla.ttft_ms"),
        ("budget:\n  watts: 100\n  schedule: [{start: '25:00', watts: 3}]\n", "budget.schedule[0].start"),
        ("sla: {ttft_ms: 100}\n", "budget: required field is missing"),
        ("- just\n- a list\n", "YAML mapping"),
        ("budget: {watts: 100\n", "invalid YAML"),
        ("budget:\n  watts: 100\n  admin: {enabled: true}\n", "bearer token"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert any(expected in line for line in info.value.lines), info.value.lines
    assert all("\n" not in line for line in info.value.lines)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert len(info.value.lines) == 1
    assert "not found" in info.value.lines[0]


def test_every_problem_reported_once(tmp_path: Path) -> None:
    text = "budget: {watts: -1}\nsla: {ttft_ms: 0, itl_ms: x}\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    paths = sorted(line.split(": ")[1] for line in info.value.lines)
    assert paths == ["budget.watts", "sla.itl_ms", "sla.ttft_ms"]


def test_cli_user_error_exits_nonzero_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["plan"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_agent_only_file_needs_no_budget(tmp_path: Path) -> None:
    from powerplanner.config import load_agent_config

    cfg = load_agent_config(write(tmp_path, "agent:\n  node_name: gpu-1\n  park: true\n"))
    assert cfg.agent.node_name == "gpu-1"
    assert cfg.agent.park is True


def test_agent_file_still_validates_its_own_section(tmp_path: Path) -> None:
    from powerplanner.config import load_agent_config

    with pytest.raises(ConfigError) as info:
        load_agent_config(write(tmp_path, "agent:\n  floor_watts: 500\n  ceiling_watts: 300\n"))
    assert info.value.lines == (f"{tmp_path / 'cfg.yaml'}: agent: agent.floor_watts must be <= agent.ceiling_watts",)


@pytest.mark.parametrize("key", ["agnet", "Agent", "budgett"])
def test_agent_file_refuses_an_unknown_section_naming_it_and_the_known_ones(tmp_path: Path, key: str) -> None:
    from powerplanner.config import Config, load_agent_config

    path = write(tmp_path, f"{key}: {{park: false}}\nagent: {{node_name: gpu-1}}\n")
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    (line,) = info.value.lines
    assert line.startswith(f"{path}: {key}: unknown section")
    assert all(section in line for section in Config.model_fields)  # the known sections, from the planner's model


def test_agent_file_accepts_the_planners_sections_unvalidated(tmp_path: Path) -> None:
    """One ConfigMap for both: the planner validates its sections, the agent reads its own and refuses typos."""
    from powerplanner.config import Config, load_agent_config

    planner_sections = "".join(f"{name}: {{}}\n" for name in Config.model_fields if name not in ("agent", "kubernetes"))
    cfg = load_agent_config(write(tmp_path, planner_sections + "agent: {node_name: gpu-1, park: false}\n"))
    assert cfg.agent.node_name == "gpu-1" and cfg.agent.park is False


def test_agent_cli_refuses_an_unknown_section_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["agent", "--config", str(write(tmp_path, "agnet: {park: true}\n"))])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert "agnet: unknown section" in err and "the known sections are agent, budget" in err


@pytest.mark.parametrize(("text", "expected"), [
    ("budget: {watts: true}\n", "budget.watts: must be a number, not true/false (got True)"),
    ("budget: {watts: '5000'}\n", "budget.watts: must be a number, not text (write it without quotes)"),
    ("budget: {watts: 100}\nplanner: {cap_levels: 8.0}\n", "planner.cap_levels: must be an integer (a whole number"),
    ("budget: {watts: 100}\nplanner: {prefill: {max_replicas: false}}\n", "must be an integer, not true/false"),
    ("budget: {watts: 100}\nplanner: {static_caps_watts: {decode: true}}\n", "static_caps_watts.decode: must be"),
    ("budget: {watts: 100}\nagent: {dry_run: 1}\n", "agent.dry_run"),
])
def test_booleans_are_never_numbers_and_numbers_never_booleans(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert len(info.value.lines) == 1 and expected in info.value.lines[0], info.value.lines


def test_yaml_1_2_exponents_are_numbers(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "budget: {watts: 1.6e4}\n")).budget.watts == 16000.0


@pytest.mark.parametrize(("section", "field", "low", "high"), [
    ("planner", "cap_interval_s", 0.1, 3600),
    ("planner", "adjustment_interval_s", 1, 86400),
    ("prometheus", "timeout_s", 0.1, 300),
    ("prometheus", "backoff_s", 0, 60),
    ("prometheus", "window_s", 1, 86400),
    ("agent", "resync_s", 0.5, 3600),
    ("agent", "kubelet_timeout_s", 0.1, 60),
])
def test_intervals_have_a_floor_and_a_ceiling(tmp_path: Path, section: str, field: str, low: float,
                                              high: float) -> None:
    def load(value: float) -> object:
        extra = {("planner", "cap_interval_s"): ", adjustment_interval_s: 86400",
                 ("planner", "adjustment_interval_s"): ", cap_interval_s: 0.1"}.get((section, field), "")
        return load_config(write(tmp_path, f"budget: {{watts: 100}}\n{section}: {{{field}: {value!r}{extra}}}\n"))

    load(low)
    load(high)
    for bad in (low * 0.99 if low else -0.001, high * 1.01, 1e-9 if low else -1e-9):
        with pytest.raises(ConfigError) as info:
            load(bad)
        assert len(info.value.lines) == 1 and f"{section}.{field}" in info.value.lines[0]

"""No Docker engine runs here, so the Dockerfiles are checked statically: every path they copy exists, the
entry point is the installed `powerplanner` script, each default command is a registered sub-command, the
planner image drops root and the agent image keeps it (NVML writes need it), and the Helm chart's args match."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import typer.main

from powerplanner.cli import build_app
from tests.support.repo import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "deploy" / "docker"
IMAGES = {"Dockerfile": ("run", "65532:65532"), "Dockerfile.agent": ("agent", "0:0")}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile_references_existing_paths_and_commands(name: str) -> None:
    subcommand, user = IMAGES[name]
    steps = instructions(DOCKER_DIR / name)
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]  # one base, pinnable by digest (a build ARG)
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in steps
    for word, args in steps:
        if word == "COPY" and "--from=" not in args:
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"{name}: COPY {source} does not exist in the repository"
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = [args for word, args in steps if word == "ENTRYPOINT"]
    assert entry == ['["powerplanner"]'] and "powerplanner" in scripts
    cmd = [args for word, args in steps if word == "CMD"][-1]
    assert cmd == f'["{subcommand}", "--config", "/etc/powerplanner/config.yaml"]'
    registered = typer.main.get_command(build_app()).commands  # type: ignore[attr-defined]
    assert subcommand in registered
    assert [args for word, args in steps if word == "USER"][-1] == user
    ignore = DOCKER_DIR / f"{name}.dockerignore"
    assert ignore.exists(), "BuildKit reads <Dockerfile>.dockerignore; without it the whole tree is sent"


def test_agent_image_expects_nvml_from_the_host_driver() -> None:
    text = (DOCKER_DIR / "Dockerfile.agent").read_text()
    assert "NVIDIA_DRIVER_CAPABILITIES=utility" in text and "NVIDIA_VISIBLE_DEVICES=all" in text
    assert "libnvidia-ml" in text  # the explanation of where NVML comes from
    assert not re.search(r"^\s*(RUN|COPY).*libnvidia-ml", text, re.MULTILINE), "never bundle the driver library"

"""`powerplanner profile measure` through the real nvidia-ml-py against the fake NVML, driving a fake
OpenAI-compatible server whose speed and draw follow the fake GPU's limit (tests/support/openai_server.py):
it recovers the fake GPU's curve, and the original limit is back however the sweep ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from powerplanner.agent.nvml_backend import NvmlBackend
from powerplanner.cli import main
from powerplanner.measure.load import LoadResult
from powerplanner.measure.sweep import CapSweep
from powerplanner.model.builtin import builtin_profiles
from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import Role
from tests.fixtures.nvml import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NO_PERMISSION,
    FakeGpu,
    FakeNvml,
    FakeState,
    make_uuid,
)
from tests.support.network import free_port
from tests.support.openai_server import FakeGpuTruth, FakeOpenAiServer
from tests.support.repo import REPO_ROOT
from tests.support.run_cli import error_lines

pytestmark = pytest.mark.integration
BASE = "llama2-70b-h100-tp2"
ORIGINAL_WATTS = 650.0
GRID = (200.0, 300.0, 400.0, 500.0, 600.0, 700.0)
LOAD = ["--levels", "6", "--isl", "64", "--osl", "16", "--concurrency", "4", "--requests", "8", "--idle-s", "0.5"]


def truth() -> FakeGpuTruth:
    """A GPU unlike the base profile: natural draw 560 W (base: 700 prefill, 380 decode), other shares."""
    base = builtin_profiles()[BASE]
    return FakeGpuTruth(prefill=replace(base.prefill_caps, natural_draw_watts=560.0, compute_share=0.6),
                        decode=replace(base.decode_caps, natural_draw_watts=560.0, compute_share=0.3),
                        natural_watts=560.0, idle_watts=75.0, ttft_s=0.3)  # ~10 ms of HTTP on TTFT: 3%


@pytest.fixture()
def gpu(fake_nvml: FakeNvml) -> FakeNvml:
    fake_nvml.write(FakeState(gpus=(FakeGpu(uuid=make_uuid(0), limit_mw=int(ORIGINAL_WATTS * 1000)),)))
    return fake_nvml


@pytest.fixture()
def server(gpu: FakeNvml) -> Iterator[FakeOpenAiServer]:
    with FakeOpenAiServer(gpu, truth()) as running:
        yield running


def measure(server: FakeOpenAiServer, *extra: str) -> int:
    return main(["profile", "measure", "--endpoint", server.url, "--base", BASE, *LOAD, *extra])


def test_the_sweep_recovers_the_fake_gpus_curve_and_restores_the_limit(
    fake_nvml_in_process: FakeNvml, server: FakeOpenAiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "measured.yaml"
    assert measure(server, "-o", str(out), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert fake_nvml_in_process.limits_watts() == [ORIGINAL_WATTS]
    assert [mw for _, mw in fake_nvml_in_process.set_calls()] == [*(int(c * 1000) for c in GRID), 650_000]
    points = report["points"]
    assert [p["cap_watts"] for p in points] == list(GRID)
    fake = truth()
    top = points[-1]
    for p in points:  # the measured points themselves: slowdowns and draw as the fake GPU has them
        cap = p["cap_watts"]
        assert p["ttft_ms"] / top["ttft_ms"] == pytest.approx(fake.prefill.slowdown(cap), rel=0.05)
        assert p["itl_ms"] / top["itl_ms"] == pytest.approx(fake.decode.slowdown(cap), rel=0.05)
        assert p["draw_watts"] == pytest.approx(min(cap, fake.natural_watts), rel=0.05)
    learned = load_profile(path=str(out))  # the written profile loads, and its curves are the fake GPU's
    for role, model in ((Role.PREFILL, fake.prefill), (Role.DECODE, fake.decode)):
        fitted = learned.cap_model(role)
        assert fitted.natural_draw_watts == pytest.approx(fake.natural_watts, rel=0.05)
        for cap in range(200, 701, 25):
            assert fitted.slowdown(cap) == pytest.approx(model.slowdown(cap), rel=0.05), (role, cap)


def test_dry_run_only_reads(fake_nvml_in_process: FakeNvml, server: FakeOpenAiServer,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert measure(server, "--dry-run", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["caps_watts"], plan["gpus"][0]["limit_watts"], plan["model"]) == (list(GRID), ORIGINAL_WATTS,
                                                                                   "fake-llm")
    assert fake_nvml_in_process.set_calls() == [] and server.requests == 0


def test_an_nvml_error_mid_sweep_restores_the_limit_and_says_so_in_one_line(
    fake_nvml_in_process: FakeNvml, server: FakeOpenAiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def lose_the_energy_counter(n: int) -> None:
        if n == 10:  # the second cap's second request
            fake_nvml_in_process.inject_error("nvmlDeviceGetTotalEnergyConsumption", 0, NVML_ERROR_GPU_IS_LOST)

    server.on_request = lose_the_energy_counter
    assert measure(server, "-o", str(tmp_path / "x.yaml")) == 3
    lines = [line for line in error_lines(capsys) if not line.startswith("cap ")]  # not the progress lines
    assert len(lines) == 1 and "mid-sweep" in lines[0]
    assert fake_nvml_in_process.limits_watts() == [ORIGINAL_WATTS]
    assert [mw for _, mw in fake_nvml_in_process.set_calls()] == [200_000, 300_000, 650_000]
    assert not (tmp_path / "x.yaml").exists()


def test_keyboard_interrupt_from_a_hook_restores_every_gpus_limit(fake_nvml_in_process: FakeNvml) -> None:
    """A TP 2 worker's two GPUs, capped alike, each back at its own original limit."""
    fake_nvml_in_process.write(FakeState(gpus=(FakeGpu(uuid=make_uuid(0), limit_mw=650_000),
                                               FakeGpu(uuid=make_uuid(1), limit_mw=700_000))))

    def interrupt(index: int, cap: float) -> None:
        if index == 2:
            raise KeyboardInterrupt

    backend = NvmlBackend.open()
    try:
        load = LoadResult(1, 0.1, 0.01, 10, 0.2, 0.2)
        sweep = CapSweep(backend, backend.gpus(), lambda: load, on_cap=interrupt)
        with pytest.raises(KeyboardInterrupt):
            sweep.run(GRID)
    finally:
        backend.close()
    assert fake_nvml_in_process.limits_watts() == [650.0, 700.0]
    sets = fake_nvml_in_process.set_calls()
    assert sets[:6] == [(0, 200_000), (1, 200_000), (0, 300_000), (1, 300_000), (0, 400_000), (1, 400_000)]
    assert sorted(sets[6:]) == [(0, 650_000), (1, 700_000)]


def test_ctrl_c_mid_sweep_restores_the_limit(server: FakeOpenAiServer, gpu: FakeNvml, tmp_path: Path) -> None:
    env = {**gpu.env(), "PYTHONPATH": str(REPO_ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", "import sys; from powerplanner.cli import main; sys.exit(main(sys.argv[1:]))",
           "profile", "measure", "--endpoint", server.url, "--base", BASE, *LOAD, "-o", str(tmp_path / "x.yaml")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(3000):  # until the second cap is set (a poll, not a timing assert)
            if len(gpu.set_calls()) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    assert gpu.limits_watts() == [ORIGINAL_WATTS]
    assert gpu.set_calls()[-1] == (0, 650_000)


def test_no_permission_is_one_line_and_changes_nothing(
    fake_nvml_in_process: FakeNvml, server: FakeOpenAiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_nvml_in_process.inject_error("nvmlDeviceSetPowerManagementLimit", 0, NVML_ERROR_NO_PERMISSION)
    assert measure(server, "-o", str(tmp_path / "x.yaml")) == 3
    lines = [line for line in error_lines(capsys) if not line.startswith("cap ")]  # not the progress lines
    assert len(lines) == 1 and "CAP_SYS_ADMIN" in lines[0] and "--dry-run" in lines[0]
    assert fake_nvml_in_process.limits_watts() == [ORIGINAL_WATTS] and fake_nvml_in_process.set_calls() == []


def test_no_nvml_is_one_line(fake_nvml_in_process: FakeNvml, server: FakeOpenAiServer, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_NVML_STATE", str(tmp_path / "no-driver"))  # the fake's "driver not loaded"
    assert measure(server, "--dry-run") == 3
    lines = [line for line in error_lines(capsys) if not line.startswith("cap ")]  # not the progress lines
    assert len(lines) == 1 and "NVML" in lines[0]


def test_an_endpoint_that_is_gone_restores_the_limit_and_says_so_in_one_line(
    fake_nvml_in_process: FakeNvml, gpu: FakeNvml, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    rc = main(["profile", "measure", "--endpoint", gone, "--model", "m", "--base", BASE, *LOAD,
               "-o", str(tmp_path / "x.yaml")])
    assert rc == 3
    lines = [line for line in error_lines(capsys) if not line.startswith("cap ")]
    assert len(lines) == 1 and gone in lines[0] and "endpoint" in lines[0]
    assert gpu.limits_watts() == [ORIGINAL_WATTS] and gpu.set_calls() == [(0, 200_000), (0, 650_000)]


def test_chat_completions_and_the_human_report(fake_nvml_in_process: FakeNvml, server: FakeOpenAiServer,
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.yaml"
    rc = main(["profile", "measure", "--endpoint", server.url, "--base", BASE, "--chat", "--caps", "300,700",
               "--isl", "8", "--osl", "4", "--concurrency", "2", "--requests", "2", "--idle-s", "0.2",
               "--role", "decode", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "cap sweep" in text and "restored the limits (GPU 0 650 W)" in text and "idle draw" in text
    measured = load_profile(path=str(out))
    base = builtin_profiles()[BASE]
    assert measured.prefill_caps == base.prefill_caps  # --role decode: prefill's cap model stays the base's
    assert measured.decode_caps != base.decode_caps
    assert fake_nvml_in_process.limits_watts() == [ORIGINAL_WATTS]


def test_a_gpu_outside_the_bases_range_is_refused_before_anything_is_set(
    fake_nvml_in_process: FakeNvml, server: FakeOpenAiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_nvml_in_process.write(FakeState(gpus=(FakeGpu(uuid=make_uuid(0), min_mw=100_000, max_mw=400_000,
                                                       default_mw=400_000, limit_mw=400_000),)))
    assert measure(server, "-o", str(tmp_path / "x.yaml")) == 3
    lines = error_lines(capsys)
    assert len(lines) == 1 and "--base" in lines[0] and "100" in lines[0]
    assert fake_nvml_in_process.set_calls() == [] and server.requests == 0

"""The built-in H100 profiles against Splitwise's measurements (../shared/data/calibration/splitwise_perf_model.csv).

prompt_time is the prefill of the whole batch (prompt_size x batch_size tokens); token_time is one decode
iteration of the batch, compared at the mean context over the generation (prompt_size + token_size / 2).
The h100-80gb-pcap rows are Splitwise's model of a 50% cap (350 W per GPU).
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from powerplanner.model.profiles import load_profile

CSV_PATH = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "calibration" / "splitwise_perf_model.csv"
HALF_CAP_WATTS = 350.0


def _rows(hardware: str) -> list[dict[str, str]]:
    if not CSV_PATH.exists():
        pytest.skip(f"calibration data not found at {CSV_PATH} (the shared/ folder beside the repository)")
    with CSV_PATH.open(newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["model"] == "llama2-70b" and r["hardware"] == hardware]


def _median_errors(hardware: str, cap_watts: float) -> tuple[float, float]:
    prompt_err: list[float] = []
    token_err: list[float] = []
    profiles = {tp: load_profile(f"llama2-70b-h100-tp{tp}") for tp in (2, 4, 8)}
    for row in _rows(hardware):
        profile = profiles[int(row["tensor_parallel"])]
        prompt, batch, out = float(row["prompt_size"]), float(row["batch_size"]), float(row["token_size"])
        predicted_prompt_ms = profile.prefill_time_s(prompt * batch, cap_watts) * 1000.0
        predicted_token_ms = profile.decode_itl_s(batch, prompt + out / 2.0, cap_watts) * 1000.0
        prompt_err.append(abs(predicted_prompt_ms / float(row["prompt_time"]) - 1.0))
        token_err.append(abs(predicted_token_ms / float(row["token_time"]) - 1.0))
    assert len(prompt_err) == 3 * 105
    return statistics.median(prompt_err), statistics.median(token_err)


def test_uncapped_h100_rows_within_15_percent() -> None:
    prompt, token = _median_errors("h100-80gb", 700.0)
    assert prompt <= 0.15, f"median prompt_time error {prompt:.3f}"
    assert token <= 0.15, f"median token_time error {token:.3f}"


def test_half_cap_rows_within_15_percent() -> None:
    prompt, token = _median_errors("h100-80gb-pcap", HALF_CAP_WATTS)
    assert prompt <= 0.15, f"median prompt_time error at 350 W {prompt:.3f}"
    assert token <= 0.15, f"median token_time error at 350 W {token:.3f}"


def test_half_cap_reproduces_splitwise_ratios() -> None:
    """Splitwise models a 50% cap as prompt x1.30, token x1.00; the cap model should agree closely."""
    profile = load_profile("llama2-70b-h100-tp4")
    prompt_ratio = profile.prefill_time_s(2048, HALF_CAP_WATTS) / profile.prefill_time_s(2048, 700.0)
    token_ratio = profile.decode_itl_s(16, 1024, HALF_CAP_WATTS) / profile.decode_itl_s(16, 1024, 700.0)
    assert prompt_ratio == pytest.approx(1.30, abs=0.02)
    assert token_ratio == pytest.approx(1.00, abs=0.02)


def main() -> None:
    """Print the calibration medians (``python -m tests.unit.model.test_calibration``)."""
    for hardware, cap in (("h100-80gb", 700.0), ("h100-80gb-pcap", HALF_CAP_WATTS)):
        prompt, token = _median_errors(hardware, cap)
        print(f"{hardware} @ {cap:g} W: median relative error prompt_time {prompt:.4f}, token_time {token:.4f}")


if __name__ == "__main__":
    main()

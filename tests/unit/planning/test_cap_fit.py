"""The sweep fit (planning/cap_fit.py): on noise-free points from a random GPU it recovers the natural draw and
each role's compute share; with noise, the fitted curve stays within the noise; and the written profile loads."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplanner.errors import ProfileError
from powerplanner.model.builtin import builtin_profiles
from powerplanner.model.profile_format import document_from_profile, profile_from_document
from powerplanner.planning.cap_fit import SweepPoint, fit_role, fit_sweep, measured_profile, natural_draw
from powerplanner.planning.cap_fit import with_natural as natural_of

BASE = builtin_profiles()["llama2-70b-h100-tp2"]
CAPS = (200.0, 300.0, 400.0, 500.0, 600.0, 700.0)


def points(natural: float, p_share: float, d_share: float, ttft_s: float, itl_s: float,
           noise: tuple[float, ...] = (0.0,) * 6) -> list[SweepPoint]:
    pre = replace(natural_of(BASE.prefill_caps, natural), compute_share=p_share)
    dec = replace(natural_of(BASE.decode_caps, natural), compute_share=d_share)
    return [SweepPoint(c, ttft_s * pre.slowdown(c) * (1 + n), itl_s * dec.slowdown(c) * (1 - n), min(c, natural))
            for c, n in zip(CAPS, noise, strict=True)]


@settings(max_examples=60, deadline=None)
@given(natural=st.floats(260.0, 680.0), p_share=st.floats(0.0, 1.0), d_share=st.floats(0.0, 1.0),
       ttft_s=st.floats(0.01, 2.0), itl_s=st.floats(0.005, 0.2))
def test_noise_free_points_give_back_the_gpu(natural: float, p_share: float, d_share: float, ttft_s: float,
                                             itl_s: float) -> None:
    fit = fit_sweep(BASE, points(natural, p_share, d_share, ttft_s, itl_s))
    assert fit.natural_observed and fit.natural_draw_watts == pytest.approx(natural, rel=1e-9)
    assert fit.prefill.compute_share == pytest.approx(p_share, abs=1e-6)
    assert fit.decode.compute_share == pytest.approx(d_share, abs=1e-6)
    assert fit.prefill.uncapped_s == pytest.approx(ttft_s, rel=1e-6)
    assert fit.decode.uncapped_s == pytest.approx(itl_s, rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(natural=st.floats(300.0, 650.0), p_share=st.floats(0.3, 1.0), noise=st.lists(
    st.floats(-0.02, 0.02), min_size=6, max_size=6))
def test_with_two_percent_noise_the_fitted_curve_is_within_five_percent(natural: float, p_share: float,
                                                                       noise: list[float]) -> None:
    fit = fit_sweep(BASE, points(natural, p_share, 0.2, 0.3, 0.02, tuple(noise)))
    true = replace(natural_of(BASE.prefill_caps, natural), compute_share=p_share)
    fitted = replace(natural_of(BASE.prefill_caps, fit.natural_draw_watts), compute_share=fit.prefill.compute_share)
    for cap in range(200, 701, 50):
        assert fitted.slowdown(cap) == pytest.approx(true.slowdown(cap), rel=0.05)


def test_every_cap_bound_makes_the_natural_draw_a_lower_bound() -> None:
    bound = [SweepPoint(c, 1.0, 1.0, c) for c in (200.0, 450.0)]
    assert natural_draw(bound, BASE.prefill_caps) == (700.0, False)  # the base's 700 W is above 450 W


def test_too_few_or_bad_points_are_user_errors() -> None:
    with pytest.raises(ProfileError, match="at least two caps"):
        fit_role(BASE.prefill_caps, [700.0], [0.1])
    with pytest.raises(ProfileError, match="not positive"):
        fit_role(BASE.prefill_caps, [300.0, 700.0], [0.1, 0.0])


def test_the_measured_profile_keeps_the_latency_and_round_trips() -> None:
    fit = fit_sweep(BASE, points(560.0, 0.6, 0.3, 0.3, 0.02))
    only_prefill = measured_profile(BASE, fit, "sweep", roles=(BASE.prefill_caps.role,))
    assert only_prefill.decode_caps == BASE.decode_caps and only_prefill.prefill == BASE.prefill
    assert only_prefill.prefill_caps.natural_draw_watts == pytest.approx(560.0)
    both = measured_profile(BASE, fit, "sweep")
    again = profile_from_document(document_from_profile(both), "measured.yaml")
    assert again.decode_caps.compute_share == pytest.approx(0.3, abs=1e-6)
    assert again.prefill_caps.natural_draw_watts == pytest.approx(560.0)

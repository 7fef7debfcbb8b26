"""The examples in docs/profile-format.md are real, valid profiles."""

from __future__ import annotations

import pytest
import yaml

from powerplanner.model.profile_format import profile_from_document
from powerplanner.model.profiles import load_profile
from powerplanner.model.roles import Role
from tests.support.repo import DOCS, yaml_blocks

DOC = DOCS / "profile-format.md"


def _yaml_blocks() -> list[str]:
    return yaml_blocks(DOC)


def test_doc_has_examples() -> None:
    assert len(_yaml_blocks()) >= 2


@pytest.mark.parametrize("index", range(2))
def test_doc_examples_validate(index: int) -> None:
    profile = profile_from_document(yaml.safe_load(_yaml_blocks()[index]), f"docs example {index}")
    assert profile.prefill_time_s(2048, profile.gpu.max_limit_watts) > 0
    assert profile.decode_throughput_tokens_per_s_per_gpu(2048, profile.gpu.max_limit_watts) > 0


def test_first_example_matches_the_builtin() -> None:
    example = profile_from_document(yaml.safe_load(_yaml_blocks()[0]), "docs example")
    builtin = load_profile("llama2-70b-h100-tp4")
    for cap in (250.0, 350.0, 700.0):
        assert example.prefill_time_s(4096, cap) == pytest.approx(builtin.prefill_time_s(4096, cap))
        assert example.decode_itl_s(32, 2048, cap) == pytest.approx(builtin.decode_itl_s(32, 2048, cap))
        assert example.draw_watts(Role.DECODE, cap, 1.0) == builtin.draw_watts(Role.DECODE, cap, 1.0)
    assert example.max_batch(2048) == builtin.max_batch(2048)

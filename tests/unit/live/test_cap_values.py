"""What the actuator writes on a pod: the cap annotation's value and the patch that carries its revision."""

from __future__ import annotations

import pytest

from powerplanner import contract
from powerplanner.live.actuator import cap_annotation_value, cap_patch


def test_cap_annotation_is_a_positive_integer_rounded_down() -> None:
    assert cap_annotation_value(412.9) == "412"
    assert cap_annotation_value(400.0) == "400"
    assert cap_annotation_value(399.9999999999) == "400"  # float noise, not a real fraction
    with pytest.raises(ValueError):
        cap_annotation_value(0.5)


def test_cap_patch_writes_the_next_revision() -> None:
    first = cap_patch("400", None)["metadata"]["annotations"]
    assert first == {contract.POWER_LIMIT_ANNOTATION: "400", contract.REVISION_ANNOTATION: "1"}
    again = cap_patch("380", {contract.REVISION_ANNOTATION: "41"})["metadata"]["annotations"]
    assert again[contract.REVISION_ANNOTATION] == "42"

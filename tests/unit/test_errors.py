"""The shared pydantic-error lines: every validated input names the field path, the problem and the fix."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from powerplanner.errors import field_path, validation_lines


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    watts: float = Field(gt=0)

    @field_validator("watts")
    @classmethod
    def _round(cls, value: float) -> float:
        if value != round(value):
            raise ValueError("must be whole watts")
        return value


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[_Item]
    name: str


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Doc.model_validate(data)
    return info.value


def test_field_path_reads_like_the_file() -> None:
    assert field_path(("items", 1, "watts")) == "items[1].watts"
    assert field_path(()) == "(top level)"
    assert field_path((), top="body") == "body"


def test_one_line_per_problem_naming_path_problem_and_value() -> None:
    lines = validation_lines(_error({"items": [{"watts": -1}, {"watts": 1.5, "colour": 1}]}), "f.yaml")
    assert lines == [
        "f.yaml: items[0].watts: Input should be greater than 0 (got -1)",
        "f.yaml: items[1].watts: must be whole watts (got 1.5)",
        "f.yaml: items[1].colour: unknown field (check the spelling; see docs/configuration.md)",
        "f.yaml: name: required field is missing",
    ]


def test_each_caller_names_its_own_docs() -> None:
    lines = validation_lines(_error({"items": [], "nme": "x"}), "p.yaml", docs="docs/profile-format.md",
                             missing_hint=" (see docs/profile-format.md)")
    assert lines == [
        "p.yaml: name: required field is missing (see docs/profile-format.md)",
        "p.yaml: nme: unknown field (check the spelling; see docs/profile-format.md)",
    ]


def test_field_path_quotes_keys_the_path_syntax_cannot_show() -> None:
    assert field_path(("agent", "b\nc")) == "agent['b\\nc']"
    assert field_path(("", "a.b", "x y")) == "['']['a.b']['x y']"
    assert field_path(("static_caps_watts", "foo", "[key]")) == "static_caps_watts.foo"


def test_a_user_error_line_never_holds_a_line_break() -> None:
    from powerplanner.errors import UserError

    assert UserError("a\nb\x1b[31m", "ok").lines == ("a\\nb\\x1b[31m", "ok")

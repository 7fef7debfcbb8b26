"""The registries behind docs tables: the GPU table (model/gpu.py) and the policy registry (planning/registry.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from powerplanner.errors import ProfileError
from powerplanner.model.builtin import default_cap_model
from powerplanner.model.gpu import gpu_by_name, gpu_catalog, gpu_record, gpu_records
from powerplanner.model.roles import ROLES

TOOL = Path(__file__).resolve().parents[2] / "tools" / "gen_doc_tables.py"


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_doc_tables", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_doc_tables", module)
    spec.loader.exec_module(module)
    return module


def test_the_docs_show_the_tables_as_generated() -> None:
    for table in _tool().tables():
        page = table.page.read_text(encoding="utf-8")
        assert table.render(page) == page, f"{table.page.name} is stale: run python tools/gen_doc_tables.py"


def test_every_policy_builds_and_only_the_oracle_sees_the_true_load() -> None:
    from powerplanner.config import config_from_mapping
    from powerplanner.model.profiles import load_profile
    from powerplanner.planning.planner import make_planner
    from powerplanner.planning.registry import policy_entry, policy_names, policy_registry

    config = config_from_mapping({"budget": {"watts": 20_000}}, "test")
    profile = load_profile(name=config.profile.name)
    for entry in policy_registry():
        planner = make_planner(config, profile, entry.name)
        assert planner.policy_name == entry.name
        assert planner.receives_oracle_load == entry.receives_oracle_load
        assert entry.description
    assert [e.name for e in policy_registry() if e.receives_oracle_load] == ["oracle"]
    assert len(set(policy_names())) == len(policy_names())
    with pytest.raises(ValueError, match="use one of: ours, static"):
        policy_entry("nope")


@pytest.mark.parametrize("record", gpu_records(), ids=lambda r: r.name)
def test_every_record_gives_both_roles_a_cap_model_within_its_limits(record) -> None:  # type: ignore[no-untyped-def]
    for role in ROLES:
        model = default_cap_model(record.name, role)
        power = record.power(role)
        assert model.min_limit_watts == record.spec.min_limit_watts
        assert model.max_limit_watts == record.spec.max_limit_watts
        assert model.natural_draw_watts == power.natural_draw_watts
        assert record.spec.idle_watts < power.natural_draw_watts <= record.spec.max_limit_watts
        assert power.source


def test_names_and_aliases_resolve_to_one_record_each() -> None:
    seen: dict[str, str] = {}
    for record in gpu_records():
        for key in (record.name.lower(), *record.aliases):
            assert key == key.lower()
            assert seen.setdefault(key, record.name) == record.name, f"{key} names two GPUs"
            assert gpu_record(key.upper()).name == record.name
    assert set(gpu_catalog()) == {r.name for r in gpu_records()}


def test_an_unknown_gpu_lists_the_table() -> None:
    with pytest.raises(ProfileError) as info:
        gpu_by_name("B200")
    line = info.value.lines[0]
    for record in gpu_records():
        assert record.name in line

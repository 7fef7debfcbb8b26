"""docs/configuration.md is generated from the config model; a stale committed copy fails here."""

from __future__ import annotations

from types import ModuleType

from tests.support.repo import REPO_ROOT, load_script


def _generator() -> ModuleType:
    return load_script("tools/gen_config_docs.py")


def test_committed_configuration_reference_matches_the_model() -> None:
    generated = _generator().render()
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == generated, "docs/configuration.md is stale: run `python tools/gen_config_docs.py`"


def test_reference_names_every_field_of_every_section() -> None:
    from powerplanner.config import Config

    text = _generator().render()
    for section_name, field in Config.model_fields.items():
        assert f"| `{section_name}` |" in text
        model = field.annotation
        for name in getattr(model, "model_fields", {}):
            assert f"| `{name}` |" in text, f"{section_name}.{name} missing from the reference"


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    module = _generator()
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n")
    monkeypatch.setattr(module, "DOC_PATH", stale)
    assert module.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert module.main([]) == 0 and module.main(["--check"]) == 0

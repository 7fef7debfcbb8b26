"""The repository around the tests: its root, its scripts as modules, the examples in its docs.

Tests that pin a generated file (docs/configuration.md, the docs tables, the Grafana dashboard) import the
generator script itself; tests of docs/ pages read their fenced examples.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"


def load_script(relative_path: str) -> ModuleType:
    """A script of the repository (tools/, deploy/grafana/: not packages) imported as a module named after its
    file. It is registered in ``sys.modules`` before it runs: a dataclass in it looks its module up there."""
    path = REPO_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    return module


def yaml_blocks(doc_path: Path) -> list[str]:
    """The fenced ```yaml examples of a markdown page, in order."""
    return re.findall(r"```yaml\n(.*?)```", doc_path.read_text(encoding="utf-8"), flags=re.S)

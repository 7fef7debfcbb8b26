"""Reading profiles from files: the only I/O in ``model/``.

Two kinds of input (docs/profile-format.md describes both):

- our own format, a YAML (or JSON) document ``format: powerplanner-profile/v1`` with the power dimension,
  built by :mod:`powerplanner.model.profile_format`;
- Dynamo's profiler output, which has no power axis: ``selected_prefill_interpolation/raw_data.npz`` and
  ``selected_decode_interpolation/raw_data.npz``, or their JSON twins ``prefill_raw_data.json`` /
  ``decode_raw_data.json``, built by :mod:`powerplanner.model.dynamo_format` with the named GPU's default cap
  model.

This module finds and reads the files (through :mod:`powerplanner.input_files`, the one safe reader) and hands
the parsed data to those pure builders; every problem becomes one :class:`~powerplanner.errors.ProfileError`
line naming the file and the fix.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from powerplanner.errors import ProfileError
from powerplanner.input_files import read_json, read_yaml
from powerplanner.model.capped import CappedProfile
from powerplanner.model.dynamo_format import profile_from_dynamo
from powerplanner.model.profile_format import profile_from_document

PREFILL_NPZ = Path("selected_prefill_interpolation") / "raw_data.npz"
DECODE_NPZ = Path("selected_decode_interpolation") / "raw_data.npz"
PREFILL_JSON = "prefill_raw_data.json"
DECODE_JSON = "decode_raw_data.json"


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: np.asarray(archive[key]) for key in archive.files}
    except FileNotFoundError:
        raise ProfileError(f"{path}: file not found; check the path") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProfileError(
            f"{path}: not a readable .npz archive (truncated or corrupt: {reason}); regenerate it with the profiler"
        ) from None


def _read_json(path: Path) -> Any:
    return read_json(path, ProfileError, not_found="file not found; check the path", what="profile")


def _read_yaml(path: Path) -> Any:
    return read_yaml(path, ProfileError, not_found="file not found; check the path", what="profile",
                     empty_is_mapping=False)


def _read_arrays(path: Path) -> dict[str, Any]:
    data = _read_npz(path) if path.suffix == ".npz" else _read_json(path)
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping of arrays at the top level; regenerate it with the profiler")
    return data


def _dynamo_pair(path: Path) -> tuple[Path, Path]:
    """The prefill and decode raw-data files of a Dynamo profiler output, given its directory or one file."""
    if path.is_dir():
        candidates = [(path / PREFILL_NPZ, path / DECODE_NPZ), (path / PREFILL_JSON, path / DECODE_JSON)]
        for pre, dec in candidates:
            if pre.exists() or dec.exists():
                return pre, dec
        raise ProfileError(
            f"{path}: no Dynamo profiler output here (looked for {PREFILL_NPZ} and {DECODE_NPZ}, or "
            f"{PREFILL_JSON} and {DECODE_JSON}); point at the profiler's output directory"
        )
    if path.name == "raw_data.npz":
        root = path.parent.parent
        return root / PREFILL_NPZ, root / DECODE_NPZ
    if path.name in (PREFILL_JSON, DECODE_JSON):
        return path.parent / PREFILL_JSON, path.parent / DECODE_JSON
    return path, path  # one file holding both halves


def load_profile_path(path: str, gpu: str | None = None) -> CappedProfile:
    """A profile from our YAML/JSON format or from Dynamo's profiler output (directory, npz or JSON)."""
    p = Path(path)
    if not p.exists():
        raise ProfileError(f"{p}: no such file or directory; give a profile file (.yaml, .npz, .json) or a Dynamo "
                           "profiler output directory")
    if p.is_file() and p.suffix in (".yaml", ".yml"):
        return profile_from_document(_read_yaml(p), str(p))
    if p.is_file() and p.suffix == ".json":
        data = _read_json(p)
        if isinstance(data, dict) and "format" in data:
            return profile_from_document(data, str(p))
    if p.is_file() and p.suffix not in (".npz", ".json"):
        raise ProfileError(f"{p}: unknown profile file type {p.suffix!r}; use .yaml/.yml (our format), .npz or .json "
                           "(Dynamo's profiler output)")
    pre_path, dec_path = _dynamo_pair(p)
    pre = _read_arrays(pre_path) if pre_path.exists() else None
    dec = pre if dec_path == pre_path else (_read_arrays(dec_path) if dec_path.exists() else None)
    if pre is None or dec is None:
        absent = pre_path if pre is None else dec_path
        raise ProfileError(f"{absent}: file not found; a Dynamo profile needs both the prefill and the decode raw data")
    name = f"dynamo:{(p if p.is_dir() else pre_path.parent.parent if p.name == 'raw_data.npz' else p.parent).name}"
    return profile_from_dynamo(pre, dec, gpu, name, str(pre_path), str(dec_path))


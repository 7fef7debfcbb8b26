"""Python stubs for the kubelet PodResources API, generated from ``proto/api.proto`` at first use.

Why generate at run time: generated code is version-coupled to protobuf/grpcio and is never committed
(``_generated/`` is git-ignored). ``grpc_tools.protoc`` runs once per proto content into a cache directory
(``$POWERPLANNER_CACHE_DIR``, else ``$XDG_CACHE_HOME/powerplanner``, else ``~/.cache/powerplanner``, else
the temp directory, whichever is writable). The proto is compiled under a unique file name so that its
descriptors cannot collide with another package's ``api.proto`` in protobuf's global pool; the package
(``v1``) and the service name (``v1.PodResourcesLister``) stay the kubelet's.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PROTO_PATH = Path(__file__).parent / "proto" / "api.proto"
_STEM = "powerplanner_podresources_v1"


@dataclass(frozen=True)
class PodResourcesStubs:
    """The generated message module (``pb2``) and service module (``pb2_grpc``)."""

    pb2: ModuleType
    pb2_grpc: ModuleType


def _cache_roots() -> list[Path]:
    roots = []
    if os.environ.get("POWERPLANNER_CACHE_DIR"):
        roots.append(Path(os.environ["POWERPLANNER_CACHE_DIR"]))
    if os.environ.get("XDG_CACHE_HOME"):
        roots.append(Path(os.environ["XDG_CACHE_HOME"]) / "powerplanner")
    roots.append(Path.home() / ".cache" / "powerplanner")
    roots.append(Path(tempfile.gettempdir()) / f"powerplanner-{os.getuid()}")
    return roots


def _generate(target: Path) -> None:
    from grpc_tools import protoc  # heavy; only needed on the first run

    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        shutil.copyfile(PROTO_PATH, staging / f"{_STEM}.proto")
        rc = protoc.main(
            ["protoc", f"-I{staging}", f"--python_out={staging}", f"--grpc_python_out={staging}", f"{_STEM}.proto"]
        )
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({rc}) on {PROTO_PATH}")
        try:
            staging.rename(target)
        except OSError:
            if not (target / f"{_STEM}_pb2_grpc.py").exists():  # not a concurrent winner: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def stub_directory() -> Path:
    """The directory holding generated stubs for the current proto, generating them if needed."""
    import grpc_tools

    key = hashlib.sha256(PROTO_PATH.read_bytes() + grpc_tools.__file__.encode()).hexdigest()[:16]
    errors = []
    for root in _cache_roots():
        target = root / f"podresources-{key}"
        if (target / f"{_STEM}_pb2_grpc.py").exists():
            return target
        try:
            root.mkdir(parents=True, exist_ok=True)
            _generate(target)
            return target
        except OSError as exc:
            errors.append(f"{root}: {exc}")
    raise RuntimeError("cannot write PodResources stubs to any cache directory: " + "; ".join(errors))


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load generated module {path}")
    module = importlib.util.module_from_spec(spec)
    # The grpc module imports the message module by this name, so it must be registered first.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def load_podresources_stubs() -> PodResourcesStubs:
    """Generate (once per proto content) and import the PodResources stubs; cached for the process."""
    directory = stub_directory()
    pb2 = sys.modules.get(f"{_STEM}_pb2") or _load_module(f"{_STEM}_pb2", directory / f"{_STEM}_pb2.py")
    pb2_grpc = sys.modules.get(f"{_STEM}_pb2_grpc") or _load_module(
        f"{_STEM}_pb2_grpc", directory / f"{_STEM}_pb2_grpc.py"
    )
    return PodResourcesStubs(pb2=pb2, pb2_grpc=pb2_grpc)

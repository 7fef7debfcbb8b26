"""The kubelet PodResources API's Python stubs, shipped in the package (``agent/podresources_pb/``).

Why shipped and not generated at start: the agent image carries no protoc (grpcio-tools) and writes
nothing at start-up; the stubs are generated from ``proto/api.proto`` by ``tools/gen_podresources_stubs.py``
and committed, and a test regenerates them and compares bytes (docs/internals.md, "agent/: the node power
agent"). The generated code needs grpcio and protobuf at least as new as the generator's (the ``agent`` extra
sets both floors).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PROTO_PATH = Path(__file__).parent / "proto" / "api.proto"


@dataclass(frozen=True)
class PodResourcesStubs:
    """The generated message module (``pb2``) and service module (``pb2_grpc``)."""

    pb2: ModuleType
    pb2_grpc: ModuleType


@functools.cache
def load_podresources_stubs() -> PodResourcesStubs:
    """Import the shipped stubs (grpcio and protobuf are imported here, not when the agent package is)."""
    from powerplanner.agent.podresources_pb import api_pb2, api_pb2_grpc

    return PodResourcesStubs(pb2=api_pb2, pb2_grpc=api_pb2_grpc)

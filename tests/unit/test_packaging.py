"""pyproject's runtime floors are what the committed generated code needs to import."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from tests.infra import REPO

PROTOBUF_CHECK = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),"
)
GRPC_CHECK = re.compile(r"GRPC_GENERATED_VERSION = '([\d.]+)'")


def _floor(name: str) -> Version:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (requirement,) = [r for r in map(Requirement, project["dependencies"]) if r.name == name]
    (floor,) = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return floor


def _needed(pattern: re.Pattern[str], glob: str) -> Version:
    found = {
        Version(".".join(match)) if isinstance(match, tuple) else Version(match)
        for path in (REPO / "proto" / "docaxis").rglob(glob)
        for match in pattern.findall(path.read_text(encoding="utf-8"))
    }
    assert found, glob
    return max(found)


def test_the_protobuf_floor_is_the_runtime_the_generated_code_checks_for() -> None:
    """An install at the floor must import every *_pb2 module (they refuse older runtimes)."""
    assert _floor("protobuf") == _needed(PROTOBUF_CHECK, "*_pb2.py")


def test_the_grpcio_floor_is_the_version_the_generated_stubs_check_for() -> None:
    """*_pb2_grpc modules refuse a grpcio older than the grpcio-tools that wrote them."""
    assert _floor("grpcio") == _needed(GRPC_CHECK, "*_pb2_grpc.py")

"""`make check` refuses a wrong-way import and a breaking proto change (and lets a compatible
addition through): run on a copy of the tree with the violation planted."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra import REPO

COPIED = ("Makefile", "pyproject.toml", "constraints.txt", "services", "gateway", "docaxis_client")
COMMON_PROTO = Path("proto/docaxis/common/v1/common.proto")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sources, the protos and the release image, beside this checkout's virtualenv."""
    root = tmp_path_factory.mktemp("tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    shutil.copytree(REPO / "proto", root / "proto", ignore=ignore)
    (root / "docs").mkdir()
    shutil.copy2(REPO / "docs" / "proto-v1.binpb", root / "docs")
    (root / ".venv").symlink_to(REPO / ".venv")
    return root


def _make(tree: Path, target: str) -> subprocess.CompletedProcess[str]:
    # -o: the virtualenv is this checkout's; never rebuild it from the copy.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", target],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _planted(path: Path, line: str) -> str:
    original = path.read_text(encoding="utf-8")
    path.write_text(original + line, encoding="utf-8")
    return original


def test_the_unchanged_tree_passes(tree: Path) -> None:
    for target in ("imports", "proto-lint"):
        result = _make(tree, target)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "services/exchange/domain/model.py",
            "from services.exchange.adapters import postgres as _wrong_way  # noqa\n",
            "layered",
        ),
        (
            # Entrypoints reach transports through ports (wired in services/bootstrap).
            "services/exchange/entrypoints/relay.py",
            "from services.exchange.adapters import rabbit as _wrong_way  # noqa\n",
            "layered",
        ),
        (
            "services/exchange/service_layer/routing.py",
            "from services.directory.domain import model as _wrong_way  # noqa\n",
            "directory through its own port",
        ),
        ("gateway/config.py", "import services.settings as _wrong_way  # noqa\n", "gateway"),
    ],
    ids=[
        "domain-imports-an-adapter",
        "entrypoint-imports-an-adapter",
        "exchange-reaches-into-the-directory",
        "gateway-imports-services",
    ],
)
def test_a_wrong_way_import_fails_the_check(
    tree: Path, module: str, line: str, contract: str
) -> None:
    path = tree / module
    original = _planted(path, line)
    try:
        result = _make(tree, "imports")
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode != 0
    assert "Broken contracts" in result.stdout, result.stdout + result.stderr
    assert contract in result.stdout.split("Broken contracts", 1)[1]


@pytest.mark.parametrize(
    ("change", "passes"),
    [
        (lambda text: text + "\nmessage ReleaseCheckAddition {\n  string note = 1;\n}\n", True),
        (lambda text: text.replace("  string number = 1;", "  string number = 99;", 1), False),
        (lambda text: text.replace("  string number = 1;", "  int64 number = 1;", 1), False),
    ],
    ids=["a-new-message-passes", "a-renumbered-field-fails", "a-retyped-field-fails"],
)
def test_buf_breaking_holds_the_protos_to_the_last_release(
    tree: Path, change: Callable[[str], str], passes: bool
) -> None:
    path = tree / COMMON_PROTO
    original = path.read_text(encoding="utf-8")
    changed = change(original)
    assert changed != original
    path.write_text(changed, encoding="utf-8")
    try:
        result = _make(tree, "proto-lint")
    finally:
        path.write_text(original, encoding="utf-8")
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    if not passes:
        assert "common.proto" in result.stdout + result.stderr


def test_no_function_is_exempt_from_the_complexity_limit() -> None:
    exempt = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("services", "gateway", "docaxis_client", "benchmarks", "tests", "deploy")
        for path in (REPO / folder).rglob("*.py")
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "noqa: C" + "901" in text  # split: this line is no exemption itself
    ]
    assert exempt == []


def test_a_function_past_the_complexity_limit_fails_the_check(tree: Path) -> None:
    branches = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(13))
    path = tree / "services" / "common" / "errors.py"
    original = _planted(path, f"\n\ndef _too_complex(x: int) -> int:\n{branches}    return -1\n")
    try:
        result = _make(tree, "lint")
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode != 0
    assert "C901" in result.stdout, result.stdout + result.stderr

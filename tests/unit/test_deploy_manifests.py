"""The deployment manifests in deploy/ are valid, and the validator `make check` runs on them
(deploy/check_manifests.py) fails on a planted error of each kind of manifest."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
sys.path.insert(0, str(DEPLOY))
import check_manifests  # noqa: E402  # deploy/ is not a package: a script beside the manifests


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("secrets", "local"))
    return copy


def test_the_manifests_in_the_repository_are_valid() -> None:
    assert check_manifests.check(DEPLOY) == []


def plant(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


PLANTED: dict[str, tuple[Callable[[Path], None], str]] = {
    # A misspelt key: Compose would ignore it silently; the spec's schema refuses it.
    "compose": (
        lambda d: plant(d / "compose.yaml", "    restart: unless-stopped", "    restrat: no"),
        "restrat",
    ),
    # Back to root at the end of the image: hadolint's DL3002.
    "Dockerfile": (lambda d: plant(d / "Dockerfile", "USER 10001:10001", "USER root"), "DL3002"),
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_a_planted_error_fails_the_check_and_is_named(kind: str, deploy_copy: Path) -> None:
    assert check_manifests.check(deploy_copy, (kind,)) == []
    planting, mentioned = PLANTED[kind]
    planting(deploy_copy)
    problems = check_manifests.check(deploy_copy, (kind,))
    assert problems
    assert any(mentioned in problem for problem in problems), problems


def test_the_command_exits_non_zero_on_a_broken_copy(deploy_copy: Path) -> None:
    plant(deploy_copy / "compose.yaml", "    restart: unless-stopped", "    restrat: no")
    script = deploy_copy / "check_manifests.py"
    failed = subprocess.run(
        [sys.executable, str(script), str(deploy_copy)], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1, failed.stderr
    assert "restrat" in failed.stderr


def test_make_secrets_creates_every_file_compose_mounts(tmp_path: Path) -> None:
    """compose.yaml's secrets and env file are exactly what deploy/compose/make-secrets.sh makes
    (demo PKI, ledger key, passwords), so `docker compose up` finds them all."""
    secrets = tmp_path / "secrets"
    subprocess.run(
        ["bash", str(DEPLOY / "compose" / "make-secrets.sh"), str(secrets)],
        check=True,
        capture_output=True,
        env={"DOCAXIS": str(Path(sys.executable).parent / "docaxis"), "PATH": "/usr/bin:/bin"},
    )
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    mounted = [entry["file"] for entry in compose["secrets"].values()]
    mounted += compose["x-docaxis"]["env_file"]
    for path in mounted:
        assert path.startswith("secrets/"), path
        assert (secrets / path.removeprefix("secrets/")).is_file(), path
    urls = (secrets / "urls.env").read_text(encoding="utf-8")
    assert re.search(r"^DOCAXIS_DATABASE_URL=postgresql://docaxis:\w+@", urls, re.M)
    assert "target_session_attrs=read-write" in urls
    assert re.search(r"^DOCAXIS_AMQP_URL=amqp://docaxis:\w+@rabbitmq-1:5672/$", urls, re.M)

"""The deployment manifests in deploy/ are valid, and the validator `make check` runs on them
(deploy/check_manifests.py) fails on a planted error of each kind of manifest."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from gateway.config import PREFIX, GatewaySettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
sys.path.insert(0, str(DEPLOY))
import check_manifests  # noqa: E402  # deploy/ is not a package: a script beside the manifests


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("secrets", "local"))
    return copy


SETTING = re.compile(r"DOCAXIS_[A-Z0-9_]+")
# Names the manifests define for their own scripts, not settings of docaxis: the compose
# Postgres init script's password file, and what the witness unit passes on its command line.
OWN_NAMES = {
    "DOCAXIS_DB_PASSWORD_FILE",
    "DOCAXIS_WITNESS_ADDRESS",
    "DOCAXIS_WITNESS_LOG_ORIGIN",
    "DOCAXIS_WITNESS_LOG_VKEY",
}


def settings_the_code_reads() -> set[str]:
    services = {
        name
        for path in (REPO / "services").rglob("*.py")
        for name in re.findall(r"[\"'](DOCAXIS_[A-Z0-9_]+)[\"']", path.read_text(encoding="utf-8"))
    }
    return services | {PREFIX + field.name.upper() for field in fields(GatewaySettings)}


def test_every_setting_the_manifests_name_is_one_the_code_reads() -> None:
    """A misspelt variable is ignored by docaxis, silently: the manifests may only use the names
    services/settings.py (and the other readers) and gateway/config.py read."""
    manifests = [
        DEPLOY / "compose.yaml",
        *DEPLOY.glob("compose/**/*"),
        *DEPLOY.glob("kubernetes/**/*.yaml"),
    ]
    manifests += [*DEPLOY.glob("systemd/*")]
    used = {
        name
        for path in manifests
        if path.is_file()
        for name in SETTING.findall(path.read_text(encoding="utf-8"))
    }
    assert used
    assert used - OWN_NAMES <= settings_the_code_reads(), sorted(
        used - OWN_NAMES - settings_the_code_reads()
    )
    witness_unit = (DEPLOY / "systemd" / "docaxis-witness.service").read_text(encoding="utf-8")
    assert all(f"${{{name}}}" in witness_unit for name in OWN_NAMES if "WITNESS" in name)


def test_the_manifests_in_the_repository_are_valid() -> None:
    assert check_manifests.check(DEPLOY) == []


def plant(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


KUBERNETES = Path("kubernetes") / "base"
# (the kind of manifest, how to break it, what the problem names)
PLANTED: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # A misspelt key: Compose would ignore it silently; the spec's schema refuses it.
    "compose": (
        "compose",
        lambda d: plant(d / "compose.yaml", "    restart: unless-stopped", "    restrat: no"),
        "restrat",
    ),
    # Back to root at the end of the image: hadolint's DL3002.
    "Dockerfile": (
        "Dockerfile",
        lambda d: plant(d / "Dockerfile", "USER 10001:10001", "USER root"),
        "DL3002",
    ),
    # A Deployment field Kubernetes would prune: the strict built-in schema refuses it.
    "Deployment": (
        "Kubernetes",
        lambda d: plant(d / KUBERNETES / "docaxis.yaml", "  replicas: 2\n", "  replica: 2\n"),
        "'replica' was unexpected",
    ),
    # The operators' resources, against the vendored CRD schemas.
    "RabbitmqCluster": (
        "Kubernetes",
        lambda d: plant(d / KUBERNETES / "rabbitmq.yaml", "  replicas: 3", '  replicas: "3"'),
        "RabbitmqCluster/docaxis-rabbitmq: spec.replicas",
    ),
    "CloudNativePG Cluster": (
        "Kubernetes",
        lambda d: plant(d / KUBERNETES / "postgres.yaml", "        inRoles:", "        memberOf:"),
        "'memberOf' was unexpected",
    ),
    # systemd ignores a misspelt hardening option with a warning; the check does not.
    "systemd unknown option": (
        "systemd",
        lambda d: plant(d / "systemd" / "docaxis.service", "ProtectSystem=", "ProtectSytem="),
        "Unknown key 'ProtectSytem'",
    ),
    "systemd program": (
        "systemd",
        lambda d: plant(
            d / "systemd" / "docaxis-gateway.service",
            "ExecStart=/opt/docaxis/bin/python",
            "ExecStart=python",
        ),
        "is not executable",
    ),
    # An overlay kustomize cannot render (its base misnamed).
    "kustomize": (
        "Kubernetes",
        lambda d: plant(
            d / "kubernetes" / "overlays" / "production" / "kustomization.yaml",
            "  - ../../base",
            "  - ../../basis",
        ),
        "kubernetes/overlays/production: kustomize",
    ),
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_a_planted_error_fails_the_check_and_is_named(planted: str, deploy_copy: Path) -> None:
    kind, planting, mentioned = PLANTED[planted]
    planting(deploy_copy)  # in a copy of what test_the_manifests_in_the_repository_are_valid checks
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


def test_make_secrets_creates_every_file_compose_and_the_demo_overlay_read(tmp_path: Path) -> None:
    """compose.yaml's secrets and env file, and the demo overlay's generators, read what
    deploy/compose/make-secrets.sh makes (demo PKI, ledger key, passwords)."""
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
    # The Kubernetes demo overlay reads the same files from its own secrets folder.
    demo = DEPLOY / "kubernetes" / "overlays" / "demo"
    for path in check_manifests.generated_files(demo):
        assert (secrets / path.relative_to(demo / "secrets")).is_file(), path
    urls = (secrets / "urls.env").read_text(encoding="utf-8")
    assert re.search(r"^DOCAXIS_DATABASE_URL=postgresql://docaxis:\w+@", urls, re.M)
    assert "target_session_attrs=read-write" in urls
    (amqp,) = re.findall(r"^DOCAXIS_AMQP_URL=(.*)$", urls, re.M)
    nodes = [
        re.fullmatch(r"amqp://docaxis:\w+@(rabbitmq-\d):5672/", url) for url in amqp.split(",")
    ]
    assert [node.group(1) if node else None for node in nodes] == [
        "rabbitmq-1",
        "rabbitmq-2",
        "rabbitmq-3",
    ]


def test_prometheus_and_grafana_point_at_what_compose_runs() -> None:
    """The scrape targets are compose services on the ports they serve; Grafana's data source
    is the compose Prometheus and its dashboards folder is where docaxis.json is mounted."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    prometheus = yaml.safe_load(
        (DEPLOY / "compose" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    )
    targets = {
        target
        for job in prometheus["scrape_configs"]
        for config in job["static_configs"]
        for target in config["targets"]
    }
    assert "gateway:9464" in targets
    gateway_metrics = services["gateway"]["environment"]["DOCAXIS_GATEWAY_METRICS_ADDRESS"]
    assert gateway_metrics.endswith(":9464")
    for target in targets:
        host = target.rsplit(":", 1)[0]
        assert host == "localhost" or host in services, target
    grafana = services["grafana"]
    datasources = yaml.safe_load(
        (DEPLOY / "compose" / "grafana" / "datasources.yaml").read_text(encoding="utf-8")
    )
    (source,) = datasources["datasources"]
    assert (source["url"], source["type"]) == ("http://prometheus:9090", "prometheus")
    providers = yaml.safe_load(
        (DEPLOY / "compose" / "grafana" / "dashboards.yaml").read_text(encoding="utf-8")
    )
    (provider,) = providers["providers"]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in grafana["volumes"] if ":" in volume)
    dashboard_mount = mounts["./grafana/docaxis.json"]
    assert Path(dashboard_mount).parent == Path(provider["options"]["path"])


QUORUM_TICK = re.compile(r"\{quorum_tick_interval, (\d+)\}")


def test_every_broker_ticks_its_quorum_queues_as_the_local_ones_do() -> None:
    """The quorum queues' tick (deploy/local/rabbitmq.sh, docs/perf "Quorum queues' idle tick")
    is the same on the compose nodes (advanced.config mounted on each), the Kubernetes cluster
    and the local, test and bench brokers: the failover tests run on the local ones."""
    local = re.search(
        r"^QUORUM_TICK_MS=(\d+)$",
        (DEPLOY / "local" / "rabbitmq.sh").read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    assert local is not None
    advanced = DEPLOY / "compose" / "rabbitmq" / "advanced.config"
    compose_tick = QUORUM_TICK.findall(advanced.read_text(encoding="utf-8"))
    cluster = yaml.safe_load(
        (DEPLOY / "kubernetes" / "base" / "rabbitmq.yaml").read_text(encoding="utf-8")
    )
    kubernetes_tick = QUORUM_TICK.findall(cluster["spec"]["rabbitmq"]["advancedConfig"])
    assert compose_tick == kubernetes_tick == [local.group(1)]
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))["services"]
    for node in ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3"):
        assert (
            "./compose/rabbitmq/advanced.config:/etc/rabbitmq/advanced.config:ro"
            in services[node]["volumes"]
        ), node


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    """deploy/Dockerfile.dockerignore leaves out everything but what it names: a source the
    Dockerfile copies and the ignore file does not name would fail the build (no Docker engine
    here builds it to find out)."""
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore
    admitted = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    copied = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    ]
    assert copied
    for source in copied:
        path = source.rstrip("/")
        assert any(path == a or path.startswith(a + "/") for a in admitted), source
        assert (REPO / path).exists(), source

"""`make check`'s validation of the deployment manifests, offline, with tools installed from the
package registries (pinned in pyproject.toml's dev extra):

- compose.yaml against the Compose Specification's schema (check-jsonschema's vendored copy);
- the Dockerfile with hadolint;
- every Kubernetes overlay rendered by kustomize (kubectl's), each resource against the
  Kubernetes schemas kubernetes-validate bundles (strict: unknown fields are errors), and the
  operators' resources against the schemas vendored in kubernetes/schemas;
- the systemd units with `systemd-analyze verify`, in a scratch root that holds the units, the
  system's own units and a stand-in for each program they start (the programs are installed on
  the province's servers, not here), any warning counting as an error.

    python deploy/check_manifests.py [DEPLOY_DIR]     exit status 1 when anything is wrong
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

DEPLOY_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.37.0"
# Custom resources and the vendored schema of each (kubernetes/schemas/README.md).
CUSTOM_SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmqcluster-rabbitmq.com-v1beta1.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "cluster-postgresql.cnpg.io-v1.json",
}
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _run(command: list[str], cwd: Path | None = None) -> tuple[int, str]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


def check_compose(deploy: Path) -> list[str]:
    code, output = _run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(deploy / "compose.yaml"),
        ]
    )
    return [f"compose.yaml: {output}"] if code else []


def check_dockerfile(deploy: Path) -> list[str]:
    code, output = _run([str(BIN / "hadolint"), "--no-color", str(deploy / "Dockerfile")])
    return [f"Dockerfile: {output}"] if code else []


def rendered(kustomization: Path) -> tuple[list[dict[str, Any]], str]:
    """The resources kustomize renders from a kustomization folder, or its error."""
    code, output = _run([str(BIN / "kubectl"), "kustomize", str(kustomization)])
    if code:
        return [], output
    return [doc for doc in yaml.safe_load_all(output) if doc is not None], ""


def resource_problems(resource: dict[str, Any], schemas: Path) -> list[str]:
    key = (resource.get("apiVersion", ""), resource.get("kind", ""))
    name = f"{key[1]}/{resource.get('metadata', {}).get('name', '?')}"
    if key in CUSTOM_SCHEMAS:
        schema = json.loads((schemas / CUSTOM_SCHEMAS[key]).read_text(encoding="utf-8"))
        errors = jsonschema.Draft7Validator(schema).iter_errors(resource)
        return [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{name}: {'.'.join(map(str, error.path))}: {error.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        return [f"{name}: no schema for {key[0]} {key[1]} ({e})"]
    return []


def kustomizations(kubernetes: Path) -> Iterator[Path]:
    yield kubernetes / "base"
    overlays = kubernetes / "overlays"
    yield from sorted(path for path in overlays.iterdir() if path.is_dir())


def generated_files(kustomization: Path) -> Iterator[Path]:
    """The files an overlay's Secret and ConfigMap generators read (`key=path` or `path`)."""
    spec = yaml.safe_load((kustomization / "kustomization.yaml").read_text(encoding="utf-8"))
    for generator in (*spec.get("secretGenerator", ()), *spec.get("configMapGenerator", ())):
        for source in generator.get("files", ()):
            yield kustomization / source.rpartition("=")[2]


def with_placeholders(kubernetes: Path, scratch: Path) -> Path:
    """A copy of the Kubernetes folder in which every file a generator reads exists: the demo
    overlay's keys and certificates are made on the installing machine, never committed, and
    kustomize refuses to render without them."""
    copy = scratch / "kubernetes"
    shutil.copytree(kubernetes, copy)
    for folder in kustomizations(copy):
        for path in generated_files(folder):
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("placeholder: made on the installing machine\n", encoding="utf-8")
    return copy


def check_kubernetes(deploy: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        return _check_kubernetes(deploy, with_placeholders(deploy / "kubernetes", Path(scratch)))


def _check_kubernetes(deploy: Path, kubernetes: Path) -> list[str]:
    problems: list[str] = []
    for folder in kustomizations(kubernetes):
        label = Path("kubernetes") / folder.relative_to(kubernetes)
        resources, error = rendered(folder)
        if error:
            problems.append(f"{label}: kustomize: {error}")
            continue
        if not resources:
            problems.append(f"{label}: renders no resource")
        for resource in resources:
            problems += [
                f"{label}: {problem}"
                for problem in resource_problems(resource, kubernetes / "schemas")
            ]
    return problems


def _programs(unit: Path) -> set[str]:
    """The absolute paths a unit's Exec*= lines start (prefixes like `-` or `+` dropped)."""
    programs = set()
    for line in unit.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().startswith("Exec") and value.strip():
            program = value.strip().split()[0].lstrip("-+!@:")
            if program.startswith("/"):
                programs.add(program)
    return programs


def check_systemd(deploy: Path) -> list[str]:
    units = sorted((deploy / "systemd").glob("*.service"))
    if not units:
        return ["systemd: no unit"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return ["systemd: systemd-analyze is missing (bash deploy/local/install.sh installs it)"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
        installed = root / "etc/systemd/system"
        installed.mkdir(parents=True)
        for unit in units:
            shutil.copy(unit, installed / unit.name)
            for program in _programs(unit):
                stand_in = root / program.lstrip("/")
                stand_in.parent.mkdir(parents=True, exist_ok=True)
                stand_in.write_text("#!/bin/sh\n", encoding="utf-8")
                stand_in.chmod(0o755)
        code, output = _run(
            [
                analyze,
                f"--root={root}",
                "--man=no",
                "verify",
                *(f"/etc/systemd/system/{unit.name}" for unit in units),
            ]
        )
    return [f"systemd: {output}"] if code or output else []


CHECKS: dict[str, Callable[[Path], list[str]]] = {
    "compose": check_compose,
    "Dockerfile": check_dockerfile,
    "Kubernetes": check_kubernetes,
    "systemd": check_systemd,
}


def check(deploy: Path, kinds: tuple[str, ...] = tuple(CHECKS)) -> list[str]:
    return [problem for kind in kinds for problem in CHECKS[kind](deploy)]


def main(argv: list[str]) -> int:
    deploy = Path(argv[1]) if len(argv) > 1 else DEPLOY_DIR
    problems = check(deploy)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"deploy: {', '.join(CHECKS)}: {'FAILED' if problems else 'valid'}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

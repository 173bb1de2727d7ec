"""docaxis-client as an integrator gets it: the wheel built from clients/python, installed into
an empty virtualenv (no services, no checkout on the path), sending and receiving a document
against a running axis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.e2e.conftest import register
from tests.e2e.processes import AxisProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "clients" / "python" / "examples" / "send_and_receive.py"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


def _clean_env() -> dict[str, str]:
    """This environment without anything that would put the checkout on the path."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtualenv holding only the docaxis-client wheel and its
    dependencies (at the versions constraints.txt pins)."""
    folder = tmp_path_factory.mktemp("client-wheel")
    project = REPO / "clients" / "python"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", "dist", str(project)],
        folder,
    )
    (wheel,) = (folder / "dist").glob("docaxis_client-*.whl")
    _run([sys.executable, "-m", "venv", "venv"], folder)
    python = folder / "venv" / "bin" / "python"
    pins = REPO / "constraints.txt"
    _run([str(python), "-m", "pip", "install", "-q", "-c", str(pins), str(wheel)], folder)
    return python


def test_the_installed_core_loads_no_grpc_and_nothing_of_the_services(
    client_python: Path, tmp_path: Path
) -> None:
    """The packages come from the venv; manifests, signing and proofs import without grpc."""
    script = (
        "import importlib.util, sys\n"
        "import docaxis_client, docaxis_client.documents, docaxis_client.ledger.merkle\n"
        "from docaxis_client import verify_delivery\n"
        "print(docaxis_client.__file__)\n"
        "print('grpc' in sys.modules, importlib.util.find_spec('services') is None)\n"
    )
    lines = _run([str(client_python), "-c", script], tmp_path).stdout.splitlines()
    assert lines[0].startswith(str(client_python.parent.parent))
    assert lines[1] == "False True"


async def test_a_script_sends_and_receives_with_the_installed_wheel(
    client_python: Path, axis_process: AxisProcess, tmp_path: Path
) -> None:
    """The example of clients/python runs the README's walkthrough against a running axis."""
    pki = axis_process.pki
    assert pki is not None
    sender, recipient = await register(axis_process, 2)
    files: list[str] = []
    for role, code, kind in (
        ("sender", sender, "agency"),
        ("official", sender, "person"),
        ("recipient", recipient, "agency"),
    ):
        issued = getattr(pki.agency(code), kind)
        pair = pki.write_pair(f"{code}-{kind}", issued)
        files += [f"--{role}-cert", str(pair.certificate), f"--{role}-key", str(pair.key)]
    process = await asyncio.create_subprocess_exec(
        str(client_python),
        str(EXAMPLE),
        "--address",
        axis_process.address,
        "--ca",
        str(pki.bundle),
        *files,
        cwd=tmp_path,
        env=_clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["health"] == "SERVING"
    assert summary["delivered_document_uuid"] == summary["document_uuid"]
    assert summary["signer"] == "Lê Thị B"
    assert summary["attachment_verified"] is True
    assert summary["status_code"] == "STATUS_CODE_ARRIVED"
    assert summary["receipt_recipient"] == recipient
    assert summary["refusal"] == "NotFoundError:NOT_FOUND"


def test_the_services_wheel_depends_on_the_sdk_instead_of_bundling_it(
    tmp_path: Path,
) -> None:
    """One distribution holds docaxis_client and the generated code: the services' wheel names
    docaxis-client as a requirement and carries none of its files."""
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", "dist", str(REPO)], tmp_path
    )
    (wheel,) = (tmp_path / "dist").glob("docaxis-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}
        metadata = archive.read("docaxis-0.1.0.dist-info/METADATA").decode()
    assert tops == {"services", "gateway", "docaxis-0.1.0.dist-info"}
    assert "Requires-Dist: docaxis-client==0.1.0" in metadata.splitlines()

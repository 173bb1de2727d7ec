"""The client's core (manifests, signing, verification, ledger proofs) never loads grpc: a
verifier or a batch signer runs without a network stack, and so do the services' domains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CORE_MODULES = (
    "docaxis_client",
    "docaxis_client.trust",
    "docaxis_client.documents",
    "docaxis_client.credentials",
    "docaxis_client.ledger.entry",
    "docaxis_client.ledger.merkle",
    "docaxis_client.ledger.note",
    "docaxis_client.ledger.policy",
    "docaxis_client.ledger.receipt",
    "docaxis_client.trust.demo_pki",
    "docaxis_client.delegation",
)
REPO = Path(__file__).resolve().parents[3]


def loaded_after_import(module: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after importing `module` (and using the
    package's lazily exported core names)."""
    script = (
        f"import sys, {module}\n"
        "from docaxis_client import verify_delivery, TlsCredentials, manifest_of\n"
        "print('\\n'.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_loads_no_grpc(module: str) -> None:
    loaded = loaded_after_import(module)
    assert "docaxis_client" in loaded
    assert "grpc" not in loaded


def test_the_grpc_client_is_loaded_on_first_use() -> None:
    """The lazy export still hands out the real client class."""
    script = (
        "import sys, docaxis_client\n"
        "assert 'grpc' not in sys.modules\n"
        "print(docaxis_client.AgencyClient.__module__, 'grpc' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["docaxis_client.client", "True"]


def test_unknown_names_are_attribute_errors() -> None:
    import docaxis_client

    with pytest.raises(AttributeError, match="no_such_name"):
        _ = docaxis_client.no_such_name

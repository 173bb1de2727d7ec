"""Each service runs alone: `python -m services.<name>` is `docaxis run` for that component,
whose configuration is checked before it connects to anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.infra import REPO


@pytest.mark.parametrize(
    ("name", "missing"),
    [("exchange", "DOCAXIS_DIRECTORY_ADDRESS"), ("ledger", "DOCAXIS_LEDGER_KEY_FILE")],
)
def test_a_service_module_names_what_it_lacks_before_connecting(name: str, missing: str) -> None:
    """Nothing listens at the database URL: the process exits 2 with the configuration error
    of its own component rather than a connection error."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCAXIS_")}
    result = subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        cwd=REPO,
        env=env
        | {
            "DOCAXIS_DEV_INSECURE": "true",
            "DOCAXIS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
            "DOCAXIS_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    assert missing in result.stderr

"""deploy/local/dev.env holds defaults only: what the user exports wins, URLs follow the ports."""

from __future__ import annotations

import os
import subprocess

from tests.infra import REPO


def _sourced(**env: str) -> dict[str, str]:
    """The DOCAXIS_ variables after `make run`'s way of sourcing dev.env over ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCAXIS_")}
    script = "set -a && source deploy/local/dev.env && set +a && env -0"
    out = subprocess.run(
        ["bash", "-c", script], cwd=REPO, env=base | env, capture_output=True, check=True
    ).stdout.decode()
    pairs = (item.split("=", 1) for item in out.split("\0") if item.startswith("DOCAXIS_"))
    return dict(pairs)


def test_the_urls_follow_the_port_variables() -> None:
    """DOCAXIS_PG_PORT / DOCAXIS_AMQP_PORT move the URLs docaxis connects to with the servers."""
    settings = _sourced(DOCAXIS_PG_PORT="55500", DOCAXIS_AMQP_PORT="35700")
    assert settings["DOCAXIS_DATABASE_URL"] == "postgresql://postgres@127.0.0.1:55500/docaxis"
    assert settings["DOCAXIS_AMQP_URL"] == "amqp://guest:guest@127.0.0.1:35700/"


def test_what_the_user_sets_wins_and_the_gateway_follows_the_grpc_address() -> None:
    """An exported address or URL is kept; the gateway dials where docaxis serves."""
    settings = _sourced(
        DOCAXIS_GRPC_ADDRESS="127.0.0.1:50600",
        DOCAXIS_DATABASE_URL="postgresql://someone@db.example/docaxis",
    )
    assert settings["DOCAXIS_GRPC_ADDRESS"] == "127.0.0.1:50600"
    assert settings["DOCAXIS_GATEWAY_GRPC_TARGET"] == "127.0.0.1:50600"
    assert settings["DOCAXIS_DATABASE_URL"] == "postgresql://someone@db.example/docaxis"


def test_the_local_folder_moves_the_demo_pki_and_the_ledger_key() -> None:
    """One variable keeps a second `make run` apart from the first."""
    settings = _sourced(DOCAXIS_LOCAL_DIR="/srv/second")
    assert settings["DOCAXIS_TLS_CERT_FILE"] == "/srv/second/pki/servers/localhost.pem"
    assert settings["DOCAXIS_LEDGER_KEY_FILE"] == "/srv/second/ledger.key"

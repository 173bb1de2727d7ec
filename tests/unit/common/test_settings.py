"""Settings.from_env: required values, the development-mode guard and malformed numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import ConfigError, read_secret_file
from services.directory.domain.codes import CodeForm
from services.settings import (
    DEFAULT_GRPC_ADDRESS,
    DEFAULT_LEDGER_ORIGIN,
    ClientSettings,
    LedgerExportSettings,
    Settings,
)

MINIMAL = {
    "DOCAXIS_DATABASE_URL": "postgresql://docaxis:s3cret@127.0.0.1:55432/docaxis",
    "DOCAXIS_AMQP_URL": "amqp://guest:hunter2@127.0.0.1:35672/",
    "DOCAXIS_DEV_INSECURE": "true",
}


def with_env(**changes: str) -> dict[str, str]:
    return MINIMAL | changes


def test_the_minimal_development_environment_gives_the_documented_defaults() -> None:
    """Loopback address, 256 MiB attachments, both code forms, directory in process."""
    settings = Settings.from_env(MINIMAL)
    assert settings.grpc_address == DEFAULT_GRPC_ADDRESS == "127.0.0.1:50051"
    assert settings.database_url == MINIMAL["DOCAXIS_DATABASE_URL"]
    assert settings.dev_insecure
    assert settings.directory_address is None
    assert settings.max_attachment_bytes == 256 * 1024 * 1024
    assert settings.max_pushes == 20
    assert (settings.reroute_interval_s, settings.upload_ttl_s) == (30.0, 7 * 86400.0)
    assert settings.stream_channel_idle_s == 60.0
    assert settings.code_forms == frozenset({CodeForm.QCVN102, CodeForm.QD20})
    assert (settings.shutdown_grace_s, settings.health_interval_s) == (10.0, 1.0)
    assert settings.probe_address is None  # no listener unless an orchestrator asks


def test_every_setting_is_read_from_its_variable() -> None:
    """Each DOCAXIS_ variable lands in its field, numbers parsed."""
    settings = Settings.from_env(
        with_env(
            DOCAXIS_GRPC_ADDRESS="127.0.0.1:6000",
            DOCAXIS_DIRECTORY_ADDRESS="127.0.0.1:6001",
            DOCAXIS_MAX_ATTACHMENT_BYTES=" 1024 ",
            DOCAXIS_MAX_PUSHES="3",
            DOCAXIS_REROUTE_INTERVAL_S="0.5",
            DOCAXIS_UPLOAD_TTL_S="3600",
            DOCAXIS_CODE_FORMS="qcvn102",
            DOCAXIS_SHUTDOWN_GRACE_S="2.5",
            DOCAXIS_HEALTH_INTERVAL_S="0.2",
            DOCAXIS_LOG_LEVEL="DEBUG",
            DOCAXIS_OCSP="true",
            DOCAXIS_OCSP_TIMEOUT_S="2",
            DOCAXIS_PROBE_ADDRESS="0.0.0.0:9465",
            DOCAXIS_STREAM_CHANNEL_IDLE_S="5",
        )
    )
    assert settings.stream_channel_idle_s == 5.0
    assert settings.probe_address == "0.0.0.0:9465"
    assert (settings.ocsp_enabled, settings.ocsp_timeout_s) == (True, 2.0)
    assert settings.grpc_address == "127.0.0.1:6000"
    assert settings.directory_address == "127.0.0.1:6001"
    assert settings.max_attachment_bytes == 1024
    assert settings.max_pushes == 3
    assert (settings.reroute_interval_s, settings.upload_ttl_s) == (0.5, 3600.0)
    assert settings.code_forms == frozenset({CodeForm.QCVN102})
    assert (settings.shutdown_grace_s, settings.health_interval_s) == (2.5, 0.2)
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize("key", ["DOCAXIS_DATABASE_URL"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_or_blank_required_setting_names_its_key(key: str, value: str | None) -> None:
    """ConfigError says which variable is missing."""
    env = dict(MINIMAL)
    if value is None:
        del env[key]
    else:
        env[key] = value
    with pytest.raises(ConfigError, match=f"missing required setting {key}"):
        Settings.from_env(env)


@pytest.mark.parametrize("value", [None, "", "false", "0", "no"])
def test_the_services_refuse_to_start_outside_explicit_development_mode(
    value: str | None,
) -> None:
    """Without DOCAXIS_DEV_INSECURE=true there is no TLS and so no start."""
    env = dict(MINIMAL)
    if value is None:
        del env["DOCAXIS_DEV_INSECURE"]
    else:
        env["DOCAXIS_DEV_INSECURE"] = value
    with pytest.raises(ConfigError, match="DOCAXIS_DEV_INSECURE=true"):
        Settings.from_env(env)


@pytest.mark.parametrize("value", ["TRUE", " yes ", "1", "on"])
def test_development_mode_accepts_the_usual_spellings_of_true(value: str) -> None:
    """Booleans are case-insensitive and trimmed."""
    assert Settings.from_env(with_env(DOCAXIS_DEV_INSECURE=value)).dev_insecure


def test_a_boolean_that_is_neither_true_nor_false_is_an_error() -> None:
    """ConfigError names the key and the value."""
    with pytest.raises(ConfigError, match=r"DOCAXIS_DEV_INSECURE must be a boolean.*'maybe'"):
        Settings.from_env(with_env(DOCAXIS_DEV_INSECURE="maybe"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("DOCAXIS_MAX_ATTACHMENT_BYTES", "lots", "DOCAXIS_MAX_ATTACHMENT_BYTES must be an integer"),
        ("DOCAXIS_MAX_ATTACHMENT_BYTES", "1.5", "DOCAXIS_MAX_ATTACHMENT_BYTES must be an integer"),
        ("DOCAXIS_MAX_ATTACHMENT_BYTES", "0", "DOCAXIS_MAX_ATTACHMENT_BYTES must be positive"),
        ("DOCAXIS_MAX_ATTACHMENT_BYTES", "-5", "DOCAXIS_MAX_ATTACHMENT_BYTES must be positive"),
        ("DOCAXIS_MAX_PUSHES", "0", "DOCAXIS_MAX_PUSHES must be positive"),
        ("DOCAXIS_MAX_PUSHES", "many", "DOCAXIS_MAX_PUSHES must be an integer"),
        ("DOCAXIS_WORKERS", "0", "DOCAXIS_WORKERS must be 1 to 64"),
        ("DOCAXIS_WORKERS", "two", "DOCAXIS_WORKERS must be an integer"),
        ("DOCAXIS_SHUTDOWN_GRACE_S", "soon", "DOCAXIS_SHUTDOWN_GRACE_S must be a number"),
        ("DOCAXIS_HEALTH_INTERVAL_S", "1s", "DOCAXIS_HEALTH_INTERVAL_S must be a number"),
        ("DOCAXIS_REROUTE_INTERVAL_S", "0", "DOCAXIS_REROUTE_INTERVAL_S must be"),
        ("DOCAXIS_UPLOAD_TTL_S", "59", "DOCAXIS_UPLOAD_TTL_S must be"),
        ("DOCAXIS_STREAM_CHANNEL_IDLE_S", "0", "DOCAXIS_STREAM_CHANNEL_IDLE_S must be"),
        ("DOCAXIS_CODE_FORMS", "qcvn102,iso", "DOCAXIS_CODE_FORMS"),
        ("DOCAXIS_CODE_FORMS", ",", "DOCAXIS_CODE_FORMS: at least one code form"),
        ("DOCAXIS_PROBE_ADDRESS", "9465", "DOCAXIS_PROBE_ADDRESS must be host:port"),
        ("DOCAXIS_PROBE_ADDRESS", "0.0.0.0:http", "DOCAXIS_PROBE_ADDRESS must be host:port"),
    ],
)
def test_malformed_values_are_refused_naming_the_key(key: str, value: str, message: str) -> None:
    """A typo stops the process at startup with the variable's name in the message."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(with_env(**{key: value}))


def test_blank_numbers_fall_back_to_their_defaults() -> None:
    """An empty value means "not set" for numbers."""
    settings = Settings.from_env(with_env(DOCAXIS_MAX_ATTACHMENT_BYTES=" "))
    assert settings.max_attachment_bytes == 256 * 1024 * 1024


def test_the_settings_repr_does_not_leak_credentials() -> None:
    """Database and broker URLs carry passwords and stay out of logs."""
    text = repr(Settings.from_env(MINIMAL))
    assert "s3cret" not in text
    assert "hunter2" not in text


def test_secrets_are_read_from_the_file_the_environment_points_to(tmp_path: Path) -> None:
    """The variable holds a path; the value is the file's trimmed content."""
    secret = tmp_path / "token"
    secret.write_text("  t0ken\n", encoding="utf-8")
    assert read_secret_file({"DOCAXIS_TOKEN_FILE": str(secret)}, "DOCAXIS_TOKEN_FILE") == "t0ken"
    assert read_secret_file({}, "DOCAXIS_TOKEN_FILE") is None
    with pytest.raises(ConfigError, match="DOCAXIS_TOKEN_FILE"):
        read_secret_file({"DOCAXIS_TOKEN_FILE": str(tmp_path / "absent")}, "DOCAXIS_TOKEN_FILE")


def test_clients_dial_the_address_the_server_binds_unless_told_otherwise() -> None:
    """`make demo` after `make run` needs no address of its own; DOCAXIS_ADDRESS still wins."""
    assert ClientSettings.from_env({}).address == DEFAULT_GRPC_ADDRESS
    bound = {"DOCAXIS_GRPC_ADDRESS": "127.0.0.1:50600"}
    assert ClientSettings.from_env(bound).address == "127.0.0.1:50600"
    assert ClientSettings.from_env({"DOCAXIS_GRPC_ADDRESS": "0.0.0.0:50600"}).address == (
        "127.0.0.1:50600"
    )
    chosen = bound | {"DOCAXIS_ADDRESS": "axis.example:443"}
    assert ClientSettings.from_env(chosen).address == "axis.example:443"


def test_client_credentials_and_pki_come_from_their_variables() -> None:
    """The operator's files, the demo PKI folder and development mode, each from its variable."""
    client = ClientSettings.from_env(
        {
            "DOCAXIS_CLIENT_CA_FILE": "ca.pem",
            "DOCAXIS_CLIENT_CERT_FILE": "admin.pem",
            "DOCAXIS_CLIENT_KEY_FILE": "admin.key",
            "DOCAXIS_PKI_DIR": "/srv/demo-pki",
            "DOCAXIS_DEV_INSECURE": "true",
        }
    )
    assert (client.ca_file, client.cert_file, client.key_file) == (
        Path("ca.pem"),
        Path("admin.pem"),
        Path("admin.key"),
    )
    assert client.pki_dir == Path("/srv/demo-pki")
    assert client.insecure
    with pytest.raises(ConfigError, match="DOCAXIS_DEV_INSECURE"):
        ClientSettings.from_env({"DOCAXIS_DEV_INSECURE": "maybe"})


def test_the_ledger_export_needs_only_the_database() -> None:
    """No TLS or broker settings: an auditor's machine has none."""
    exporting = LedgerExportSettings.from_env(
        {"DOCAXIS_DATABASE_URL": "postgresql://h/db", "DOCAXIS_DATABASE_ROLES": "false"}
    )
    assert (exporting.database_url, exporting.database_roles) == ("postgresql://h/db", False)
    assert exporting.ledger_origin == DEFAULT_LEDGER_ORIGIN
    with pytest.raises(ConfigError, match="DOCAXIS_DATABASE_URL"):
        LedgerExportSettings.from_env({})


def test_several_workers_need_a_fixed_port() -> None:
    """Workers share one address: an ephemeral port (0) would give each its own."""
    with pytest.raises(ConfigError, match="fixed port"):
        Settings.from_env(with_env(DOCAXIS_WORKERS="2", DOCAXIS_GRPC_ADDRESS="127.0.0.1:0"))
    settings = Settings.from_env(
        with_env(DOCAXIS_WORKERS="2", DOCAXIS_GRPC_ADDRESS="127.0.0.1:50051")
    )
    assert (settings.workers, settings.worker_index) == (2, 0)


def test_witnesses_are_read_with_their_keys_and_the_quorum_defaults_to_all() -> None:
    from tests.unit.ledger.synthetic import WITNESSES

    listed = ", ".join(
        f"http://127.0.0.1:{7000 + i} {c.verifier.vkey}" for i, c in enumerate(WITNESSES)
    )
    settings = Settings.from_env({**MINIMAL, "DOCAXIS_LEDGER_WITNESSES": listed})
    assert [w.verifier for w in settings.ledger_witnesses] == [c.verifier for c in WITNESSES]
    assert settings.ledger_witnesses[1].url == "http://127.0.0.1:7001"
    assert settings.ledger_witness_quorum == 2
    one = {**MINIMAL, "DOCAXIS_LEDGER_WITNESSES": listed, "DOCAXIS_LEDGER_WITNESS_QUORUM": "1"}
    assert Settings.from_env(one).ledger_witness_quorum == 1
    for bad, message in (
        ({"DOCAXIS_LEDGER_WITNESSES": "127.0.0.1:7000 x"}, "<url> <witness vkey>"),
        ({"DOCAXIS_LEDGER_WITNESSES": "http://w x+1+2"}, "DOCAXIS_LEDGER_WITNESSES"),
        ({"DOCAXIS_LEDGER_WITNESS_QUORUM": "1"}, "DOCAXIS_LEDGER_WITNESS_QUORUM"),
    ):
        with pytest.raises(ConfigError, match=message):
            Settings.from_env({**MINIMAL, **bad})

"""The national-axis connector's settings: what it needs, what it refuses, and a secret that
never shows."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.national.client import AxisCredentials
from services.national.settings import NationalAxisSettings
from services.settings import Settings

BASE = {
    "DOCAXIS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
    "DOCAXIS_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
    "DOCAXIS_DEV_INSECURE": "true",
    "DOCAXIS_HUB_CODE": "province-h47",
}
AXIS = {
    "DOCAXIS_NATIONAL_AXIS": "vdxp=https://axis.example/api",
    "DOCAXIS_NATIONAL_AXIS_SYSTEM_ID": "docaxis-h47",
    "DOCAXIS_NATIONAL_AXIS_SECRET_FILE": "/run/secrets/national",
}


def test_the_connector_is_configured_with_a_hub_code_url_system_id_and_secret_file() -> None:
    settings = Settings.from_env({**BASE, **AXIS})
    assert settings.national_axis == NationalAxisSettings(
        hub_code="vdxp",
        base_url="https://axis.example/api",
        system_id="docaxis-h47",
        secret_file="/run/secrets/national",
    )
    assert Settings.from_env(BASE).national_axis is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DOCAXIS_NATIONAL_AXIS_SECRET_FILE": ""}, "SECRET_FILE"),
        ({"DOCAXIS_NATIONAL_AXIS": "https://axis.example/api"}, "<hub code>=<base URL>"),
        ({"DOCAXIS_NATIONAL_AXIS": "Not A Code=https://axis.example/api"}, "not a hub code"),
        ({"DOCAXIS_NATIONAL_AXIS": "province-h47=https://axis.example/api"}, "this hub"),
        ({"DOCAXIS_HUB_CODE": ""}, "DOCAXIS_HUB_CODE"),
        ({"DOCAXIS_NATIONAL_AXIS_PAGE_SIZE": "0"}, "PAGE_SIZE"),
    ],
)
def test_incomplete_or_conflicting_settings_are_refused(
    change: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE, **AXIS, **change})


def test_plain_http_is_for_development_only() -> None:
    env = {**AXIS, "DOCAXIS_NATIONAL_AXIS": "vdxp=http://axis.example/api"}
    with pytest.raises(ConfigError, match="https"):
        NationalAxisSettings.from_env(env, dev_insecure=False)
    assert NationalAxisSettings.from_env(env, dev_insecure=True) is not None


def test_the_secret_is_neither_printed_nor_sent() -> None:
    """The credentials' repr omits the secret; the headers carry an HMAC of it."""
    credentials = AxisCredentials("docaxis-h47", "s3cr3t-value")
    assert "s3cr3t" not in repr(credentials)
    headers = credentials.headers(now=1_700_000_000)
    assert headers["X-System-Id"] == "docaxis-h47"
    assert headers["X-Timestamp"] == "1700000000"
    assert "s3cr3t" not in "".join(headers.values())
    assert len(headers["X-Signature"]) == 64

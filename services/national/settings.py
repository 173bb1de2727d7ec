"""The national-axis connector's settings (DOCAXIS_NATIONAL_AXIS*): read and checked with the
rest of the deployment's settings; the secret stays in its file until the connector starts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.common.config import ConfigError


@dataclass(frozen=True, slots=True)
class NationalAxisSettings:
    # The hub code the national axis goes by in this hub's routes and peer series.
    hub_code: str
    base_url: str
    system_id: str
    secret_file: str
    # Trust anchors for an https base URL other than the system's (None: the system's).
    ca_file: str | None = None
    # The poller's longest pause when the mailbox is empty or the axis fails (back-off cap).
    poll_max_s: float = 30.0
    page_size: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dev_insecure: bool) -> NationalAxisSettings | None:
        raw = env.get("DOCAXIS_NATIONAL_AXIS", "").strip()
        if not raw:
            return None
        code, sep, url = raw.partition("=")
        if not sep or not code.strip() or not url.strip():
            raise ConfigError("DOCAXIS_NATIONAL_AXIS is <hub code>=<base URL>")
        system_id = env.get("DOCAXIS_NATIONAL_AXIS_SYSTEM_ID", "").strip()
        secret_file = env.get("DOCAXIS_NATIONAL_AXIS_SECRET_FILE", "").strip()
        if not system_id or not secret_file:
            raise ConfigError(
                "DOCAXIS_NATIONAL_AXIS needs DOCAXIS_NATIONAL_AXIS_SYSTEM_ID and "
                "DOCAXIS_NATIONAL_AXIS_SECRET_FILE (the secret is read from the file)"
            )
        scheme = urlsplit(url.strip()).scheme
        if scheme != "https" and not (scheme == "http" and dev_insecure):
            raise ConfigError(
                "DOCAXIS_NATIONAL_AXIS: the base URL must be https (plain http only in "
                "development mode)"
            )
        try:
            poll = float(env.get("DOCAXIS_NATIONAL_AXIS_POLL_MAX_S", "30"))
            page = int(env.get("DOCAXIS_NATIONAL_AXIS_PAGE_SIZE", "50"))
        except ValueError as exc:
            raise ConfigError(f"DOCAXIS_NATIONAL_AXIS_*: {exc}") from None
        if not math.isfinite(poll) or poll < 0.05 or not 1 <= page <= 1000:
            raise ConfigError(
                "DOCAXIS_NATIONAL_AXIS_POLL_MAX_S must be >= 0.05 and "
                "DOCAXIS_NATIONAL_AXIS_PAGE_SIZE 1 to 1000"
            )
        return cls(
            hub_code=code.strip(),
            base_url=url.strip(),
            system_id=system_id,
            secret_file=secret_file,
            ca_file=env.get("DOCAXIS_NATIONAL_AXIS_CA_FILE") or None,
            poll_max_s=poll,
            page_size=page,
        )

"""Reading settings from an injectable environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class ConfigError(Exception):
    """A required setting is missing or malformed; raised at startup, before anything opens."""


def require(env: Mapping[str, str], key: str) -> str:
    """The value of `key`, or a ConfigError naming it."""
    value = env.get(key, "").strip()
    if not value:
        raise ConfigError(f"missing required setting {key}")
    return value


def read_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None


def read_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from None


def read_bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{key} must be a boolean (true/false), got {raw!r}")


def read_secret_file(env: Mapping[str, str], key: str) -> str | None:
    """Secrets live in files whose *paths* are in the environment, never the values themselves."""
    path = env.get(key, "").strip()
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file {path}: {exc.strerror}") from None

"""Process settings, read once at startup from an injectable environment mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

from services.common.config import ConfigError, read_bool, read_float, read_int, require
from services.directory.domain.codes import CodeForm, parse_forms

DEFAULT_GRPC_ADDRESS = "127.0.0.1:50051"


@dataclass(frozen=True, slots=True)
class Settings:
    grpc_address: str
    database_url: str = field(repr=False)
    amqp_url: str = field(repr=False)
    # Where the exchange finds DirectoryService; None means "in this process".
    directory_address: str | None = None
    # Plaintext gRPC with caller identity taken from request headers: development only.
    dev_insecure: bool = False
    max_attachment_bytes: int = 256 * 1024 * 1024
    code_forms: frozenset[CodeForm] = frozenset({CodeForm.QCVN102, CodeForm.QD20})
    shutdown_grace_s: float = 10.0
    health_interval_s: float = 1.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        try:
            forms = parse_forms(env.get("DOCAXIS_CODE_FORMS", "qcvn102,qd20"))
        except ValueError as exc:
            raise ConfigError(f"DOCAXIS_CODE_FORMS: {exc}") from None
        settings = cls(
            grpc_address=env.get("DOCAXIS_GRPC_ADDRESS", DEFAULT_GRPC_ADDRESS),
            database_url=require(env, "DOCAXIS_DATABASE_URL"),
            amqp_url=require(env, "DOCAXIS_AMQP_URL"),
            directory_address=env.get("DOCAXIS_DIRECTORY_ADDRESS") or None,
            dev_insecure=read_bool(env, "DOCAXIS_DEV_INSECURE", False),
            max_attachment_bytes=read_int(env, "DOCAXIS_MAX_ATTACHMENT_BYTES", 256 * 1024 * 1024),
            code_forms=forms,
            shutdown_grace_s=read_float(env, "DOCAXIS_SHUTDOWN_GRACE_S", 10.0),
            health_interval_s=read_float(env, "DOCAXIS_HEALTH_INTERVAL_S", 1.0),
            log_level=env.get("DOCAXIS_LOG_LEVEL", "INFO"),
        )
        if not settings.dev_insecure:
            raise ConfigError(
                "mutual TLS is not configured in this build: set DOCAXIS_DEV_INSECURE=true to run "
                "plaintext with header identities (development only)"
            )
        if settings.max_attachment_bytes <= 0:
            raise ConfigError("DOCAXIS_MAX_ATTACHMENT_BYTES must be positive")
        return settings

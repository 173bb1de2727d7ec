"""What a process will serve, checked before any pool or connection opens."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from docaxis_client.ledger.note import NoteError, NoteSigner
from services.common.config import ConfigError
from services.settings import Settings

if TYPE_CHECKING:  # imported by plan(): the CLI's commands read Component and the key files
    from services.security import Security  # without loading the TLS and signature stack


class Component(enum.StrEnum):
    DIRECTORY = "directory"
    EXCHANGE = "exchange"
    LEDGER = "ledger"


ALL_COMPONENTS = frozenset(Component)


@dataclass(frozen=True, slots=True)
class Plan:
    """Checked settings and what was read from the files they name."""

    settings: Settings
    components: frozenset[Component]
    security: Security
    # The ledger's checkpoint signing keys; empty when the ledger is not served here.
    signers: tuple[NoteSigner, ...]
    amqp_url: str | None

    def serves(self, component: Component) -> bool:
        return component in self.components


def plan(settings: Settings, components: Collection[Component] = ALL_COMPONENTS) -> Plan:
    """Every configuration error of these components, raised now (ConfigError), before anything
    opens: a missing key file must not leave a started relay running on a closed pool."""
    chosen = frozenset(components)
    if not chosen:
        raise ConfigError("no component to serve")
    if Component.EXCHANGE in chosen:
        if settings.amqp_url is None:
            raise ConfigError("the exchange needs the broker: set DOCAXIS_AMQP_URL")
        if Component.DIRECTORY not in chosen and settings.directory_address is None:
            raise ConfigError("the exchange alone needs DOCAXIS_DIRECTORY_ADDRESS")
    from services.security import Security

    signers = load_signers(settings) if Component.LEDGER in chosen else []
    return Plan(
        settings=settings,
        components=chosen,
        security=Security.from_settings(settings),
        signers=tuple(signers),
        amqp_url=settings.amqp_url if Component.EXCHANGE in chosen else None,
    )


def load_signers(settings: Settings) -> list[NoteSigner]:
    """The checkpoint signing keys; the file's contents are never logged."""
    if settings.ledger_key_file is None:
        raise ConfigError(
            "serving the ledger needs DOCAXIS_LEDGER_KEY_FILE (docaxis ledger keygen)"
        )
    return read_signer_keys(Path(settings.ledger_key_file), "DOCAXIS_LEDGER_KEY_FILE")


def read_signer_keys(path: Path, what: str) -> list[NoteSigner]:
    """C2SP signer keys, one per line (several while a key rotates)."""
    try:
        lines = path.read_text(encoding="utf-8").split()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}") from None
    try:
        signers = [NoteSigner.from_skey(line) for line in lines if line.strip()]
    except NoteError:
        raise ConfigError(f"{what} does not hold signer keys") from None
    if not signers:
        raise ConfigError(f"{what} is empty")
    return signers

"""The witnesses the ledger asks for cosignatures, as configured (DOCAXIS_LEDGER_WITNESSES)."""

from __future__ import annotations

from dataclasses import dataclass

from docaxis_client.ledger.cosignature import CosignerVerifier
from docaxis_client.ledger.note import NoteError
from services.common.config import ConfigError


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """A witness: its submission prefix (URL) and its cosigning key."""

    url: str
    verifier: CosignerVerifier

    @property
    def name(self) -> str:
        return self.verifier.name


def parse_witnesses(text: str) -> tuple[WitnessEndpoint, ...]:
    """DOCAXIS_LEDGER_WITNESSES: comma-separated `<url> <witness vkey>` pairs."""
    endpoints: list[WitnessEndpoint] = []
    for item in text.split(","):
        if not item.strip():
            continue
        parts = item.split()
        if len(parts) != 2 or not parts[0].startswith(("http://", "https://")):
            raise ConfigError("DOCAXIS_LEDGER_WITNESSES: each item is `<url> <witness vkey>`")
        try:
            verifier = CosignerVerifier.from_vkey(parts[1])
        except NoteError as exc:
            raise ConfigError(f"DOCAXIS_LEDGER_WITNESSES: {exc}") from None
        endpoints.append(WitnessEndpoint(parts[0].rstrip("/"), verifier))
    if len({e.name for e in endpoints}) != len(endpoints):
        raise ConfigError("DOCAXIS_LEDGER_WITNESSES: two witnesses share a name")
    return tuple(endpoints)

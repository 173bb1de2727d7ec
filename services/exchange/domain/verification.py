"""What the hub verified of a document's signatures: stored with it, shown wherever it goes."""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import dataclass
from typing import Any

from docaxis_client.trust.canonical import format_utc


class SignatureMode(enum.StrEnum):
    """On what strength a document was accepted."""

    SIGNED = "signed"
    # Unsigned, accepted on the sender's mutual-TLS identity (its policy allows it): shown as
    # UNSIGNED everywhere the document appears.
    TRANSPORT_ATTESTED = "transport_attested"
    # Unsigned, accepted by a development deployment that requires no signatures.
    UNSIGNED = "unsigned"


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """One verified signature: form (manifest, pades, xmldsig), role and signer."""

    form: str
    role: str
    subject: str
    agency_code: str
    algorithm: str
    certificate_sha256: str
    serial: str
    signed_at: dt.datetime | None = None
    full_name: str = ""
    # PAdES: the attachment (name and digest) and the PDF signature field.
    attachment: str = ""
    attachment_sha256: str = ""
    field: str = ""
    covers_whole_document: bool = True
    legacy_algorithm: bool = False
    checked: str = ""

    def ledger_data(self, manifest_sha256: str | None) -> dict[str, object]:
        """The `verification` ledger fact: certificate hashes and serials, never names."""
        data: dict[str, object] = {
            "result": "valid",
            "form": self.form,
            "role": self.role,
            "algorithm": self.algorithm,
            "certificate_sha256": self.certificate_sha256,
            "serial": self.serial,
            "signed_at": format_utc(self.signed_at) if self.signed_at else "",
            "manifest_sha256": manifest_sha256 or "",
        }
        if self.attachment_sha256:
            data["attachment_sha256"] = self.attachment_sha256
            data["field"] = self.field
        if self.legacy_algorithm:
            data["legacy_algorithm"] = True
        return data


@dataclass(frozen=True, slots=True)
class Verification:
    mode: SignatureMode
    checks: tuple[SignatureCheck, ...] = ()
    warnings: tuple[str, ...] = ()
    # The canonical manifest digest when docaxis manifest signatures were verified.
    manifest_sha256: str | None = None
    verified_at: dt.datetime | None = None

    @property
    def signed(self) -> bool:
        return self.mode is SignatureMode.SIGNED

    def ledger_data(self) -> list[dict[str, object]]:
        """One `verification` fact per signature; a transport-attested acceptance (an audited
        exception) is a fact too. Development mode's unsigned acceptance is only the submission
        event's `signature_mode`."""
        facts = [check.ledger_data(self.manifest_sha256) for check in self.checks]
        if self.mode is SignatureMode.TRANSPORT_ATTESTED:
            facts.append({"result": self.mode.value, "signatures": len(self.checks)})
        return facts

    def to_json(self) -> str:
        return json.dumps(
            {
                "mode": self.mode.value,
                "manifest_sha256": self.manifest_sha256,
                "verified_at": self.verified_at.isoformat() if self.verified_at else None,
                "warnings": list(self.warnings),
                "checks": [
                    {
                        **{
                            name: getattr(check, name)
                            for name in SignatureCheck.__slots__
                            if name != "signed_at"
                        },
                        "signed_at": check.signed_at.isoformat() if check.signed_at else None,
                    }
                    for check in self.checks
                ],
            },
            ensure_ascii=False,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Verification:
        data: dict[str, Any] = json.loads(text)
        return cls(
            mode=SignatureMode(data["mode"]),
            manifest_sha256=data.get("manifest_sha256"),
            verified_at=_time(data.get("verified_at")),
            warnings=tuple(data.get("warnings", ())),
            checks=tuple(
                SignatureCheck(**{**check, "signed_at": _time(check.get("signed_at"))})
                for check in data.get("checks", ())
            ),
        )


def _time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)

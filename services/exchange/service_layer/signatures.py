"""The signature policy of a submission: both signatures and their chains, before storing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from docaxis_client.documents import document_signatures, signature_of
from docaxis_client.trust.canonical import format_utc
from docaxis_client.trust.chain import TrustStore
from docaxis_client.trust.errors import TrustError
from docaxis_client.trust.signatures import SignerRole, VerifiedSigners, verify_document
from services.common.errors import RejectedError
from services.common.trust import domain_error
from services.exchange.domain.model import Submission, manifest_of


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """One signature as verified at submission (what the ledger records of it: no names)."""

    role: str
    algorithm: str
    certificate_sha256: str
    serial: str
    signed_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Verification:
    # None for an unsigned document that the policy let through (development mode): nothing
    # was signed, so nothing needed a manifest.
    manifest_sha256: str | None
    signatures: tuple[VerifiedSignature, ...]

    def ledger_data(self) -> list[dict[str, str]]:
        return [
            {
                "result": "valid",
                "role": s.role,
                "algorithm": s.algorithm,
                "certificate_sha256": s.certificate_sha256,
                "serial": s.serial,
                "signed_at": format_utc(s.signed_at),
                "manifest_sha256": self.manifest_sha256 or "",
            }
            for s in self.signatures
        ]


class SignaturePolicy:
    """Verifies a submission's person and organisation signatures with the current trust store.

    `trust` returns the store of the moment (it changes when CRLs arrive), or None when the
    deployment has no anchors, in which case only unsigned documents can pass, and only when
    signatures are not `required`.
    """

    def __init__(
        self,
        trust: Callable[[], TrustStore | None],
        *,
        required: bool,
        max_signing_age: dt.timedelta | None = None,
    ) -> None:
        self._trust = trust
        self._required = required
        self._max_signing_age = max_signing_age

    async def verify(self, submission: Submission, *, at: dt.datetime) -> Verification:
        """Raises a DomainError with the trust core's reason (SIGNATURE_INVALID,
        CERTIFICATE_REVOKED, SENDER_MISMATCH, …) when the submission must be refused."""
        if not submission.signatures and not self._required:
            return Verification(None, ())
        try:
            manifest = manifest_of(submission.header, submission.attachments)
            signatures = document_signatures(
                [
                    signature_of(
                        SignerRole(s.role), s.algorithm, s.value, s.certificate_chain, s.signed_at
                    )
                    for s in submission.signatures
                ]
            )
            store = self._trust()
            if store is None:
                raise RejectedError(
                    "this deployment has no trust anchors to verify signatures with",
                    reason="UNTRUSTED_ISSUER",
                )
            # Chain building and RSA verification are CPU work: off the event loop.
            verified = await asyncio.to_thread(
                verify_document,
                manifest,
                signatures,
                store,
                at=at.astimezone(dt.UTC).replace(microsecond=0),
                expected_sender=submission.header.sender,
                max_signing_age=self._max_signing_age,
            )
        except TrustError as exc:
            raise domain_error(exc) from None
        return Verification(manifest.sha256_hex(), _signatures(verified))


def _signatures(verified: VerifiedSigners) -> tuple[VerifiedSignature, ...]:
    return tuple(
        VerifiedSignature(
            role=signer.role.value,
            algorithm=signer.algorithm.value,
            certificate_sha256=signer.certificate_sha256,
            serial=f"{signer.serial:x}",
            signed_at=signer.signed_at,
        )
        for signer in (verified.person, verified.organization)
    )

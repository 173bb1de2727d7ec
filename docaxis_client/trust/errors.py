"""Typed trust errors, each with a stable machine-readable ``reason``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import ClassVar, Self


class TrustError(Exception):
    """Base of every signature, certificate and manifest failure."""

    reason: ClassVar[str] = "TRUST_ERROR"
    # What the failure concerns when a document carries several signatures (the attachment,
    # the PDF signature field, the signature form); empty for manifest signatures.
    context: Mapping[str, str] = {}

    @property
    def meta(self) -> Mapping[str, str]:
        """String-only details, shaped for ``google.rpc.ErrorInfo.metadata``."""
        return {}

    def concerning(self, **context: str) -> Self:
        """Adds what this failure concerns (``attachment=…``, ``signature=…``)."""
        self.context = {**self.context, **context}
        return self

    def describe(self) -> str:
        """The message with its context in front: ``attachment a.pdf, signature Sig1: …``."""
        where = ", ".join(f"{key} {value}" for key, value in self.context.items())
        return f"{where}: {self}" if where else str(self)


class ManifestInvalidError(TrustError, ValueError):
    """A manifest field is malformed (the signer's input, not an attack)."""

    reason = "MANIFEST_INVALID"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"manifest field {field!r}: {problem}")
        self.field = field
        self.problem = problem

    @property
    def meta(self) -> Mapping[str, str]:
        return {"field": self.field}


class SignatureInvalidError(TrustError):
    """The signature bytes do not verify over what the role must have signed."""

    reason = "SIGNATURE_INVALID"

    def __init__(self, role: str, detail: str) -> None:
        super().__init__(f"{role} signature invalid: {detail}")
        self.role = role
        self.detail = detail

    @property
    def meta(self) -> Mapping[str, str]:
        return {"role": self.role}


class SignatureMissingError(TrustError):
    """A signature the policy requires is absent (e.g. the organisation's after the official's)."""

    reason = "SIGNATURE_MISSING"

    def __init__(self, role: str, detail: str) -> None:
        super().__init__(f"{role} signature missing: {detail}")
        self.role = role
        self.detail = detail

    @property
    def meta(self) -> Mapping[str, str]:
        return {"role": self.role}


class AlgorithmWeakError(TrustError):
    """A signature uses an algorithm the policy no longer accepts (SHA-1, MD5, short RSA)."""

    reason = "SIGNATURE_ALGORITHM_WEAK"

    def __init__(self, role: str, algorithm: str) -> None:
        super().__init__(f"{role} signature uses {algorithm}, which the signature policy refuses")
        self.role = role
        self.algorithm = algorithm

    @property
    def meta(self) -> Mapping[str, str]:
        return {"role": self.role, "algorithm": self.algorithm}


class SigningTimeError(TrustError):
    """A claimed signing time is naive, in the future, too old or out of order."""

    reason = "SIGNING_TIME_INVALID"

    def __init__(self, role: str, signed_at: dt.datetime, detail: str) -> None:
        super().__init__(f"{role} signing time {signed_at.isoformat()}: {detail}")
        self.role = role
        self.signed_at = signed_at
        self.detail = detail

    @property
    def meta(self) -> Mapping[str, str]:
        return {"role": self.role, "signed_at": self.signed_at.isoformat()}


class UnsupportedAlgorithmError(TrustError):
    """Key type, key size or algorithm name outside the accepted set."""

    reason = "UNSUPPORTED_ALGORITHM"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SenderMismatchError(TrustError):
    """The organisation signature belongs to an agency other than the sender."""

    reason = "SENDER_MISMATCH"

    def __init__(self, expected: str, actual: str | None) -> None:
        super().__init__(f"expected sender {expected}, organisation certificate is {actual}")
        self.expected = expected
        self.actual = actual

    @property
    def meta(self) -> Mapping[str, str]:
        return {"expected": self.expected, "actual": self.actual or ""}


class SignerMismatchError(TrustError):
    """The certificate is of the wrong kind for its role, or names someone else."""

    reason = "SIGNER_MISMATCH"

    def __init__(self, role: str, expected: str, actual: str | None) -> None:
        super().__init__(f"{role} signer: expected {expected}, certificate says {actual}")
        self.role = role
        self.expected = expected
        self.actual = actual

    @property
    def meta(self) -> Mapping[str, str]:
        return {"role": self.role, "expected": self.expected, "actual": self.actual or ""}


class CrlInvalidError(TrustError):
    """A CRL is not signed by a CA of the trust store, so it cannot be trusted."""

    reason = "CRL_INVALID"

    def __init__(self, issuer: str, detail: str) -> None:
        super().__init__(f"CRL from {issuer}: {detail}")
        self.issuer = issuer
        self.detail = detail

    @property
    def meta(self) -> Mapping[str, str]:
        return {"issuer": self.issuer}


class CertificateError(TrustError):
    """Base for failures that concern one certificate."""

    reason = "CERTIFICATE_INVALID"

    def __init__(self, subject: str, serial: int, detail: str) -> None:
        super().__init__(f"{subject} (serial {serial:x}): {detail}")
        self.subject = subject
        self.serial = serial
        self.detail = detail

    @property
    def meta(self) -> Mapping[str, str]:
        # Hex, as openssl and CRL viewers print serials.
        return {"subject": self.subject, "serial": f"{self.serial:x}"}


class CertificateExpiredError(CertificateError):
    """The certificate's notAfter is before the time it is judged at."""

    reason = "CERTIFICATE_EXPIRED"


class CertificateNotYetValidError(CertificateError):
    """The certificate's notBefore is after the time it is judged at.

    Kept apart from expiry: it usually means a clock or backdating problem, not a renewal.
    """

    reason = "CERTIFICATE_NOT_YET_VALID"


class CertificateRevokedError(CertificateError):
    """The certificate's serial is on a trusted CRL of its issuer."""

    reason = "CERTIFICATE_REVOKED"

    def __init__(self, subject: str, serial: int, revoked_at: dt.datetime) -> None:
        super().__init__(subject, serial, f"revoked at {revoked_at.isoformat()}")
        self.revoked_at = revoked_at


class UntrustedIssuerError(CertificateError):
    """No path from the certificate to a trust anchor of the store."""

    reason = "UNTRUSTED_ISSUER"


class CertificateUsageError(CertificateError):
    """The certificate is not allowed for this purpose (key usage, EKU, CA flag, identity)."""

    reason = "CERTIFICATE_USAGE"


class CertificateUnboundError(CertificateError):
    """A signer certificate that names no docaxis identity and that no directory binding ties to
    an agency (a national-CA certificate nobody bound yet)."""

    reason = "CERTIFICATE_UNBOUND"

    def __init__(self, subject: str, serial: int, spki_sha256: str) -> None:
        super().__init__(
            subject,
            serial,
            "names no docaxis identity and is bound to no agency in the directory "
            f"(bind its key, SPKI SHA-256 {spki_sha256}, with `docaxis cert bind`)",
        )
        self.spki_sha256 = spki_sha256

    @property
    def meta(self) -> Mapping[str, str]:
        return {**super().meta, "spki_sha256": self.spki_sha256}


class TimestampInvalidError(TrustError):
    """A signature's RFC 3161 timestamp token does not hold: it does not match the signature
    (message imprint), its TSA's signature does not verify, or the TSA is not trusted here."""

    reason = "TIMESTAMP_INVALID"

    def __init__(self, role: str, detail: str) -> None:
        super().__init__(f"{role} signature timestamp invalid: {detail}")
        self.role = role
        self.detail = detail

    @property
    def meta(self) -> Mapping[str, str]:
        return {"role": self.role}

"""OCSP (RFC 6960) for signers' certificates that name a responder, where the deployment allows it.

CRLs the axis holds stay the baseline (TrustStore); OCSP adds a fresher answer for certificates
whose Authority Information Access names a responder. It is the only check here that needs the
network, so it is off unless the deployment enables it, asks with a short timeout, and never
lets a responder's silence refuse a document: an unreachable or unusable responder is reported
as a warning next to the CRL result. A *revoked* answer refuses the signature, like a CRL entry.
Responses are trusted only when signed by the certificate's issuer or by a responder certificate
that issuer delegated (id-kp-OCSPSigning).
"""

from __future__ import annotations

import datetime as dt
import itertools
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from docaxis_client.trust.chain import describe
from docaxis_client.trust.errors import CertificateRevokedError

# How far a responder's clock may be off from ours.
_SKEW = dt.timedelta(minutes=5)
DEFAULT_TIMEOUT_S = 5.0

# Posts a DER request to a responder URL and returns the DER response (or raises OSError).
Transport = Callable[[str, bytes, float], bytes]


class OcspUnusableError(Exception):
    """The responder could not be asked or its answer cannot be trusted (soft failure)."""


@dataclass(frozen=True, slots=True)
class OcspResult:
    """What OCSP said of a chain: the good answers, and warnings about those not had."""

    checked: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# What a verification without an online check records.
NO_ONLINE_CHECK = OcspResult()

# A verifier's optional online revocation step over a validated chain (leaf first).
RevocationCheck = Callable[[Sequence[x509.Certificate], dt.datetime], OcspResult]


def responder_url(certificate: x509.Certificate) -> str | None:
    """The first http(s) OCSP responder the certificate names, or None."""
    try:
        access = certificate.extensions.get_extension_for_class(
            x509.AuthorityInformationAccess
        ).value
    except x509.ExtensionNotFound:
        return None
    for description in access:
        location = description.access_location
        if (
            description.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(location, x509.UniformResourceIdentifier)
            and location.value.startswith(("http://", "https://"))
        ):
            return location.value
    return None


def http_post(url: str, request: bytes, timeout_s: float) -> bytes:
    """The standard OCSP-over-HTTP POST (RFC 6960 appendix A)."""
    message = urllib.request.Request(  # noqa: S310 - the scheme is checked by responder_url
        url, data=request, headers={"Content-Type": "application/ocsp-request"}, method="POST"
    )
    with urllib.request.urlopen(message, timeout=timeout_s) as answer:  # noqa: S310
        body: bytes = answer.read(1024 * 1024)
    return body


def _verify_signature(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(
                response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm
            )
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(response.signature, response.tbs_response_bytes)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _responder(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> x509.Certificate:
    """The certificate that signed the response: the issuer, or one it delegated."""
    if _verify_signature(response, issuer):
        return issuer
    for candidate in response.certificates:
        try:
            candidate.verify_directly_issued_by(issuer)
            usage = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in usage and _verify_signature(response, candidate):
            return candidate
    raise OcspUnusableError("the response is not signed by the issuer or its delegated responder")


def status_of(
    answer: bytes, certificate: x509.Certificate, issuer: x509.Certificate, *, at: dt.datetime
) -> ocsp.OCSPCertStatus:
    """The verified status of `certificate` in a DER OCSP response (OcspUnusableError when
    the response cannot be trusted or does not answer for this certificate now)."""
    try:
        response = ocsp.load_der_ocsp_response(answer)
    except ValueError as exc:
        raise OcspUnusableError(f"not an OCSP response: {exc}") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OcspUnusableError(f"the responder answered {response.response_status.name}")
    _responder(response, issuer)
    for single in response.responses:
        if single.serial_number != certificate.serial_number:
            continue
        expected = ocsp.OCSPRequestBuilder().add_certificate(
            certificate, issuer, single.hash_algorithm
        )
        request = expected.build()
        if (single.issuer_key_hash, single.issuer_name_hash) != (
            request.issuer_key_hash,
            request.issuer_name_hash,
        ):
            continue
        if single.this_update_utc > at + _SKEW:
            raise OcspUnusableError("the response is dated in the future")
        if single.next_update_utc is not None and single.next_update_utc < at - _SKEW:
            raise OcspUnusableError("the response is stale (nextUpdate has passed)")
        return single.certificate_status
    raise OcspUnusableError("the response does not answer for this certificate")


class OcspChecker:
    """Asks each certificate's responder about it (leaf and intermediates)."""

    def __init__(
        self, *, timeout_s: float = DEFAULT_TIMEOUT_S, transport: Transport = http_post
    ) -> None:
        self._timeout_s = timeout_s
        self._transport = transport

    def __call__(self, chain: Sequence[x509.Certificate], at: dt.datetime) -> OcspResult:
        """Raises CertificateRevokedError on a verified *revoked* answer; anything else that
        keeps OCSP from answering becomes a warning (the CRL result stands)."""
        checked: list[str] = []
        warnings: list[str] = []
        for certificate, issuer in itertools.pairwise(chain):
            url = responder_url(certificate)
            if url is None:
                continue
            request = (
                ocsp.OCSPRequestBuilder()
                .add_certificate(certificate, issuer, hashes.SHA256())
                .build()
                .public_bytes(serialization.Encoding.DER)
            )
            try:
                answer = self._transport(url, request, self._timeout_s)
                status = status_of(answer, certificate, issuer, at=at)
            except (OSError, OcspUnusableError) as exc:
                warnings.append(f"OCSP for {describe(certificate)} unavailable ({exc}): CRLs only")
                continue
            if status is ocsp.OCSPCertStatus.REVOKED:
                raise CertificateRevokedError(
                    describe(certificate), certificate.serial_number, at
                ).concerning(revocation=f"OCSP {url}")
            if status is ocsp.OCSPCertStatus.UNKNOWN:
                warnings.append(f"OCSP {url} does not know {describe(certificate)}")
                continue
            checked.append(f"OCSP good from {url}")
        return OcspResult(tuple(checked), tuple(warnings))

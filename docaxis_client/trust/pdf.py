"""Signed PDFs (PAdES / CMS, Nghị định 30/2020): verify the official's and the agency's signatures.

The legally valid document is a PDF carrying the competent official's signature (person
certificate) and then, in a later revision, the agency's (organisation certificate); separate
appendices carry the organisation signature only (domain.md §7). pyHanko reads the PDF and checks
each CMS signature: integrity over the signed byte range, which revision it covers, whether the
revisions appended after it only add signatures, and the chain with its certificate validator
against our anchors and CRLs (no fetching). The chain is then judged again by the
:class:`~docaxis_client.trust.chain.TrustStore` every docaxis signature goes through, so a PDF
signature fails with the same typed reasons (``CERTIFICATE_EXPIRED``, ``CERTIFICATE_REVOKED``,
``UNTRUSTED_ISSUER``, …) as a manifest signature, and identities come from the same certificate
fields. Signing (:func:`sign_pdf`) is for the CLI, tests and the demo: a DMS signs with its own
tools.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import itertools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.requests_client import HTTPTimeStamper
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.pdf_embedded import (
    EmbeddedPdfSignature,
    async_validate_pdf_signature,
)
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko.sign.validation.utils import CMSAlgorithmUsagePolicy
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.policy_decl import DisallowWeakAlgorithmsPolicy
from pyhanko_certvalidator.registry import SimpleCertificateStore

from docaxis_client.trust import pdf_hex
from docaxis_client.trust.bindings import NO_BINDINGS, Bindings, SignerIdentity, signer_identity
from docaxis_client.trust.chain import CertificatePurpose, TrustStore, describe
from docaxis_client.trust.errors import (
    AlgorithmWeakError,
    SenderMismatchError,
    SignatureInvalidError,
    SignatureMissingError,
    SignerMismatchError,
    SigningTimeError,
    TimestampInvalidError,
    TrustError,
    UntrustedIssuerError,
)
from docaxis_client.trust.keys import (
    MIN_RSA_BITS,
    SigningIdentity,
    certificate_sha256,
    public_key_of,
)
from docaxis_client.trust.ocsp import NO_ONLINE_CHECK, OcspResult, RevocationCheck
from docaxis_client.trust.signatures import DEFAULT_CLOCK_SKEW, SignerRole

__all__ = [
    "PdfSigner",
    "PdfVerification",
    "SignedPdf",
    "demo_pdf",
    "read_pdf",
    "sign_pdf",
    "verify_pdf",
]

PDF_MAGIC = b"%PDF-"
# Digests a signature may use; SHA-1 only under a policy that accepts legacy algorithms.
_STRONG_DIGESTS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512"})
_LEGACY_DIGESTS = frozenset({"sha1"})
# Revisions appended after a signature may add signatures, fill forms and add validation data;
# anything beyond that (new content, changed pages) means the signed document was altered.
_ALLOWED_LATER_CHANGES = ModificationLevel.FORM_FILLING

# pyHanko logs every parsing quirk of real-world PDFs at WARNING; they are not ours to report.
logging.getLogger("pyhanko").setLevel(logging.ERROR)
# Its reader takes a signature's hex /Contents a byte at a time: most of a reading's CPU.
pdf_hex.install()


@dataclass(frozen=True, slots=True)
class PdfSigner:
    """One verified PDF signature and who made it."""

    role: SignerRole
    field_name: str
    subject: str
    serial: int
    agency_code: str
    full_name: str | None
    signed_at: dt.datetime
    # e.g. "ecdsa-sha256", "rsassa_pkcs1v15-sha1"
    algorithm: str
    # True when the signature covers the whole file; False when later revisions (signatures
    # only, as checked) were appended after it, as for the official's signature.
    covers_whole_file: bool
    certificate_sha256: str
    # Accepted only because the policy allows legacy algorithms (e.g. SHA-1).
    legacy_algorithm: bool
    # What an online revocation check (OCSP) said, when the caller asked for one.
    online_revocation: OcspResult = NO_ONLINE_CHECK
    # The time of the signature's RFC 3161 timestamp, verified against the TSA anchors; the
    # certificate was judged at it. None: no timestamp, the certificate was judged at reception.
    timestamped_at: dt.datetime | None = None
    # The TSA that made the timestamp (RFC 4514 subject).
    timestamp_authority: str = ""


@dataclass(frozen=True, slots=True)
class PdfVerification:
    """Every signature of one PDF, in signing order."""

    signers: tuple[PdfSigner, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        """What a reader should know although the PDF passed (legacy algorithms)."""
        legacy = tuple(
            f"{signer.role} signature {signer.field_name} uses legacy {signer.algorithm}"
            for signer in self.signers
            if signer.legacy_algorithm
        )
        online = tuple(w for signer in self.signers for w in signer.online_revocation.warnings)
        return legacy + online


def is_pdf(data: bytes) -> bool:
    """True for bytes that start like a PDF (within the first KiB, as readers allow)."""
    return PDF_MAGIC in data[:1024]


def _to_cryptography(certificate: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(certificate.dump())


def _to_asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _validation_context(
    trust: TrustStore, moment: dt.datetime, *, with_crls: bool = True
) -> ValidationContext:
    return ValidationContext(
        trust_roots=[_to_asn1(root) for root in trust.roots],
        other_certs=[_to_asn1(ca) for ca in trust.intermediates],
        crls=[crl.public_bytes(serialization.Encoding.DER) for crl in trust.crls]
        if with_crls
        else [],
        allow_fetching=False,
        # Hard-fail would refuse every certificate whose CA publishes no CRL to us; revocation
        # is enforced by TrustStore.validate with the CRLs the axis holds.
        revocation_mode="soft-fail",
        moment=moment,
    )


def _tsa_context(tsa: TrustStore | None, moment: dt.datetime) -> ValidationContext:
    # Timestamps are trusted only through the TSA anchors: never through the signers' CAs
    # (pyHanko's default), and not at all in a deployment that configured none.
    return ValidationContext(
        trust_roots=[] if tsa is None else [_to_asn1(root) for root in tsa.roots],
        other_certs=[] if tsa is None else [_to_asn1(ca) for ca in tsa.intermediates],
        crls=[]
        if tsa is None
        else [crl.public_bytes(serialization.Encoding.DER) for crl in tsa.crls],
        allow_fetching=False,
        revocation_mode="soft-fail",
        moment=moment,
    )


def _status(
    role: str,
    signature: EmbeddedPdfSignature,
    trust: TrustStore,
    tsa: TrustStore | None,
    *,
    moment: dt.datetime,
    at: dt.datetime,
    allow_legacy: bool,
) -> PdfSignatureStatus:
    try:
        # pyHanko's validation is async (it could fetch); nothing is fetched here, and the
        # callers run this in a worker thread, so a private event loop is the simple way.
        return asyncio.run(
            async_validate_pdf_signature(
                signature,
                # CRLs issued after `moment` (a timestamp's time) make pyHanko's validator
                # refuse the whole chain; revocation is TrustStore.validate's check anyway,
                # with the current CRLs and not time-sliced, so it is left out there.
                _validation_context(trust, moment, with_crls=moment >= at),
                ts_validation_context=_tsa_context(tsa, at),
                algorithm_policy=_algorithm_policy(allow_legacy),
            )
        )
    except SignatureValidationError as exc:
        raise SignatureInvalidError(role, f"not a usable PDF signature: {exc}") from exc


def _timestamp_of(
    role: str, status: PdfSignatureStatus, at: dt.datetime
) -> tuple[dt.datetime, str] | None:
    """The verified time of the signature's RFC 3161 timestamp and its TSA, or None without
    one; TIMESTAMP_INVALID for a token that does not hold."""
    token = status.timestamp_validity
    if token is None:
        return None
    if not (token.intact and token.valid):
        raise TimestampInvalidError(
            role, "the token does not match the signature or its TSA's signature does not verify"
        )
    tsa = token.signing_cert.subject.human_friendly
    if not token.trusted:
        raise TimestampInvalidError(role, f"the TSA {tsa} is not a TSA trusted here")
    stamped = token.timestamp.astimezone(dt.UTC)
    if stamped > at + DEFAULT_CLOCK_SKEW:
        raise TimestampInvalidError(role, f"stamped in the future ({stamped.isoformat()})")
    return stamped, tsa


def _algorithm_policy(allow_legacy: bool) -> CMSAlgorithmUsagePolicy:
    weak = frozenset({"md2", "md5"}) if allow_legacy else frozenset({"md2", "md5", "sha1"})
    return CMSAlgorithmUsagePolicy.lift_policy(
        DisallowWeakAlgorithmsPolicy(weak_hash_algos=weak, rsa_key_size_threshold=MIN_RSA_BITS)
    )


def _field_name(signature: EmbeddedPdfSignature) -> str:
    return str(signature.field_name or "")


def _digest_of(signature: EmbeddedPdfSignature) -> str:
    return str(signature.md_algorithm).lower()


def _mechanism_of(signature: EmbeddedPdfSignature) -> str:
    return str(signature.signer_info["signature_algorithm"].signature_algo)


def _check_algorithm(
    role: str, signature: EmbeddedPdfSignature, leaf: x509.Certificate, allow_legacy: bool
) -> bool:
    """True when the signature passes only as a legacy algorithm."""
    digest = _digest_of(signature)
    algorithm = f"{_mechanism_of(signature)}-{digest}"
    key = public_key_of(leaf)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise AlgorithmWeakError(role, f"an RSA key of {key.key_size} bits")
    if digest in _STRONG_DIGESTS:
        return False
    if digest in _LEGACY_DIGESTS and allow_legacy:
        return True
    raise AlgorithmWeakError(role, algorithm)


def _chain_of(role: str, signature: EmbeddedPdfSignature) -> list[x509.Certificate]:
    try:
        leaf = signature.signer_cert
        others = [cert for cert in signature.other_embedded_certs if cert.dump() != leaf.dump()]
        return [_to_cryptography(leaf), *(_to_cryptography(cert) for cert in others)]
    except (ValueError, KeyError, TypeError) as exc:
        # A damaged CMS blob: the certificates inside it no longer parse.
        raise SignatureInvalidError(role, f"unreadable signer certificates: {exc}") from exc


def _signed_at(
    role: str, signature: EmbeddedPdfSignature, status: PdfSignatureStatus
) -> dt.datetime:
    claimed = status.signer_reported_dt or signature.self_reported_timestamp
    if claimed is None:
        raise SigningTimeError(role, dt.datetime.min.replace(tzinfo=dt.UTC), "no signing time")
    if claimed.tzinfo is None or claimed.utcoffset() is None:
        raise SigningTimeError(role, claimed.replace(tzinfo=dt.UTC), "has no time zone")
    return claimed.astimezone(dt.UTC)


def _check_one(
    signature: EmbeddedPdfSignature,
    *,
    role: SignerRole,
    identity: SignerIdentity,
    last: bool,
    trust: TrustStore,
    agency: str,
    at: dt.datetime,
    allow_legacy: bool,
    revocation: RevocationCheck | None,
    tsa: TrustStore | None,
) -> PdfSigner:
    chain = _chain_of(role, signature)
    leaf = chain[0]
    legacy = _check_algorithm(role, signature, leaf, allow_legacy)
    status = _status(role, signature, trust, tsa, moment=at, at=at, allow_legacy=allow_legacy)
    stamp = _timestamp_of(role, status, at)
    # The time the certificate is judged at: a trusted timestamp proves the signature existed
    # then (PAdES B-T); without one nothing but the signer's own claim dates it, so it is
    # judged at reception (B-B): a certificate must not have expired before its signature
    # reached the axis unless a TSA vouches for the time.
    judged_at = at if stamp is None else stamp[0]
    if stamp is not None:
        status = _status(
            role, signature, trust, tsa, moment=judged_at, at=at, allow_legacy=allow_legacy
        )
    if not (status.intact and status.valid):
        raise SignatureInvalidError(role, "does not verify over the signed bytes")
    whole_file = status.coverage is SignatureCoverageLevel.ENTIRE_FILE
    if last and not whole_file:
        raise SignatureInvalidError(role, "the PDF was changed after its last signature")
    level = status.modification_level
    if not status.docmdp_ok or (level is not None and level > _ALLOWED_LATER_CHANGES):
        raise SignatureInvalidError(role, "the PDF was changed after this signature")
    signed_at = _signed_at(role, signature, status)
    if signed_at > at + DEFAULT_CLOCK_SKEW:
        raise SigningTimeError(role, signed_at, f"is in the future (checked at {at.isoformat()})")
    validated = trust.validate(chain, at=judged_at, purpose=CertificatePurpose.DOCUMENT_SIGNING)
    if not status.trusted:
        # Our store accepted what pyHanko's validator did not: refuse, naming its finding.
        raise UntrustedIssuerError(
            describe(leaf), leaf.serial_number, f"rejected by the PDF validator: {status.summary()}"
        )
    online = NO_ONLINE_CHECK if revocation is None else revocation(validated.certificates, at)
    signer = _signer(role, signature, validated.leaf, identity, signed_at, whole_file, legacy)
    return dataclasses.replace(
        signer,
        online_revocation=online,
        timestamped_at=None if stamp is None else stamp[0],
        timestamp_authority="" if stamp is None else stamp[1],
    )


def _signer(
    role: SignerRole,
    signature: EmbeddedPdfSignature,
    leaf: x509.Certificate,
    identity: SignerIdentity,
    signed_at: dt.datetime,
    whole_file: bool,
    legacy: bool,
) -> PdfSigner:
    return PdfSigner(
        role=role,
        field_name=_field_name(signature),
        subject=describe(leaf),
        serial=leaf.serial_number,
        agency_code=identity.agency_code,
        full_name=identity.full_name,
        signed_at=signed_at,
        algorithm=f"{_mechanism_of(signature)}-{_digest_of(signature)}",
        covers_whole_file=whole_file,
        certificate_sha256=certificate_sha256(leaf),
        legacy_algorithm=legacy,
    )


def _check_identity(
    role: SignerRole, leaf: x509.Certificate, identity: SignerIdentity | None, agency: str
) -> SignerIdentity:
    if role is SignerRole.PERSON:
        if identity is None or identity.role is not SignerRole.PERSON:
            raise SignerMismatchError(
                role, f"an official's certificate of {agency} signing first", describe(leaf)
            )
        if identity.agency_code != agency:
            raise SignerMismatchError(
                role, f"an official of {agency}", f"an official of {identity.agency_code}"
            )
        return identity
    if identity is None or identity.role is not SignerRole.ORGANIZATION:
        raise SignerMismatchError(role, f"the agency certificate of {agency}", describe(leaf))
    if identity.agency_code != agency:
        raise SenderMismatchError(agency, identity.agency_code)
    return identity


def _expected_roles(count: int, main: bool) -> list[SignerRole]:
    # The main document: the official first, then the agency (a second organisation signature,
    # e.g. a re-seal, is allowed). An appendix: the agency only.
    if not main:
        return [SignerRole.ORGANIZATION] * count
    return [SignerRole.PERSON] + [SignerRole.ORGANIZATION] * (count - 1)


# What pyHanko raises for bytes it cannot make sense of (found by tests/fuzz; it checks some
# structure with `assert`). Its reading is lazy, so these come from any step of a verification,
# not only from opening the file.
_UNREADABLE = (
    PdfError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    zlib.error,
)


def _signatures_of(data: bytes) -> list[EmbeddedPdfSignature]:
    if not is_pdf(data):
        raise SignatureInvalidError("pdf", "the attachment is not a PDF")
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        return sorted(
            reader.embedded_regular_signatures, key=lambda signature: signature.signed_revision
        )
    except _UNREADABLE as exc:
        raise SignatureInvalidError("pdf", f"unreadable PDF: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SignedPdf:
    """A PDF read once: its signatures in signing order, on the reader that read them.

    Counting them, taking their signer certificates (to look up bindings) and verifying them all
    work on this one reading (docs/perf, "One parse per PDF"); pyHanko reads the rest of the
    file lazily, from the same reader.
    """

    signatures: tuple[EmbeddedPdfSignature, ...]

    def signer_certificates(self) -> list[x509.Certificate]:
        """Each signature's signer certificate, to look up their bindings before verifying
        (none when one of them does not read: verification then says why)."""
        try:
            return [_chain_of("pdf", signature)[0] for signature in self.signatures]
        except (TrustError, *_UNREADABLE):
            return []


def read_pdf(data: bytes) -> SignedPdf:
    """The PDF's signatures, read once (SIGNATURE_INVALID for bytes no reader can open)."""
    return SignedPdf(tuple(_signatures_of(data)))


def verify_pdf(
    pdf: bytes | SignedPdf,
    trust: TrustStore,
    *,
    agency: str,
    main: bool,
    at: dt.datetime,
    allow_legacy: bool = False,
    revocation: RevocationCheck | None = None,
    bindings: Bindings = NO_BINDINGS,
    timestamps: TrustStore | None = None,
) -> PdfVerification:
    """Verify the signatures of a PDF an agency sends (its bytes, or as :func:`read_pdf` read
    them), in revision order.

    ``main`` is the document itself (official first, then the agency); otherwise an appendix
    (organisation signatures only). ``at`` is "now": no signature may claim a later time;
    chains are judged at each signature's signing time. Raises a
    :class:`~docaxis_client.trust.errors.TrustError` whose ``context`` names the signature field.
    ``revocation`` adds an online check (OCSP) to the CRLs of ``trust``. ``bindings`` say
    whom certificates without a docaxis identity (the national CA's) sign for. ``timestamps``
    holds the TSA anchors: a signature's RFC 3161 timestamp is verified against them and its
    time is when the signer's certificate is judged (TIMESTAMP_INVALID for one that does not
    hold, or when there are no TSA anchors); without a timestamp, the certificate is judged at
    ``at``.
    """
    signatures = (pdf if isinstance(pdf, SignedPdf) else read_pdf(pdf)).signatures
    if not signatures:
        role = SignerRole.PERSON if main else SignerRole.ORGANIZATION
        raise SignatureMissingError(role, "the PDF carries no signature")
    roles = _expected_roles(len(signatures), main)
    verified: list[PdfSigner] = []
    for index, (signature, role) in enumerate(zip(signatures, roles, strict=True)):
        try:
            leaf = _chain_of(role, signature)[0]
            found = signer_identity(leaf, bindings)
            if found is not None and found.role is not role and main and index == 0:
                raise SignerMismatchError(
                    role, "the official's signature first", f"{found.role} signature first"
                )
            identity = _check_identity(role, leaf, found, agency)
            signer = _check_one(
                signature,
                role=role,
                identity=identity,
                last=index == len(signatures) - 1,
                trust=trust,
                agency=agency,
                at=at,
                allow_legacy=allow_legacy,
                revocation=revocation,
                tsa=timestamps,
            )
        except TrustError as exc:
            raise exc.concerning(signature=_field_name(signature)) from None
        except _UNREADABLE as exc:
            raise SignatureInvalidError(role, f"unreadable PDF: {exc}") from exc
        verified.append(signer)
    if main and len(verified) < 2:
        raise SignatureMissingError(
            SignerRole.ORGANIZATION, "the agency's signature after the official's"
        ).concerning(signature=verified[0].field_name)
    for earlier, later in itertools.pairwise(verified):
        if later.signed_at < earlier.signed_at:
            raise SigningTimeError(
                later.role, later.signed_at, f"precedes the signature {earlier.field_name}"
            ).concerning(signature=later.field_name)
    return PdfVerification(tuple(verified))


# -- signing: the CLI, tests and the demo ---------------------------------------------------


def _signer_of(identity: SigningIdentity) -> signers.SimpleSigner:
    key = asn1_keys.PrivateKeyInfo.load(
        identity.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return signers.SimpleSigner(
        signing_cert=_to_asn1(identity.certificate),
        signing_key=key,
        cert_registry=SimpleCertificateStore.from_certs([_to_asn1(c) for c in identity.chain]),
    )


def sign_pdf(
    data: bytes,
    identity: SigningIdentity,
    *,
    field_name: str,
    digest: str | None = None,
    timestamper: TimeStamper | None = None,
) -> bytes:
    """Append a PAdES signature by ``identity`` in a new revision (an incremental update).

    ``digest`` defaults to SHA-256, or SHA-512 for Ed25519 keys (RFC 8419 pairs them).
    ``timestamper`` adds an RFC 3161 signature timestamp (:func:`http_timestamper` for a TSA's
    URL), as the national CA's signing tools do.
    """
    if digest is None:
        digest = "sha512" if isinstance(identity.key, ed25519.Ed25519PrivateKey) else "sha256"
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    metadata = signers.PdfSignatureMetadata(
        field_name=field_name, md_algorithm=digest, subfilter=SigSeedSubFilter.PADES
    )
    output = signers.sign_pdf(
        writer, metadata, signer=_signer_of(identity), timestamper=timestamper
    )
    return bytes(output.getvalue())


def http_timestamper(url: str) -> TimeStamper:
    """The RFC 3161 TSA at ``url`` (HTTP POST of application/timestamp-query)."""
    return HTTPTimeStamper(url, timeout=10)


def _pdf_text(text: str) -> str:
    # Helvetica's standard encoding has no Vietnamese letters: the demo page keeps to ASCII.
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    return ascii_text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def demo_pdf(lines: Sequence[str]) -> bytes:
    """A one-page A4 PDF showing ``lines`` (an unsigned test or demo document)."""
    writer = PdfFileWriter()
    font = writer.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Font"),
                generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
                generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
            }
        )
    )
    text = " ".join(f"({_pdf_text(line)}) Tj 0 -18 Td" for line in lines)  # one line per 18 points
    stream = writer.add_object(
        generic.StreamObject(stream_data=f"BT /F1 12 Tf 56 780 Td {text} ET".encode("ascii"))
    )
    page = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(n) for n in (0, 0, 595, 842)]
            ),
            generic.NameObject("/Resources"): generic.DictionaryObject(
                {
                    generic.NameObject("/Font"): generic.DictionaryObject(
                        {generic.NameObject("/F1"): font}
                    )
                }
            ),
            generic.NameObject("/Contents"): stream,
        }
    )
    writer.insert_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()

"""The edXML envelope's XML-DSig: an agency's enveloped signature over the whole package.

DMS software in Java and .NET signs the edXML file itself (domain.md §7): an enveloped
``ds:Signature`` in ``edXMLHeader`` whose one Reference (``URI=""``) covers the document, with
C14N 1.0, 1.1 or exclusive canonicalisation. signxml (over lxml) checks the signature; the
signer's certificate chain is judged by the same :class:`~docaxis_client.trust.chain.TrustStore`
as every other docaxis signature, and the signer must be the agency in ``From/OrganId``. What the
caller needs to bind the envelope to a submission (sender, recipients, code, attachment digests)
is read from the bytes the signature covers, never from the document around them, so a
signature-wrapping trick cannot show one header and sign another.

The verifier never rewrites the file: the hub keeps the bytes as received, so a recipient can
check the same signature with standard tools (``xmlsec1 --verify``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from docaxis_client.trust.bindings import NO_BINDINGS, Bindings, signer_identity
from docaxis_client.trust.chain import CertificatePurpose, TrustStore, describe
from docaxis_client.trust.errors import (
    AlgorithmWeakError,
    SenderMismatchError,
    SignatureInvalidError,
    SignatureMissingError,
    SignerMismatchError,
    TrustError,
)
from docaxis_client.trust.keys import (
    MIN_RSA_BITS,
    SigningIdentity,
    certificate_sha256,
    public_key_of,
)
from docaxis_client.trust.ocsp import NO_ONLINE_CHECK, OcspResult, RevocationCheck
from docaxis_client.trust.signatures import SignerRole

__all__ = [
    "Canonicalization",
    "EnvelopeFacts",
    "EnvelopeSigner",
    "EnvelopeVerification",
    "has_envelope_signature",
    "sign_envelope",
    "verify_envelope",
]

DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
_ROLE: Final = SignerRole.ORGANIZATION
_LEGACY_SIGNATURE_METHODS: Final = frozenset(
    {SignatureMethod.RSA_SHA1, SignatureMethod.ECDSA_SHA1, SignatureMethod.DSA_SHA1}
)
_STRONG_SIGNATURE_METHODS: Final = frozenset(
    {
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA384,
        SignatureMethod.RSA_SHA512,
        SignatureMethod.ECDSA_SHA256,
        SignatureMethod.ECDSA_SHA384,
        SignatureMethod.ECDSA_SHA512,
    }
)
_STRONG_DIGESTS: Final = frozenset(
    {DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}
)
# An attachment's decoded size is bounded like the gateway's reader bounds it (zip bombs).
DEFAULT_MAX_ATTACHMENT_BYTES: Final = 256 * 1024 * 1024
_MAX_DEPTH: Final = 64


class Canonicalization(enum.StrEnum):
    """The canonicalisations a DMS may sign with (comments never count)."""

    C14N_1_0 = CanonicalizationMethod.CANONICAL_XML_1_0.value
    C14N_1_1 = CanonicalizationMethod.CANONICAL_XML_1_1.value
    EXCLUSIVE = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value


@dataclass(frozen=True, slots=True)
class EnvelopeFacts:
    """What the signed envelope says, for binding it to the submission made from it."""

    sender: str
    recipients: tuple[str, ...]
    code_number: str
    code_notation: str
    # Lowercase hex SHA-256 of each attachment as the gateway stores it (unzipped).
    attachment_sha256: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EnvelopeSigner:
    """The agency that signed the envelope."""

    agency_code: str
    subject: str
    serial: int
    certificate_sha256: str
    # e.g. "rsa-sha256", "ecdsa-sha256", "rsa-sha1"
    algorithm: str
    canonicalization: str
    legacy_algorithm: bool
    online_revocation: OcspResult = NO_ONLINE_CHECK


@dataclass(frozen=True, slots=True)
class EnvelopeVerification:
    """A verified envelope signature and the facts it covers."""

    signer: EnvelopeSigner
    facts: EnvelopeFacts

    @property
    def warnings(self) -> tuple[str, ...]:
        """What a reader should know although the envelope passed."""
        legacy = (
            (f"envelope signature uses legacy {self.signer.algorithm}",)
            if self.signer.legacy_algorithm
            else ()
        )
        return legacy + self.signer.online_revocation.warnings


def _parser() -> etree.XMLParser:
    # No DTD, no entities, no network; lxml's own depth and size guards stay on (no huge_tree).
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        dtd_validation=False,
        remove_blank_text=False,
        huge_tree=False,
    )


def _parse(data: bytes) -> etree._Element:
    try:
        tree = etree.parse(io.BytesIO(data), _parser())
    except etree.XMLSyntaxError as exc:
        raise SignatureInvalidError(_ROLE, f"the envelope is not well-formed XML: {exc}") from exc
    if tree.docinfo.doctype:
        raise SignatureInvalidError(_ROLE, "the envelope declares a DTD")
    root = tree.getroot()
    if _depth(root) > _MAX_DEPTH:
        raise SignatureInvalidError(_ROLE, f"the envelope nests deeper than {_MAX_DEPTH}")
    return root


def _depth(root: etree._Element) -> int:
    deepest = 0
    for element in root.iter():
        depth = 0
        parent = element.getparent()
        while parent is not None and depth <= _MAX_DEPTH:
            depth += 1
            parent = parent.getparent()
        deepest = max(deepest, depth)
        if deepest > _MAX_DEPTH:
            break
    return deepest


def _signature_elements(root: etree._Element) -> list[etree._Element]:
    return list(root.iter(f"{{{DSIG_NS}}}Signature"))


def has_envelope_signature(data: bytes) -> bool:
    """True when the package carries a non-empty XML-DSig ``Signature`` (a dummy or empty
    ``Signature``/``DigitalSignature`` element, as some senders send, does not count)."""
    return any(len(element) for element in _signature_elements(_parse(data)))  # len(): child count


def _text(element: etree._Element, path: str) -> str:
    found = element.xpath(path)
    if not isinstance(found, list) or not found:
        return ""
    first = found[0]
    return str(first.text or "").strip() if isinstance(first, etree._Element) else ""


def _local(*names: str) -> str:
    return "/".join(f"*[local-name()='{name}']" for name in names)


def _unzip(payload: bytes, max_bytes: int) -> bytes:
    if not payload.startswith(b"PK\x03\x04"):
        return payload
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            entries = [info for info in archive.infolist() if not info.is_dir()]
            if len(entries) != 1 or entries[0].compress_type not in (
                zipfile.ZIP_STORED,
                zipfile.ZIP_DEFLATED,
            ):
                raise SignatureInvalidError(_ROLE, "an attachment is not a one-file zip")
            out = bytearray()
            with archive.open(entries[0]) as stream:
                while chunk := stream.read(64 * 1024):
                    out += chunk
                    if len(out) > max_bytes:
                        raise SignatureInvalidError(_ROLE, "an attachment is too large")
            return bytes(out)
    except (zipfile.BadZipFile, NotImplementedError, EOFError) as exc:
        raise SignatureInvalidError(_ROLE, f"an attachment is not a usable zip: {exc}") from exc


def _facts(signed: etree._Element, max_attachment_bytes: int) -> EnvelopeFacts:
    header = f".//{_local('edXMLHeader', 'MessageHeader')}"
    recipients = signed.xpath(f"{header}/{_local('To', 'OrganId')}")
    digests = []
    for attachment in signed.xpath(f".//{_local('AttachmentEncoded', 'Attachment')}"):
        assert isinstance(attachment, etree._Element)
        encoded = "".join(_text(attachment, _local("ContentTransferEncoded")).split())
        try:
            payload = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureInvalidError(_ROLE, "an attachment is not base64") from exc
        digests.append(hashlib.sha256(_unzip(payload, max_attachment_bytes)).hexdigest())
    return EnvelopeFacts(
        sender=_text(signed, f"{header}/{_local('From', 'OrganId')}"),
        recipients=tuple(
            str(item.text or "").strip() for item in recipients if isinstance(item, etree._Element)
        ),
        code_number=_text(signed, f"{header}/{_local('Code', 'CodeNumber')}"),
        code_notation=_text(signed, f"{header}/{_local('Code', 'CodeNotation')}"),
        attachment_sha256=tuple(digests),
    )


def _chain(signature: etree._Element) -> list[x509.Certificate]:
    certificates = []
    for element in signature.iter(f"{{{DSIG_NS}}}X509Certificate"):
        try:
            der = base64.b64decode("".join((element.text or "").split()), validate=True)
            certificates.append(x509.load_der_x509_certificate(der))
        except (binascii.Error, ValueError) as exc:
            raise SignatureInvalidError(_ROLE, f"unreadable certificate in KeyInfo: {exc}") from exc
    if not certificates:
        raise SignatureInvalidError(_ROLE, "KeyInfo carries no X509Certificate")
    # KeyInfo lists certificates in any order: the leaf is the one that issued no other.
    issuers = {cert.issuer for cert in certificates}
    leaves = [cert for cert in certificates if cert.subject not in issuers]
    leaf = leaves[0] if leaves else certificates[0]
    return [leaf, *(cert for cert in certificates if cert is not leaf)]


def _algorithm(signature: etree._Element, allow_legacy: bool) -> tuple[str, str, bool]:
    method_uri = _attribute(signature, "SignedInfo/SignatureMethod")
    digest_uris = [
        str(element.get("Algorithm", ""))
        for element in signature.iter(f"{{{DSIG_NS}}}DigestMethod")
    ]
    c14n = _attribute(signature, "SignedInfo/CanonicalizationMethod")
    try:
        method = SignatureMethod(method_uri)
        digests = [DigestAlgorithm(uri) for uri in digest_uris]
    except ValueError:
        raise AlgorithmWeakError(_ROLE, method_uri or "no signature method") from None
    name = method.name.lower().replace("_", "-")
    legacy = method in _LEGACY_SIGNATURE_METHODS or any(
        digest not in _STRONG_DIGESTS for digest in digests
    )
    if method not in _STRONG_SIGNATURE_METHODS | _LEGACY_SIGNATURE_METHODS:
        raise AlgorithmWeakError(_ROLE, name)
    if legacy and not (
        allow_legacy and all(d in _STRONG_DIGESTS | {DigestAlgorithm.SHA1} for d in digests)
    ):
        raise AlgorithmWeakError(_ROLE, name)
    return name, c14n, legacy


def _attribute(signature: etree._Element, path: str) -> str:
    element = signature.find("/".join(f"{{{DSIG_NS}}}{part}" for part in path.split("/")))
    return "" if element is None else str(element.get("Algorithm", ""))


def signer_certificate(data: bytes) -> x509.Certificate | None:
    """The envelope signature's signer certificate, to look up its binding before verifying
    (None when there is no readable one: verification then says why)."""
    try:
        signatures = [element for element in _signature_elements(_parse(data)) if len(element)]
        return _chain(signatures[0])[0] if len(signatures) == 1 else None
    except (TrustError, etree.LxmlError, ValueError):
        return None


def verify_envelope(
    data: bytes,
    trust: TrustStore,
    *,
    agency: str,
    at: dt.datetime,
    allow_legacy: bool = False,
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
    revocation: RevocationCheck | None = None,
    bindings: Bindings = NO_BINDINGS,
) -> EnvelopeVerification:
    """Verify the envelope signature of an edXML package sent by ``agency``.

    Raises ``SIGNATURE_MISSING`` when there is none, ``SIGNATURE_ALGORITHM_WEAK`` for SHA-1
    unless ``allow_legacy``, ``SIGNATURE_INVALID`` when it does not verify, certificate reasons
    for the chain (judged at ``at``: XML-DSig carries no signing time), ``SIGNER_MISMATCH`` /
    ``SENDER_MISMATCH`` when the signer is not the agency in ``From/OrganId``,
    ``CERTIFICATE_UNBOUND`` for a certificate without a docaxis identity that ``bindings`` do
    not tie to an agency.
    """
    root = _parse(data)
    signatures = [element for element in _signature_elements(root) if len(element)]
    if not signatures:
        raise SignatureMissingError(_ROLE, "the envelope carries no XML-DSig signature")
    if len(signatures) > 1:
        raise SignatureInvalidError(_ROLE, "the envelope carries more than one signature")
    signature = signatures[0]
    references = list(signature.iter(f"{{{DSIG_NS}}}Reference"))
    if len(references) != 1 or references[0].get("URI") != "":
        # URI="" is the only reference form accepted: the whole package, nothing less.
        raise SignatureInvalidError(_ROLE, "the signature must cover the whole package (URI='')")
    algorithm, c14n, legacy = _algorithm(signature, allow_legacy)
    chain = _chain(signature)
    leaf = chain[0]
    key = public_key_of(leaf)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise AlgorithmWeakError(_ROLE, f"an RSA key of {key.key_size} bits")
    methods = _STRONG_SIGNATURE_METHODS | (_LEGACY_SIGNATURE_METHODS if allow_legacy else set())
    digests = _STRONG_DIGESTS | ({DigestAlgorithm.SHA1} if allow_legacy else set())
    try:
        result = XMLVerifier().verify(
            data,
            x509_cert=leaf,
            expect_config=SignatureConfiguration(
                require_x509=True,
                location=".//",
                expect_references=1,
                signature_methods=frozenset(methods),
                digest_algorithms=frozenset(digests),
                verification_time=at,
            ),
        )
    # signxml parses the bytes again with its own parser, checks the Signature element against
    # the XML-DSig schema and canonicalises: lxml's errors from any of these; an empty or broken
    # SignatureValue fails in base64 (TypeError, binascii's ValueError). Found by tests/fuzz.
    except (InvalidSignature, InvalidInput, etree.LxmlError, TypeError, ValueError) as exc:
        raise SignatureInvalidError(_ROLE, f"does not verify: {exc}") from exc
    assert isinstance(result, VerifyResult)  # expect_references=1: one result
    signed = result.signed_xml
    if signed is None or signed.tag != root.tag:
        raise SignatureInvalidError(_ROLE, "the signature does not cover the whole package")
    facts = _facts(signed, max_attachment_bytes)
    if facts.sender != agency:
        raise SenderMismatchError(agency, facts.sender or None)
    validated = trust.validate(chain, at=at, purpose=CertificatePurpose.DOCUMENT_SIGNING)
    identity = signer_identity(validated.leaf, bindings)
    if identity is None or identity.role is not SignerRole.ORGANIZATION:
        raise SignerMismatchError(_ROLE, f"the agency certificate of {agency}", describe(leaf))
    code = identity.agency_code
    if code != agency:
        raise SenderMismatchError(agency, code)
    online = NO_ONLINE_CHECK if revocation is None else revocation(validated.certificates, at)
    return EnvelopeVerification(
        signer=EnvelopeSigner(
            agency_code=code,
            subject=describe(leaf),
            serial=leaf.serial_number,
            certificate_sha256=certificate_sha256(leaf),
            algorithm=algorithm,
            canonicalization=c14n,
            legacy_algorithm=legacy,
            online_revocation=online,
        ),
        facts=facts,
    )


def _signature_method(identity: SigningIdentity, digest: str) -> SignatureMethod:
    family = "ECDSA" if isinstance(identity.key, ec.EllipticCurvePrivateKey) else "RSA"
    return SignatureMethod[f"{family}_{digest.upper()}"]


def sign_envelope(
    data: bytes,
    identity: SigningIdentity,
    *,
    canonicalization: Canonicalization = Canonicalization.C14N_1_0,
    digest: str = "sha256",
    chain: Sequence[x509.Certificate] | None = None,
) -> bytes:
    """An enveloped signature over the whole package, placed at the end of ``edXMLHeader``.

    For the CLI, tests and the demo: a DMS signs with its own library. An existing envelope
    signature is replaced.
    """
    key = identity.key
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("XML-DSig signing needs an EC or RSA key")
    root = _parse(data)
    for old in _signature_elements(root):
        parent = old.getparent()
        if parent is not None:
            parent.remove(old)
    headers = root.xpath(f".//{_local('edXMLHeader')}")
    if not isinstance(headers, list) or not headers or not isinstance(headers[0], etree._Element):
        raise ValueError("not an edXML package: no edXMLHeader")
    placeholder = etree.SubElement(headers[0], f"{{{DSIG_NS}}}Signature", nsmap={"ds": DSIG_NS})
    placeholder.set("Id", "placeholder")
    certificates = list(chain or identity.chain)
    signed = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=_signature_method(identity, digest),
        digest_algorithm=DigestAlgorithm[digest.upper()],
        c14n_algorithm=CanonicalizationMethod(canonicalization.value),
    ).sign(
        root,
        key=key,
        cert=[c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates],
        always_add_key_value=False,
    )
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))

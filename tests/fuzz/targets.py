"""The fuzz targets: every parser that takes bytes from outside, with the refusals it may give.

Seeds are real inputs made the way senders make them (demo PKI, the edXML corpus, signed PDFs
and envelopes, signed checkpoints), built once per process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives import serialization
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf.message import DecodeError

from docaxis_client.credentials import parse_crl
from docaxis_client.documents import sign_submission
from docaxis_client.ledger.entry import EntryError, parse_entry
from docaxis_client.ledger.note import NoteError, NoteVerifier, open_checkpoint
from docaxis_client.trust.chain import agency_code_of, person_of, role_of
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate
from docaxis_client.trust.errors import TrustError
from docaxis_client.trust.keys import load_der_chain
from docaxis_client.trust.pdf import demo_pdf, sign_pdf, verify_pdf
from docaxis_client.trust.xmldsig import sign_envelope, verify_envelope
from gateway import bounded_json
from gateway.axis import signatures_from_form
from gateway.edxml import edxml_bytes
from gateway.edxml.attachments import PayloadError, unpack
from gateway.edxml.dates import parse_date, parse_timestamp
from gateway.edxml.errors import EdxmlError
from gateway.edxml.mapping import document_header, status_values
from gateway.edxml.model import DocumentPackage, StatusPackage
from gateway.edxml.reader import ReaderLimits, read_edxml
from gateway.problems import Problem
from gateway.rest.app import message_from_json
from services.common.errors import DomainError
from services.common.trust import TrustRegistry
from services.exchange.domain.model import submission_problems
from services.exchange.entrypoints.convert import submission_from_pb
from services.exchange.service_layer.signatures import SignatureVerifier
from tests.fuzz.harness import Target
from tests.fuzz.mutations import XML_EDITS
from tests.testdata import corpus_files
from tests.unit.edxml.builders import a_document, a_status, zip_bytes
from tests.unit.ledger.synthetic import ORIGIN as LEDGER_ORIGIN
from tests.unit.ledger.synthetic import build_bodies, checkpoint_note, fixed_signer
from tests.unit.trust.factories import OFFICIAL, RECIPIENTS, SENDER, SENDER_NAME

_KiB = 1024
_LIMITS = ReaderLimits(
    max_xml_bytes=256 * _KiB,
    max_attachments=8,
    max_attachment_bytes=64 * _KiB,
    max_total_attachment_bytes=256 * _KiB,
)


def _now() -> dt.datetime:
    # Every seed is signed now; the parsers judge them a minute later.
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=1)


@functools.cache
def _ca() -> DemoCA:
    return DemoCA.create()


@functools.cache
def _agency() -> IssuedCertificate:
    return _ca().issue_agency(SENDER, SENDER_NAME)


@functools.cache
def _official() -> IssuedCertificate:
    return _ca().issue_person(OFFICIAL, SENDER)


@functools.cache
def _registry() -> TrustRegistry:
    ca = _ca()
    assert ca.intermediate is not None
    return TrustRegistry([ca.root.certificate], [ca.intermediate.certificate])


# --- edXML ------------------------------------------------------------------------------------


@functools.cache
def edxml_seeds() -> tuple[bytes, ...]:
    corpus = [found.path.read_bytes() for found in corpus_files("edxml", "*.edxml")]
    return (*corpus, edxml_bytes(a_document()), edxml_bytes(a_status()))


def _read_edxml(data: bytes) -> None:
    result = read_edxml(data, limits=_LIMITS)
    package = result.package
    # What the gateway does next with a package that read cleanly must not fail either.
    if result.report.ok and isinstance(package, DocumentPackage):
        document_header(package)
    elif result.report.ok and isinstance(package, StatusPackage):
        status_values(package)


def attachment_seeds() -> tuple[bytes, ...]:
    return (zip_bytes({"a.pdf": b"%PDF-1.7 demo"}), b"%PDF-1.7 plain", b"PK\x03\x04")


def _unpack(data: bytes) -> None:
    unpack(data, max_bytes=64 * _KiB, path="Attachment[0]")


def _dates(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    parse_date(text)
    parse_timestamp(text)


# --- JSON bodies (REST and the /axis signatures field) ------------------------------------------


def json_seeds() -> tuple[bytes, ...]:
    header = (
        b'{"header": {"sender": "000.00.00.H45", "recipients": ["000.00.00.G22"],'
        b' "code": {"number": "12", "notation": "UBND-VP"}, "promulgationDate": "2025-07-01",'
        b' "subject": "Ve viec", "priority": "PRIORITY_URGENT"},'
        b' "attachments": [{"name": "a.pdf", "size": "7", "sha256": "00"}]}'
    )
    return (header, b"[]", b'[{"role": "SIGNATURE_ROLE_PERSON", "signature": "AAAA"}]')


def _rest_body(data: bytes) -> None:
    message_from_json(data, pb.SubmitRequest)


def _axis_signatures(data: bytes) -> None:
    signatures_from_form(data.decode("utf-8", "replace"))


def _bounded_json(data: bytes) -> None:
    bounded_json.loads(data)


# --- Certificates, CRLs --------------------------------------------------------------------------


@functools.cache
def certificate_seeds() -> tuple[bytes, ...]:
    der = serialization.Encoding.DER
    return (
        _agency().certificate.public_bytes(der),
        _official().certificate.public_bytes(der),
        _ca().root.certificate.public_bytes(der),
    )


@functools.cache
def _issuers() -> tuple[bytes, ...]:
    """The agency's chain above its leaf, as a sender presents it."""
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in _agency().chain[1:])


def _certificate(data: bytes) -> None:
    chain = load_der_chain([data, *_issuers()])
    leaf = chain[0]
    agency_code_of(leaf)
    person_of(leaf)
    role_of(leaf)
    _ca().trust_store().validate(chain, at=_now())


@functools.cache
def crl_seeds() -> tuple[bytes, ...]:
    ca = _ca()
    ca.revoke(ca.issue_agency(SENDER, "revoked").certificate)
    der = serialization.Encoding.DER
    return tuple(crl.public_bytes(der) for crl in ca.crls())


def _crl(data: bytes) -> None:
    _registry().check_crl(parse_crl(data))


# --- Signed PDFs and edXML envelopes -------------------------------------------------------------


@functools.cache
def pdf_seeds() -> tuple[bytes, ...]:
    page = demo_pdf(["Cong van 1234/UBND-VP", "Ve viec trien khai"])
    person = sign_pdf(page, _official().identity(), field_name="ChuKyNguoiKy")
    return (page, person, sign_pdf(person, _agency().identity(), field_name="ChuKyCoQuan"))


def _pdf(data: bytes) -> None:
    verify_pdf(data, _ca().trust_store(), agency=SENDER, main=True, at=_now())


# The sender of the edXML builders' packages.
ENVELOPE_SENDER = "000.00.11.H40"


@functools.cache
def envelope_seeds() -> tuple[bytes, ...]:
    agency = _ca().issue_agency(ENVELOPE_SENDER, "Sở Tài chính")
    return (sign_envelope(edxml_bytes(a_document()), agency.identity()),)


def _envelope(data: bytes) -> None:
    verify_envelope(
        data,
        _ca().trust_store(),
        agency=ENVELOPE_SENDER,
        at=_now(),
        max_attachment_bytes=64 * _KiB,
    )


# --- Submit: the gRPC request, its checks and its signatures -------------------------------------


@functools.cache
def submit_seeds() -> tuple[bytes, ...]:
    header = common_pb2.DocumentHeader(
        sender=SENDER,
        recipients=list(RECIPIENTS),
        code=common_pb2.DocumentCode(number="12", notation="UBND-VP"),
        promulgation_place="Khánh Hòa",
        promulgation_date="2025-07-01",
        document_type=1,
        type_name="Công văn",
        subject="Về việc triển khai chính quyền hai cấp",
        signer=common_pb2.Signer(competence="KT. CHỦ TỊCH", position="Phó Chủ tịch"),
        due_date="2025-07-15",
        priority=common_pb2.PRIORITY_URGENT,
        business_type=common_pb2.BUSINESS_TYPE_NEW,
    )
    header.signer.full_name = OFFICIAL
    content = b"%PDF-1.7 demo"
    attachments = [
        common_pb2.AttachmentRef(
            name="2491-STC-NS.pdf",
            media_type="application/pdf",
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
        )
    ]
    signatures = sign_submission(
        header,
        attachments,
        person=_official().identity(),
        organization=_agency().identity(),
    )
    request = pb.SubmitRequest(
        consignment_id="c-1", header=header, attachments=attachments, signatures=signatures
    )
    return (request.SerializeToString(),)


@functools.cache
def _verifier() -> SignatureVerifier:
    store = _ca().trust_store()
    return SignatureVerifier(lambda: store, required=True)


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def _submit(data: bytes) -> None:
    submission, problems = submission_from_pb(pb.SubmitRequest.FromString(data))
    now = _now()
    problems += submission_problems(
        submission, code_problem=lambda code: None, today=now.date(), max_attachment_bytes=_KiB
    )
    if not problems:
        _loop().run_until_complete(_verifier().verify(submission, at=now))


# --- The ledger: entries and checkpoints an auditor reads ----------------------------------------


@functools.cache
def entry_seeds() -> tuple[bytes, ...]:
    return tuple(build_bodies(6, documents=2))


@functools.cache
def checkpoint_seeds() -> tuple[bytes, ...]:
    bodies = build_bodies(6, documents=2)
    return (checkpoint_note(bodies, 3), checkpoint_note(bodies, 6))


@functools.cache
def _log_verifier() -> NoteVerifier:
    return fixed_signer().verifier


def _checkpoint(data: bytes) -> None:
    open_checkpoint(data, LEDGER_ORIGIN, [_log_verifier()])


def seeds_of(name: str) -> Sequence[bytes]:
    return SEEDS[name]()


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("edxml", _read_edxml, (EdxmlError,)),
        Target("edxml-attachment", _unpack, (PayloadError, EdxmlError)),
        Target("edxml-dates", _dates, ()),
        Target("bounded-json", _bounded_json, (bounded_json.JsonError,)),
        Target("rest-body", _rest_body, (Problem,)),
        Target("axis-signatures", _axis_signatures, (Problem,)),
        Target("certificate", _certificate, (ValueError, TrustError)),
        Target("crl", _crl, (ValueError, TrustError)),
        Target("pdf-signature", _pdf, (TrustError,)),
        Target("edxml-signature", _envelope, (TrustError,)),
        Target("submit", _submit, (DecodeError, DomainError)),
        Target("ledger-entry", parse_entry, (EntryError,)),
        Target("ledger-checkpoint", _checkpoint, (NoteError,)),
    )
}
SEEDS: dict[str, Callable[[], Sequence[bytes]]] = {
    "edxml": edxml_seeds,
    "edxml-attachment": attachment_seeds,
    "edxml-dates": lambda: (b"2025-07-01", b"01/07/2025", b"2025-07-01T08:30:00+07:00"),
    "bounded-json": json_seeds,
    "rest-body": json_seeds,
    "axis-signatures": json_seeds,
    "certificate": certificate_seeds,
    "crl": crl_seeds,
    "pdf-signature": pdf_seeds,
    "edxml-signature": envelope_seeds,
    "submit": submit_seeds,
    "ledger-entry": entry_seeds,
    "ledger-checkpoint": checkpoint_seeds,
}
# Which targets take XML (and get the element-level edits too).
XML_TARGETS = frozenset({"edxml", "edxml-signature"})
EDITS = dict.fromkeys(XML_TARGETS, XML_EDITS)

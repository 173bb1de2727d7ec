"""Submissions signed the way agencies sign (PAdES, XML-DSig), under each agency's policy."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable

import pytest

from docaxis_client.trust.bindings import CertificateBinding
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate
from docaxis_client.trust.keys import key_id
from docaxis_client.trust.pdf import SignedPdf, demo_pdf, read_pdf, sign_pdf
from docaxis_client.trust.signatures import SignerRole, sign_document
from docaxis_client.trust.xmldsig import sign_envelope
from docaxis_client.vietnam import today_in_vietnam
from gateway.edxml import edxml_bytes
from services.common.errors import DomainError
from services.directory.domain.codes import code_problem
from services.exchange.domain.model import (
    AttachmentRef,
    Header,
    Signature,
    Submission,
    manifest_of,
)
from services.exchange.domain.signature_rules import SignatureForm, SignatureRules
from services.exchange.domain.verification import SignatureMode
from services.exchange.service_layer import signatures
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.signatures import SignatureVerifier
from tests.fakes import FakeDirectoryLookup, FakeDocumentStore
from tests.unit.edxml.builders import a_document
from tests.unit.exchange.builders import EDUCATION, HEALTH, SENDER, header, upload

OFFICIAL = "Nguyễn Văn Đức"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Scene:
    ca: DemoCA
    person: IssuedCertificate
    agency: IssuedCertificate
    store: FakeDocumentStore
    directory: FakeDirectoryLookup
    exchange: ExchangeHandlers

    async def signed_pdf(self, *, person: bool = True, agency: bool = True) -> bytes:
        # pyHanko's synchronous signing runs its own event loop: a worker thread, as in a DMS.
        return await asyncio.to_thread(self._signed_pdf, person, agency)

    def _signed_pdf(self, person: bool, agency: bool) -> bytes:
        pdf = demo_pdf(["Cong van 7816"])
        if person:
            pdf = sign_pdf(pdf, self.person.identity(), field_name="ChuKyNguoiKy")
        if agency:
            pdf = sign_pdf(pdf, self.agency.identity(), field_name="ChuKyCoQuan")
        return pdf

    async def submit(
        self, *attachments: bytes, envelope: bytes | None = None, manifest_signed: bool = False
    ) -> Submission:
        """`manifest_signed`: the docaxis manifest signatures of both roles too."""
        refs = tuple([await upload(self.exchange, SENDER, data) for data in attachments])
        envelope_ref = None
        if envelope is not None:
            uploaded = await upload(self.exchange, SENDER, envelope)
            envelope_ref = dataclasses.replace(
                uploaded, name="envelope.edxml", media_type="application/xml"
            )
        head = dataclasses.replace(header(), promulgation_date=today_in_vietnam(_now()))
        if manifest_signed:
            head = dataclasses.replace(head, signer_full_name=OFFICIAL)
        sent = Submission(
            "c-1",
            head,
            refs,
            signatures=self._manifest_signatures(head, refs) if manifest_signed else (),
            envelope=envelope_ref,
        )
        await self.exchange.submit(SENDER, sent)
        return sent

    def _manifest_signatures(
        self, head: Header, refs: tuple[AttachmentRef, ...]
    ) -> tuple[Signature, ...]:
        pair = sign_document(
            manifest_of(head, refs),
            person=self.person.identity(),
            organization=self.agency.identity(),
        )
        return tuple(
            Signature(s.role.value, s.algorithm.value, s.signature, s.chain, s.signed_at)
            for s in (pair.person, pair.organization)
        )

    def verification(self) -> tuple[SignatureMode, list[tuple[str, str]]]:
        (document,) = self.store.documents.values()
        assert document.verification is not None
        checks = [(c.form, c.role) for c in document.verification.checks]
        return document.verification.mode, checks


@pytest.fixture
def scene(ca: DemoCA) -> Scene:
    store = FakeDocumentStore(clock=_now)
    directory = FakeDirectoryLookup(SENDER, HEALTH, EDUCATION)
    exchange = ExchangeHandlers(
        store,
        directory,
        code_problem,
        clock=_now,
        signatures=SignatureVerifier(ca.trust_store, required=True),
    )
    return Scene(
        ca,
        ca.issue_person(OFFICIAL, SENDER),
        ca.issue_agency(SENDER, "Văn phòng Chính phủ"),
        store,
        directory,
        exchange,
    )


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA.create()


async def _refusal(scene: Scene, *attachments: bytes, envelope: bytes | None = None) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await scene.submit(*attachments, envelope=envelope)
    assert not scene.store.documents, "a refused document is not stored"
    return caught.value


async def test_a_pdf_signed_by_the_official_and_the_agency_is_accepted_without_manifest_signatures(
    scene: Scene,
) -> None:
    """A DMS that signs only the PDF, as ND30 prescribes, is accepted; both checks stored."""
    await scene.submit(await scene.signed_pdf())

    mode, checks = scene.verification()
    assert mode is SignatureMode.SIGNED
    assert checks == [("pades", "person"), ("pades", "organization")]
    facts = [e.data for e in scene.store.ledger if e.entry_type == "verification"]
    assert [(f["form"], f["role"]) for f in facts] == checks
    assert all(OFFICIAL not in str(fact) for fact in facts)


async def test_an_unsigned_document_is_signature_missing_naming_the_pdf(scene: Scene) -> None:
    """Outside development, no signature in any accepted form is SIGNATURE_MISSING."""
    error = await _refusal(scene, demo_pdf(["unsigned"]))

    assert error.reason == "SIGNATURE_MISSING"
    assert error.meta["attachment"] == "văn bản.pdf"


async def test_a_pdf_with_the_officials_signature_only_is_signature_missing(scene: Scene) -> None:
    """The agency's signature must follow the official's."""
    error = await _refusal(scene, await scene.signed_pdf(agency=False))

    assert error.reason == "SIGNATURE_MISSING"
    assert error.meta["signature"] == "ChuKyNguoiKy"


async def test_a_revoked_agency_certificate_is_refused_naming_attachment_and_signature(
    scene: Scene,
) -> None:
    """The CRLs the axis holds apply to PDF signatures too."""
    pdf = await scene.signed_pdf()
    scene.ca.revoke(scene.agency.certificate)

    error = await _refusal(scene, pdf)

    assert error.reason == "CERTIFICATE_REVOKED"
    assert (error.meta["attachment"], error.meta["signature"]) == ("văn bản.pdf", "ChuKyCoQuan")


async def test_a_policy_without_pades_does_not_count_pdf_signatures(scene: Scene) -> None:
    """An agency whose policy wants manifest signatures cannot substitute PDF ones."""
    scene.directory.policies[SENDER] = SignatureRules(
        person_forms=frozenset({SignatureForm.MANIFEST}),
        organization_forms=frozenset({SignatureForm.MANIFEST}),
    )

    error = await _refusal(scene, await scene.signed_pdf())

    assert error.reason == "SIGNATURE_MISSING"


async def test_a_transport_attested_agency_sends_unsigned_and_it_is_marked_and_ledgered(
    scene: Scene,
) -> None:
    """Only where the administrator allowed it; the document is marked unsigned."""
    scene.directory.policies[SENDER] = SignatureRules(transport_attested=True)

    await scene.submit(demo_pdf(["unsigned"]))

    mode, checks = scene.verification()
    assert (mode, checks) == (SignatureMode.TRANSPORT_ATTESTED, [])
    facts = [e.data for e in scene.store.ledger if e.entry_type == "verification"]
    assert facts == [{"result": "transport_attested", "signatures": 0}]


def _signature_counts(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The threads the verifier read a PDF's signatures on, one entry per reading (the
    verifier's own name for it: what it calls in the thread it hops to)."""
    counted_on: list[threading.Thread] = []
    read = read_pdf

    def counted(data: bytes) -> SignedPdf:
        counted_on.append(threading.current_thread())
        return read(data)

    monkeypatch.setattr(signatures, "read_pdf", counted)
    return counted_on


async def test_bytes_that_are_not_a_pdf_are_unsigned_without_counting_signatures(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attachment named and typed as a PDF whose bytes are not one carries no signature:
    marked unsigned where the policy allows it, SIGNATURE_MISSING naming it where it does not,
    and its signatures never counted (no thread's hop for it)."""
    counted_on = _signature_counts(monkeypatch)
    not_a_pdf = b"PK\x03\x04" + bytes(range(256)) * 40  # 10 KiB, as the bench's attachment

    error = await _refusal(scene, not_a_pdf)
    assert (error.reason, error.meta["attachment"]) == ("SIGNATURE_MISSING", "văn bản.pdf")
    scene.directory.policies[SENDER] = SignatureRules(transport_attested=True)
    await scene.submit(not_a_pdf)

    assert scene.verification() == (SignatureMode.TRANSPORT_ATTESTED, [])
    assert counted_on == []


async def test_a_signed_pdf_is_still_counted_off_the_event_loop_and_verified(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted_on = _signature_counts(monkeypatch)

    await scene.submit(await scene.signed_pdf())

    assert scene.verification() == (
        SignatureMode.SIGNED,
        [("pades", "person"), ("pades", "organization")],
    )
    assert len(counted_on) == 1
    assert counted_on[0] is not threading.current_thread()


async def test_a_signed_pdf_is_read_once_and_checked_in_one_hop(
    scene: Scene, pdf_readings: list[int]
) -> None:
    """Counting its signatures, taking their certificates and verifying them read the bytes
    once, in one hop to the attachment thread (certificates of docaxis identities: no
    directory lookup between); the main PDF and an appendix, once each."""
    main, appendix = await scene.signed_pdf(), await scene.signed_pdf(person=False)
    pdf_readings[0] = 0
    hops = signatures.ATTACHMENT_CHECKS.batches

    await scene.submit(main, appendix)

    mode, checks = scene.verification()
    assert (mode, len(checks)) == (SignatureMode.SIGNED, 3)
    assert pdf_readings == [2]
    assert signatures.ATTACHMENT_CHECKS.batches - hops == 2


async def test_national_certificates_are_read_once_with_the_directory_asked_between_two_hops(
    scene: Scene, pdf_readings: list[int]
) -> None:
    """Certificates without a docaxis identity: the directory is asked on the event loop
    between the reading and the verification, which works on the same reading."""
    national = dataclasses.replace(
        scene,
        person=scene.ca.issue_person(OFFICIAL, SENDER, docaxis_identity=False),
        agency=scene.ca.issue_agency(SENDER, "Văn phòng Chính phủ", docaxis_identity=False),
    )
    for issued, role in (
        (national.person, SignerRole.PERSON),
        (national.agency, SignerRole.ORGANIZATION),
    ):
        key = key_id(issued.certificate)
        scene.directory.bindings[key] = CertificateBinding(key, SENDER, role)
    pdf = await national.signed_pdf()
    pdf_readings[0] = 0
    hops = signatures.ATTACHMENT_CHECKS.batches

    await national.submit(pdf)

    assert scene.verification() == (
        SignatureMode.SIGNED,
        [("pades", "person"), ("pades", "organization")],
    )
    assert pdf_readings == [1]
    assert signatures.ATTACHMENT_CHECKS.batches - hops == 2


# Every check the verifier hands off the event loop, by its name in the verifier's module.
_CHECKS = (
    "verify_document",
    "read_pdf",
    "verify_pdf",
    "has_envelope_signature",
    "signer_certificate",
    "verify_envelope",
)


async def test_every_check_of_the_three_forms_runs_off_the_event_loop(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submission signed in all three forms (manifest, PAdES, XML-DSig): each of its checks
    runs, and none on the event loop's thread (a check there stalls every other Submit)."""
    ran_on: dict[str, int] = {}

    def recorded(name: str, check: Callable[..., object]) -> Callable[..., object]:
        def check_here(*args: object, **kwargs: object) -> object:
            ran_on[name] = threading.get_ident()
            return check(*args, **kwargs)

        return check_here

    for name in _CHECKS:
        monkeypatch.setattr(signatures, name, recorded(name, getattr(signatures, name)))
    pdf = await scene.signed_pdf()
    envelope = sign_envelope(_package_for(pdf), scene.agency.identity())

    await scene.submit(pdf, envelope=envelope, manifest_signed=True)

    mode, checks = scene.verification()
    assert mode is SignatureMode.SIGNED
    assert {form for form, _ in checks} == {"manifest", "pades", "xmldsig"}
    assert sorted(ran_on) == sorted(_CHECKS)
    on_the_loop = [name for name, ident in ran_on.items() if ident == threading.get_ident()]
    assert on_the_loop == []


async def test_an_envelope_signed_by_the_agency_counts_as_its_signature(scene: Scene) -> None:
    """The agency's XML-DSig on the edXML envelope is verified and recorded beside the PDF's."""
    pdf = await scene.signed_pdf()
    package = _package_for(pdf)

    await scene.submit(pdf, envelope=sign_envelope(package, scene.agency.identity()))

    mode, checks = scene.verification()
    assert mode is SignatureMode.SIGNED
    assert ("xmldsig", "organization") in checks


async def test_an_envelope_that_signs_another_document_is_signature_invalid(
    scene: Scene,
) -> None:
    """The signed envelope must be the document submitted (here: other attachments)."""
    package = _package_for(b"%PDF-1.7 another document")

    error = await _refusal(
        scene, await scene.signed_pdf(), envelope=sign_envelope(package, scene.agency.identity())
    )

    assert error.reason == "SIGNATURE_INVALID"
    assert error.meta["signature"] == "edXML envelope"


def _package_for(pdf: bytes) -> bytes:
    """An edXML package of the test header (sender, recipients, code) carrying `pdf`."""
    document = a_document()
    head = document.header
    sender = dataclasses.replace(head.sender, organ_id=SENDER)
    recipients = tuple(
        dataclasses.replace(organisation, organ_id=code)
        for organisation, code in zip(head.recipients, (HEALTH, EDUCATION), strict=True)
    )
    code = dataclasses.replace(head.code, number="7816", notation="KH-SỞYT")
    attachment = dataclasses.replace(document.attachments[0], data=pdf)
    return edxml_bytes(
        dataclasses.replace(
            document,
            header=dataclasses.replace(head, sender=sender, recipients=recipients, code=code),
            attachments=(attachment,),
        )
    )


async def test_national_ca_certificates_sign_only_once_the_directory_binds_them(
    scene: Scene,
) -> None:
    """Certificates without a docaxis identity: CERTIFICATE_UNBOUND (naming the key to bind)
    until the directory binds their keys to the sender; then the checks name the sender."""
    national = dataclasses.replace(
        scene,
        person=scene.ca.issue_person(OFFICIAL, SENDER, docaxis_identity=False),
        agency=scene.ca.issue_agency(SENDER, "Văn phòng Chính phủ", docaxis_identity=False),
    )
    pdf = await national.signed_pdf()
    error = await _refusal(national, pdf)
    assert error.reason == "CERTIFICATE_UNBOUND"
    assert error.meta["spki_sha256"] == key_id(national.person.certificate)
    assert error.meta["signature"] == "ChuKyNguoiKy"

    for issued, role in (
        (national.person, SignerRole.PERSON),
        (national.agency, SignerRole.ORGANIZATION),
    ):
        key = key_id(issued.certificate)
        scene.directory.bindings[key] = CertificateBinding(key, SENDER, role)
    await national.submit(pdf)
    (document,) = scene.store.documents.values()
    assert document.verification is not None
    checks = [(c.role, c.agency_code, c.full_name) for c in document.verification.checks]
    assert checks == [("person", SENDER, OFFICIAL), ("organization", SENDER, "")]

"""A PDF read once (`read_pdf`) and then counted, its certificates taken and its signatures
verified gives what reading it anew for each of the three gave: the same signers, warnings and
refusals (docs/perf, "One parse per PDF")."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from pyhanko.sign.timestamps.api import TimeStamper

from docaxis_client.trust.bindings import NO_BINDINGS, Bindings, CertificateBinding
from docaxis_client.trust.chain import identity_uri
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate, KeyType
from docaxis_client.trust.errors import TrustError
from docaxis_client.trust.keys import key_id
from docaxis_client.trust.pdf import (
    PdfVerification,
    SignedPdf,
    demo_pdf,
    read_pdf,
    sign_pdf,
    verify_pdf,
)
from docaxis_client.trust.signatures import SignerRole
from docaxis_client.trust.tsa import LocalTimeStamper, TimestampAuthority
from tests.unit.trust.conftest import Signers
from tests.unit.trust.factories import OFFICIAL, OTHER_AGENCY, SENDER, SENDER_NAME

PAGE = demo_pdf(["Cong van 88/UBND-VP", "Ve viec doc mot lan"])


@dataclass(frozen=True)
class Case:
    pdf: bytes
    main: bool = True
    allow_legacy: bool = False
    # The directory's bindings (key -> binding); None: no lookup at all.
    bindings: Bindings | None = None


# What verifying a PDF came to: its signers and warnings, or its refusal as the client sees it.
Outcome = tuple[object, ...]


def _pair(
    pdf: bytes,
    person: IssuedCertificate,
    agency: IssuedCertificate,
    *,
    digest: str | None = None,
    timestamper: TimeStamper | None = None,
) -> bytes:
    first = sign_pdf(
        pdf, person.identity(), field_name="ChuKyNguoiKy", digest=digest, timestamper=timestamper
    )
    return sign_pdf(
        first, agency.identity(), field_name="ChuKyCoQuan", digest=digest, timestamper=timestamper
    )


@pytest.fixture(scope="module")
def corpus(ca: DemoCA, signers: dict[KeyType, Signers]) -> dict[str, Case]:
    p256, ed25519 = signers[KeyType.P256], signers[KeyType.ED25519]
    rsa = signers[KeyType.RSA2048]
    signed = _pair(PAGE, p256.person, p256.organization)
    sealed_first = sign_pdf(PAGE, p256.organization.identity(), field_name="ChuKyCoQuan")
    official = ca.issue_person(OFFICIAL, SENDER, docaxis_identity=False)
    seal = ca.issue_agency(SENDER, SENDER_NAME, docaxis_identity=False)
    national = _pair(PAGE, official, seal)
    bound = {
        key_id(official.certificate): CertificateBinding(
            key_id(official.certificate), SENDER, SignerRole.PERSON
        ),
        key_id(seal.certificate): CertificateBinding(
            key_id(seal.certificate), SENDER, SignerRole.ORGANIZATION
        ),
    }
    stamper = LocalTimeStamper(TimestampAuthority(ca.issue_tsa().identity()))
    sha1 = _pair(PAGE, p256.person, p256.organization, digest="sha1")
    contents = signed.index(b"/Contents <") + len(b"/Contents <") + 400
    return {
        "p256": Case(signed),
        "ed25519 official, rsa agency": Case(_pair(PAGE, ed25519.person, rsa.organization)),
        "timestamped": Case(_pair(PAGE, p256.person, p256.organization, timestamper=stamper)),
        "tampered": Case(signed.replace(b"Cong van 88", b"Cong van 89", 1)),
        "appended": Case(signed + b"\n1 0 obj\n(changed)\nendobj\n"),
        "truncated": Case(signed[: len(signed) * 2 // 3]),
        "damaged contents": Case(signed[:contents] + b"00ff00ff" + signed[contents + 8 :]),
        "official only": Case(sign_pdf(PAGE, p256.person.identity(), field_name="ChuKyNguoiKy")),
        "unsigned": Case(PAGE),
        "not a pdf": Case(b"PK\x03\x04" + bytes(range(256)) * 4),
        "unreadable": Case(b"%PDF-1.7\ngarbage"),
        "wrong order": Case(
            sign_pdf(sealed_first, p256.person.identity(), field_name="ChuKyNguoiKy")
        ),
        "appendix": Case(sealed_first, main=False),
        "another agency's seal": Case(
            _pair(PAGE, p256.person, ca.issue_agency(OTHER_AGENCY, "Nghệ An"))
        ),
        "sha1": Case(sha1),
        "sha1 under a legacy policy": Case(sha1, allow_legacy=True),
        "national, bound": Case(national, bindings=bound),
        "national, unbound": Case(national, bindings={}),
        "national, no lookup": Case(national),
    }


def _outcome(verify: Callable[[], PdfVerification | None]) -> Outcome:
    try:
        result = verify()
    except TrustError as exc:
        return ("refused", type(exc), exc.reason, str(exc), dict(exc.context), dict(exc.meta))
    if result is None:
        return ("no signature",)
    return ("verified", result.signers, result.warnings)


def _looked_up(certificates: list[x509.Certificate], case: Case) -> Bindings:
    """What the verifier asks the directory: the keys of certificates without an identity."""
    keys = [key_id(c) for c in certificates if identity_uri(c) is None]
    if case.bindings is None or not keys:
        return NO_BINDINGS
    return {key: case.bindings[key] for key in keys if key in case.bindings}


def _verified(
    pdf: bytes | SignedPdf, case: Case, ca: DemoCA, at: dt.datetime, bindings: Bindings
) -> PdfVerification:
    return verify_pdf(
        pdf,
        ca.trust_store(),
        agency=SENDER,
        main=case.main,
        at=at,
        allow_legacy=case.allow_legacy,
        bindings=bindings,
        timestamps=ca.trust_store(),
    )


def _three_readings(case: Case, ca: DemoCA, at: dt.datetime) -> PdfVerification | None:
    """As the verifier did before: count, certificates and verification each read the bytes."""
    try:
        count = len(read_pdf(case.pdf).signatures)
    except TrustError:
        return None
    if count == 0:
        return None
    bindings = _looked_up(read_pdf(case.pdf).signer_certificates(), case)
    return _verified(case.pdf, case, ca, at, bindings)


def _one_reading(case: Case, ca: DemoCA, at: dt.datetime, runs: int) -> PdfVerification | None:
    """Read once, then verified `runs` times from that reading (the verifier verifies again,
    from the same reading, once OCSP's questions are answered); the last verification's."""
    try:
        pdf = read_pdf(case.pdf)
    except TrustError:
        return None
    if not pdf.signatures:
        return None
    bindings = _looked_up(pdf.signer_certificates(), case)
    for _ in range(runs - 1):
        with contextlib.suppress(TrustError):
            _verified(pdf, case, ca, at, bindings)
    return _verified(pdf, case, ca, at, bindings)


def test_one_reading_gives_what_three_readings_gave_on_the_corpus(
    corpus: dict[str, Case], ca: DemoCA, now: dt.datetime
) -> None:
    """Each PDF of the corpus verified as the verifier did before (three readings of the bytes)
    and from one reading, once and twice: the same outcome, to the refusal's text and
    context."""
    before = {
        name: _outcome(functools.partial(_three_readings, case, ca, now))
        for name, case in corpus.items()
    }
    after = {
        name: _outcome(functools.partial(_one_reading, case, ca, now, 1))
        for name, case in corpus.items()
    }
    again = {
        name: _outcome(functools.partial(_one_reading, case, ca, now, 2))
        for name, case in corpus.items()
    }

    assert after == before
    assert again == before
    # The corpus reaches what it is for: verified PDFs, unsigned ones, and refusals of many kinds.
    assert {outcome[0] for outcome in before.values()} == {"verified", "refused", "no signature"}
    assert len({outcome[2] for outcome in before.values() if outcome[0] == "refused"}) >= 6

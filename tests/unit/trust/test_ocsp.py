"""OCSP for signers whose certificates name a responder: a real responder on loopback."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from docaxis_client.trust import CertificateRevokedError
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate
from docaxis_client.trust.ocsp import DeferredCheck, OcspChecker, responder_url
from docaxis_client.trust.pdf import demo_pdf, sign_pdf, verify_pdf
from tests.unit.trust.factories import OFFICIAL, SENDER, SENDER_NAME


@dataclass
class Responder:
    """An OCSP responder for the CA's issuing certificate, answering from `revoked`."""

    ca: DemoCA
    known: dict[int, x509.Certificate] = field(default_factory=dict)
    revoked: set[int] = field(default_factory=set)
    # Sign with a key that is not the issuer's (a forged answer).
    forge: bool = False
    url: str = ""
    asked: int = 0

    def answer(self, request_der: bytes) -> bytes:
        self.asked += 1
        request = ocsp.load_der_ocsp_request(request_der)
        certificate = self.known[request.serial_number]
        issuer = self.ca.issuing
        now = dt.datetime.now(dt.UTC)
        status = (
            ocsp.OCSPCertStatus.REVOKED
            if request.serial_number in self.revoked
            else ocsp.OCSPCertStatus.GOOD
        )
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=certificate,
            issuer=issuer.certificate,
            algorithm=hashes.SHA256(),
            cert_status=status,
            this_update=now - dt.timedelta(minutes=1),
            next_update=now + dt.timedelta(hours=1),
            revocation_time=now - dt.timedelta(minutes=1) if status.name == "REVOKED" else None,
            revocation_reason=None,
        )
        # A forged answer: signed by a certificate of another CA, offered as the responder.
        signer = DemoCA.create(common_name="rogue").issue_server() if self.forge else issuer
        if self.forge:
            builder = builder.certificates([signer.certificate])
        response = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.certificate).sign(
            signer.key,
            hashes.SHA256(),
        )
        return response.public_bytes(serialization.Encoding.DER)

    def issue(self, certificate: IssuedCertificate) -> IssuedCertificate:
        self.known[certificate.certificate.serial_number] = certificate.certificate
        return certificate


@pytest.fixture
def responder() -> Iterator[Responder]:
    state = Responder(DemoCA.create())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = state.answer(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ocsp"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _signers(responder: Responder, url: str) -> tuple[IssuedCertificate, IssuedCertificate]:
    person = responder.issue(responder.ca.issue_person(OFFICIAL, SENDER, ocsp_url=url))
    agency = responder.issue(responder.ca.issue_agency(SENDER, SENDER_NAME, ocsp_url=url))
    return person, agency


def _pdf(person: IssuedCertificate, agency: IssuedCertificate) -> bytes:
    signed = sign_pdf(demo_pdf(["OCSP"]), person.identity(), field_name="P")
    return sign_pdf(signed, agency.identity(), field_name="O")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_good_answer_is_recorded_for_each_signer(responder: Responder) -> None:
    """Both certificates name the responder; both answers are good and verified."""
    person, agency = _signers(responder, responder.url)
    assert responder_url(person.certificate) == responder.url

    result = verify_pdf(
        _pdf(person, agency),
        responder.ca.trust_store(),
        agency=SENDER,
        main=True,
        at=_now(),
        revocation=OcspChecker(),
    )

    assert [s.online_revocation.checked for s in result.signers] == [
        (f"OCSP good from {responder.url}",),
        (f"OCSP good from {responder.url}",),
    ]
    assert result.warnings == ()


def test_a_certificate_revoked_at_the_responder_but_on_no_crl_is_refused(
    responder: Responder,
) -> None:
    """OCSP knows before the next CRL: CERTIFICATE_REVOKED, naming where it was learnt."""
    person, agency = _signers(responder, responder.url)
    responder.revoked.add(agency.certificate.serial_number)

    with pytest.raises(CertificateRevokedError) as refused:
        verify_pdf(
            _pdf(person, agency),
            responder.ca.trust_store(),
            agency=SENDER,
            main=True,
            at=_now(),
            revocation=OcspChecker(),
        )

    assert refused.value.context["revocation"] == f"OCSP {responder.url}"
    assert refused.value.context["signature"] == "O"


def test_an_unreachable_or_forged_responder_leaves_the_crl_result_with_a_warning(
    responder: Responder,
) -> None:
    """A responder's silence or a forged answer never refuses a document by itself."""
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/ocsp"
    person, agency = _signers(responder, closed)

    result = verify_pdf(
        _pdf(person, agency),
        responder.ca.trust_store(),
        agency=SENDER,
        main=True,
        at=_now(),
        revocation=OcspChecker(timeout_s=2),
    )
    assert len(result.warnings) == 2
    assert all("CRLs only" in warning for warning in result.warnings)

    responder.forge = True
    person, agency = _signers(responder, responder.url)
    forged = verify_pdf(
        _pdf(person, agency),
        responder.ca.trust_store(),
        agency=SENDER,
        main=True,
        at=_now(),
        revocation=OcspChecker(),
    )
    assert all("not signed by the issuer" in warning for warning in forged.warnings)


def test_a_deferred_check_asks_between_two_runs_and_the_second_refuses_a_revoked_certificate(
    responder: Responder,
) -> None:
    """The first run asks no responder (nothing kept yet: the questions are noted); asked, the
    second run says what OcspChecker says (CERTIFICATE_REVOKED, naming where it was learnt).
    The answers are kept: a later verification's first run has nothing to ask."""
    person, agency = _signers(responder, responder.url)
    responder.revoked.add(agency.certificate.serial_number)
    checker = OcspChecker()
    pdf = _pdf(person, agency)

    def verify(revocation: DeferredCheck) -> object:
        trust = responder.ca.trust_store()
        return verify_pdf(pdf, trust, agency=SENDER, main=True, at=_now(), revocation=revocation)

    check = checker.deferred()
    verify(check)
    assert (check.pending, responder.asked) == (True, 0)
    check.ask()
    assert (check.pending, responder.asked) == (False, 2)
    with pytest.raises(CertificateRevokedError) as refused:
        verify(check)
    assert refused.value.context["revocation"] == f"OCSP {responder.url}"
    assert refused.value.context["signature"] == "O"

    later = checker.deferred()
    with pytest.raises(CertificateRevokedError):
        verify(later)
    assert (later.pending, responder.asked) == (False, 2)

"""OCSP answers kept: a responder is asked once per certificate until nextUpdate, and a responder
that cannot be asked is not asked again for a short while (the CRL result, with its warning)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from docaxis_client.trust import CertificateRevokedError
from docaxis_client.trust.chain import describe
from docaxis_client.trust.demo_pki import DemoCA
from docaxis_client.trust.ocsp import (
    KEPT_WITHOUT_NEXT_UPDATE,
    MAX_KEPT,
    UNREACHABLE_KEPT,
    OcspChecker,
)
from tests.unit.trust.factories import OFFICIAL, SENDER

URL = "http://ocsp.test/ocsp"
START = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
# How long the fake responder says its answers hold (its nextUpdate), when it says.
VALIDITY = dt.timedelta(minutes=20)


@dataclass
class Clock:
    now: dt.datetime = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, by: dt.timedelta) -> dt.datetime:
        self.now += by
        return self.now


@dataclass
class FakeResponder:
    """The checker's transport: answers as the CA's issuer, as of the test clock, and counts."""

    ca: DemoCA
    clock: Clock
    known: dict[int, x509.Certificate] = field(default_factory=dict)
    revoked: set[int] = field(default_factory=set)
    validity: dt.timedelta | None = VALIDITY
    # None: answers; "timeout": cannot be reached; "try_later": answers tryLater (RFC 6960 §2.3).
    failure: str | None = None
    calls: int = 0

    def __call__(self, url: str, request_der: bytes, timeout_s: float) -> bytes:
        del url, timeout_s
        self.calls += 1
        if self.failure == "timeout":
            raise TimeoutError("timed out")
        if self.failure == "try_later":
            unsuccessful = ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.TRY_LATER
            )
            return unsuccessful.public_bytes(serialization.Encoding.DER)
        request = ocsp.load_der_ocsp_request(request_der)
        revoked = request.serial_number in self.revoked
        now = self.clock.now
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=self.known[request.serial_number],
            issuer=self.ca.issuing.certificate,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now - dt.timedelta(minutes=1),
            next_update=None if self.validity is None else now + self.validity,
            revocation_time=now - dt.timedelta(minutes=1) if revoked else None,
            revocation_reason=None,
        )
        response = builder.responder_id(
            ocsp.OCSPResponderEncoding.HASH, self.ca.issuing.certificate
        ).sign(self.ca.issuing.key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)

    def chain(self) -> list[x509.Certificate]:
        """A new signer's chain (leaf naming the responder, then the issuer)."""
        leaf = self.ca.issue_person(OFFICIAL, SENDER, ocsp_url=URL).certificate
        self.known[leaf.serial_number] = leaf
        return [leaf, self.ca.issuing.certificate]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def responder(clock: Clock) -> FakeResponder:
    return FakeResponder(DemoCA.create(), clock)


def _checker(responder: FakeResponder, clock: Clock, **bounds: int) -> OcspChecker:
    return OcspChecker(transport=responder, clock=clock, **bounds)


GOOD = (f"OCSP good from {URL}",)


def test_a_second_check_within_next_update_does_not_ask_again(
    responder: FakeResponder, clock: Clock
) -> None:
    checker = _checker(responder, clock)
    chain = responder.chain()

    assert checker(chain, clock.now).checked == GOOD
    assert checker(chain, clock.advance(VALIDITY / 2)).checked == GOOD

    assert responder.calls == 1


def test_past_next_update_the_responder_is_asked_again(
    responder: FakeResponder, clock: Clock
) -> None:
    checker = _checker(responder, clock)
    chain = responder.chain()
    checker(chain, clock.now)

    assert checker(chain, clock.advance(VALIDITY)).checked == GOOD

    assert responder.calls == 2


@pytest.mark.parametrize(
    ("validity", "held"),
    [(dt.timedelta(days=7), MAX_KEPT), (None, KEPT_WITHOUT_NEXT_UPDATE)],
    ids=["a far nextUpdate: the cap", "no nextUpdate: briefly"],
)
def test_an_answer_is_kept_no_longer_than_its_hold(
    responder: FakeResponder, clock: Clock, validity: dt.timedelta | None, held: dt.timedelta
) -> None:
    responder.validity = validity
    checker = _checker(responder, clock)
    chain = responder.chain()
    checker(chain, clock.now)
    checker(chain, clock.advance(held - dt.timedelta(seconds=1)))
    assert responder.calls == 1

    checker(chain, clock.advance(dt.timedelta(seconds=1)))

    assert responder.calls == 2


def test_a_check_at_a_moment_the_kept_answer_does_not_cover_asks_again(
    responder: FakeResponder, clock: Clock
) -> None:
    """A kept answer is judged at the check's `at`, as a fresh one is: before its thisUpdate
    it does not speak, so the responder is asked (and its answer is judged the same way)."""
    checker = _checker(responder, clock)
    chain = responder.chain()
    checker(chain, clock.now)

    earlier = checker(chain, clock.now - dt.timedelta(days=1))

    assert responder.calls == 2
    assert earlier.checked == ()
    assert len(earlier.warnings) == 1
    assert "dated in the future" in earlier.warnings[0]


def test_a_revoked_answer_is_kept_and_still_refuses(responder: FakeResponder, clock: Clock) -> None:
    """Revocation is final: the kept answer refuses even after its nextUpdate (within the cap)."""
    checker = _checker(responder, clock)
    chain = responder.chain()
    responder.revoked.add(chain[0].serial_number)

    for step in (dt.timedelta(0), VALIDITY / 2, VALIDITY):
        with pytest.raises(CertificateRevokedError) as refused:
            checker(chain, clock.advance(step))
        assert refused.value.context["revocation"] == f"OCSP {URL}"

    assert responder.calls == 1


@pytest.mark.parametrize(
    ("failure", "reason"),
    [("timeout", "timed out"), ("try_later", "the responder answered TRY_LATER")],
)
def test_an_unreachable_responder_is_asked_once_within_the_window(
    responder: FakeResponder, clock: Clock, failure: str, reason: str
) -> None:
    """While it is down, every check gives at once what it gives after the timeout: the CRL
    result with the same warning; past the window, the responder is asked again."""
    responder.failure = failure
    checker = _checker(responder, clock)
    chains = [responder.chain() for _ in range(4)]
    first_asked = clock.now

    results = [checker(chain, clock.advance(UNREACHABLE_KEPT / 5)) for chain in chains]

    assert responder.calls == 1
    for chain, result in zip(chains, results, strict=True):
        assert result.checked == ()
        assert result.warnings == (
            f"OCSP for {describe(chain[0])} unavailable ({reason}): CRLs only",
        )

    responder.failure = None
    clock.now = first_asked + UNREACHABLE_KEPT / 5 + UNREACHABLE_KEPT
    assert checker(chains[0], clock.now).checked == GOOD
    assert responder.calls == 2


def test_the_kept_answers_stay_within_their_bound(responder: FakeResponder, clock: Clock) -> None:
    """At most `max_answers` kept; the least recently used goes first."""
    checker = _checker(responder, clock, max_answers=3)
    chains = [responder.chain() for _ in range(5)]
    for chain in chains:
        checker(chain, clock.now)
    assert checker.kept == 3
    assert responder.calls == 5

    checker(chains[-1], clock.now)  # kept
    assert responder.calls == 5
    checker(chains[0], clock.now)  # evicted: asked again
    assert responder.calls == 6
    assert checker.kept == 3

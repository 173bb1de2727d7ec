"""OCSP (RFC 6960) for signers' certificates that name a responder, where the deployment allows it.

CRLs the axis holds stay the baseline (TrustStore); OCSP adds a fresher answer for certificates
whose Authority Information Access names a responder. It is the only check here that needs the
network, so it is off unless the deployment enables it, asks with a short timeout, and never
lets a responder's silence refuse a document: an unreachable or unusable responder is reported
as a warning next to the CRL result. A *revoked* answer refuses the signature, like a CRL entry.
Responses are trusted only when signed by the certificate's issuer or by a responder certificate
that issuer delegated (id-kp-OCSPSigning).

Verified answers are kept (OcspChecker) until the responder's nextUpdate, and a responder that
cannot be asked is not asked again for a short while: the checks run one after the other in one
thread per process, so without this a slow or unreachable responder cost its timeout per signature.
A verifier that must not wait on the network in that thread takes a DeferredCheck: the
verification runs on the kept answers, the responders are asked elsewhere, and it runs again.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

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
# The wall clock the kept answers' lifetimes are read against (tests pass their own).
Clock = Callable[[], dt.datetime]

# How long a verified answer is kept at most, even when its nextUpdate is later. RFC 5019 §6 lets a
# client cache a response until its nextUpdate; RFC 6960 §4.2.2.1 lets responders pre-produce
# answers valid for days, so a revocation the responder learns of would otherwise reach us only
# that late. An hour bounds it while still sparing the responder one query per signature.
MAX_KEPT = dt.timedelta(hours=1)
# An answer without nextUpdate says newer information is always available (RFC 6960 §2.4): keep
# it only briefly, so a burst of documents by one signer asks once, and later checks ask again.
KEPT_WITHOUT_NEXT_UPDATE = dt.timedelta(minutes=5)
# How long a responder that could not be asked (unreachable, timeout, not an OCSP answer) is not
# asked again. Safe: during it every check gives exactly what it gives after the timeout (the CRL
# result with the same warning), only at once; a revoked answer from a responder that comes back
# is at most this late, and the CRLs of the trust store are checked in any case.
UNREACHABLE_KEPT = dt.timedelta(seconds=30)
# Bounds on what is kept: certificates (CertIDs) and responder URLs; the least recently used go.
MAX_KEPT_ANSWERS = 4096
MAX_KEPT_UNREACHABLE = 256

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


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


class OcspResponderError(OcspUnusableError):
    """The responder gave no OCSP answer at all (whatever the certificate asked about)."""


def _successful_response(answer: bytes) -> ocsp.OCSPResponse:
    try:
        response = ocsp.load_der_ocsp_response(answer)
    except ValueError as exc:
        raise OcspResponderError(f"not an OCSP response: {exc}") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OcspResponderError(f"the responder answered {response.response_status.name}")
    return response


@dataclass(frozen=True, slots=True)
class _Answer:
    """A verified answer about one certificate, as it can be judged again at another moment."""

    status: ocsp.OCSPCertStatus
    this_update: dt.datetime
    next_update: dt.datetime | None
    revocation_reason: x509.ReasonFlags | None = None

    @property
    def final(self) -> bool:
        """A revocation that cannot be undone (certificateHold can be lifted, RFC 5280 §5.3.1)."""
        return (
            self.status is ocsp.OCSPCertStatus.REVOKED
            and self.revocation_reason is not x509.ReasonFlags.certificate_hold
        )

    def check(self, at: dt.datetime) -> ocsp.OCSPCertStatus:
        """The status, when the answer speaks for `at` (a fresh answer is judged so)."""
        if self.this_update > at + _SKEW:
            raise OcspUnusableError("the response is dated in the future")
        if self.next_update is not None and self.next_update < at - _SKEW:
            raise OcspUnusableError("the response is stale (nextUpdate has passed)")
        return self.status

    def covers(self, at: dt.datetime) -> bool:
        """Whether a kept answer still speaks for `at`: as a fresh one, except that a final
        revocation stays true after nextUpdate (any later answer would say revoked too)."""
        if self.this_update > at + _SKEW:
            return False
        return self.final or self.next_update is None or self.next_update >= at - _SKEW

    def kept_until(self, now: dt.datetime) -> dt.datetime:
        """Until when (by our clock) the answer is kept: see MAX_KEPT and its neighbours."""
        if self.final:
            return now + MAX_KEPT
        if self.next_update is None:
            return now + KEPT_WITHOUT_NEXT_UPDATE
        return min(self.next_update, now + MAX_KEPT)


class _Kept(Generic[_K, _V]):
    """At most `bound` values, each until a moment; the least recently used go first. Locked:
    the checker is called from the attachment-checks thread and may be from others."""

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._entries: OrderedDict[_K, tuple[dt.datetime, _V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K, now: dt.datetime) -> _V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now >= entry[0]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: _K, value: _V, until: dt.datetime) -> None:
        with self._lock:
            self._entries[key] = (until, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._bound:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _answer_about(
    response: ocsp.OCSPResponse, certificate: x509.Certificate, issuer: x509.Certificate
) -> _Answer:
    """The verified answer about `certificate` in a successful response."""
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
        revoked = single.certificate_status is ocsp.OCSPCertStatus.REVOKED
        return _Answer(
            single.certificate_status,
            single.this_update_utc,
            single.next_update_utc,
            single.revocation_reason if revoked else None,
        )
    raise OcspUnusableError("the response does not answer for this certificate")


def status_of(
    answer: bytes, certificate: x509.Certificate, issuer: x509.Certificate, *, at: dt.datetime
) -> ocsp.OCSPCertStatus:
    """The verified status of `certificate` in a DER OCSP response (OcspUnusableError when
    the response cannot be trusted or does not answer for this certificate now)."""
    return _answer_about(_successful_response(answer), certificate, issuer).check(at)


# What identifies a certificate to a responder (RFC 6960 CertID, SHA-256 hashes).
_CertId = tuple[bytes, bytes, int]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class _Question:
    """What a check asks a responder: about a certificate (by its issuer), for a moment."""

    url: str
    certificate: x509.Certificate
    issuer: x509.Certificate
    at: dt.datetime
    cert_id: _CertId
    request: ocsp.OCSPRequest

    @classmethod
    def of(
        cls, url: str, certificate: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
    ) -> _Question:
        built = (
            ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA256()).build()
        )
        cert_id = (built.issuer_name_hash, built.issuer_key_hash, built.serial_number)
        return cls(url, certificate, issuer, at, cert_id, built)

    @property
    def key(self) -> tuple[str, _CertId]:
        return self.url, self.cert_id


# A certificate's status at a moment, asked of its responder's URL (OcspUnusableError when it
# cannot be had).
_StatusOf = Callable[[str, x509.Certificate, x509.Certificate, dt.datetime], ocsp.OCSPCertStatus]


class OcspChecker:
    """Asks each certificate's responder about it (leaf and intermediates), keeping answers."""

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: Transport = http_post,
        clock: Clock = _utc_now,
        max_answers: int = MAX_KEPT_ANSWERS,
        max_unreachable: int = MAX_KEPT_UNREACHABLE,
    ) -> None:
        self._timeout_s = timeout_s
        self._transport = transport
        self._clock = clock
        self._answers: _Kept[_CertId, _Answer] = _Kept(max_answers)
        # Per responder URL: why it could not be asked (the warning's words).
        self._unreachable: _Kept[str, str] = _Kept(max_unreachable)

    @property
    def kept(self) -> int:
        """How many answers about certificates are kept now."""
        return len(self._answers)

    def __call__(self, chain: Sequence[x509.Certificate], at: dt.datetime) -> OcspResult:
        """Raises CertificateRevokedError on a verified *revoked* answer; anything else that
        keeps OCSP from answering becomes a warning (the CRL result stands). A responder not
        answered for by a kept answer is asked here, waiting up to the timeout: see deferred
        for a check that never waits."""
        return self.result(chain, at, self._status)

    def deferred(self) -> DeferredCheck:
        """A check for one verification that waits on no responder (DeferredCheck)."""
        return DeferredCheck(self)

    def result(
        self, chain: Sequence[x509.Certificate], at: dt.datetime, status: _StatusOf
    ) -> OcspResult:
        """What OCSP says of `chain` at `at`, each certificate's status from `status`."""
        checked: list[str] = []
        warnings: list[str] = []
        for certificate, issuer in itertools.pairwise(chain):
            url = responder_url(certificate)
            if url is None:
                continue
            try:
                found = status(url, certificate, issuer, at)
            except OcspUnusableError as exc:
                warnings.append(f"OCSP for {describe(certificate)} unavailable ({exc}): CRLs only")
                continue
            if found is ocsp.OCSPCertStatus.REVOKED:
                raise CertificateRevokedError(
                    describe(certificate), certificate.serial_number, at
                ).concerning(revocation=f"OCSP {url}")
            if found is ocsp.OCSPCertStatus.UNKNOWN:
                warnings.append(f"OCSP {url} does not know {describe(certificate)}")
                continue
            checked.append(f"OCSP good from {url}")
        return OcspResult(tuple(checked), tuple(warnings))

    def _status(
        self, url: str, certificate: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
    ) -> ocsp.OCSPCertStatus:
        """The certificate's status at `at`, from a kept answer that speaks for it or the
        responder (OcspUnusableError when neither can say)."""
        question = _Question.of(url, certificate, issuer, at)
        kept = self.kept_status(question)
        if kept is not None:
            return kept
        return self.ask(question).check(at)

    def kept_status(self, question: _Question) -> ocsp.OCSPCertStatus | None:
        """The status a kept answer gives for the question's moment; OcspUnusableError for a
        responder that could not be asked a moment ago; None when the responder must be asked."""
        now = self._clock()
        kept = self._answers.get(question.cert_id, now)
        if kept is not None and kept.covers(question.at):
            return kept.status
        reason = self._unreachable.get(question.url, now)
        if reason is not None:
            raise OcspUnusableError(reason)
        return None

    def ask(self, question: _Question) -> _Answer:
        """The responder's verified answer, kept (OcspUnusableError when it cannot be had; a
        responder that could not be asked is not asked again for UNREACHABLE_KEPT). The network
        is asked outside any lock; two threads missing at once both ask, and the later answer is
        kept."""
        try:
            request = question.request.public_bytes(serialization.Encoding.DER)
            answer = self._transport(question.url, request, self._timeout_s)
            response = _successful_response(answer)
        except (OSError, OcspResponderError) as exc:
            self._unreachable.put(question.url, str(exc), self._clock() + UNREACHABLE_KEPT)
            raise OcspUnusableError(str(exc)) from exc
        fresh = _answer_about(response, question.certificate, question.issuer)
        # Kept even when it does not speak for the question's moment (a check at a past
        # moment): it may for the next check; kept_until is already past for an answer whose
        # nextUpdate has passed.
        self._answers.put(question.cert_id, fresh, fresh.kept_until(self._clock()))
        return fresh


class DeferredCheck:
    """One verification's online check, in two runs of the verification, so that the thread
    that verifies never waits on a responder (the attachment checks run one after another in
    one thread: a wait there held every PDF queued behind it, up to the timeout).

    The first run answers from kept answers only; a certificate they do not answer for is noted
    (`pending`) and given a warning, and that run's outcome is not the verification's. `ask`
    then asks the responders, on a thread that may wait, and the second run answers from what
    it got, exactly as OcspChecker would have after asking (a revoked answer refuses, the same
    warnings). A verification whose first run noted nothing is done in one run."""

    def __init__(self, checker: OcspChecker) -> None:
        self._checker = checker
        self._questions: dict[tuple[str, _CertId], _Question] = {}
        # After `ask`: the answer got for each question asked, or why none could be had.
        self._got: dict[tuple[str, _CertId], _Answer | str] | None = None

    @property
    def pending(self) -> bool:
        """Questions noted and not yet asked: ask them, then run the verification again."""
        return self._got is None and bool(self._questions)

    def __call__(self, chain: Sequence[x509.Certificate], at: dt.datetime) -> OcspResult:
        return self._checker.result(chain, at, self._status)

    def _status(
        self, url: str, certificate: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
    ) -> ocsp.OCSPCertStatus:
        question = _Question.of(url, certificate, issuer, at)
        if self._got is not None and question.key in self._got:
            got = self._got[question.key]
            if isinstance(got, str):
                raise OcspUnusableError(got)
            return got.check(at)
        kept = self._checker.kept_status(question)
        if kept is not None:
            return kept
        if self._got is None:
            self._questions[question.key] = question
            raise OcspUnusableError("not asked yet")
        # A question the first run did not note (it cannot take another path up to here): asked
        # as OcspChecker asks.
        return self._checker.ask(question).check(at)

    def ask(self) -> None:
        """Asks the responders the questions noted, one after another (blocking: not on the
        thread that verifies). A question answered or a responder given up on meanwhile (by
        another verification's asking) is not asked again."""
        got: dict[tuple[str, _CertId], _Answer | str] = {}
        for key, question in self._questions.items():
            try:
                if self._checker.kept_status(question) is not None:
                    continue
            except OcspUnusableError:
                continue
            try:
                got[key] = self._checker.ask(question)
            except OcspUnusableError as exc:
                got[key] = str(exc)
        self._got = got

"""A submission's signatures, verified before anything is stored, under the sender's policy.

Three forms can carry the Nghị định 30 signatures: docaxis manifest signatures (both roles),
PAdES signatures in the main PDF (the official's, then the agency's; appendices the agency's
only) and the agency's XML-DSig on the original edXML envelope. Every signature presented is
verified, whatever the policy: an invalid one is refused, never ignored. The sender's policy (kept
in the directory) then says which forms count for each role, whether legacy algorithms pass, and
whether the agency may send unsigned on its mutual-TLS identity (transport-attested).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509

from docaxis_client.documents import document_signatures, signature_of
from docaxis_client.trust.bindings import NO_BINDINGS, Bindings
from docaxis_client.trust.chain import TrustStore, identity_uri
from docaxis_client.trust.errors import SignatureInvalidError, SignatureMissingError, TrustError
from docaxis_client.trust.keys import key_id
from docaxis_client.trust.ocsp import OcspChecker, RevocationCheck
from docaxis_client.trust.pdf import PdfVerification, SignedPdf, is_pdf, read_pdf, verify_pdf
from docaxis_client.trust.signatures import SignerRole, VerifiedSigners, verify_document
from docaxis_client.trust.xmldsig import (
    EnvelopeFacts,
    has_envelope_signature,
    signer_certificate,
    verify_envelope,
)
from services.common.errors import RejectedError
from services.common.trust import domain_error
from services.common.worker_thread import WorkerThread
from services.exchange.domain.model import AttachmentRef, Submission, manifest_of
from services.exchange.domain.signature_rules import DEFAULT_RULES, SignatureForm, SignatureRules
from services.exchange.domain.verification import SignatureCheck, SignatureMode, Verification

# Every check of a submission runs off the event loop one way: in a WorkerThread (one thread that
# takes the calls queued while it worked in one hop), two per process, one per size of work
# (docs/perf, "Submit's checks off the loop, one way"). A document's manifest check is small and of
# one size (0.25-1.1 ms of CPU); a PDF's is tens of milliseconds at the least (a one-page PDF signed
# twice: about 12 ms to count its signatures, 15 to read its certificates, 40 to verify them), an
# envelope's a few (25 for one of 1 MiB), both growing with the file, and with OCSP enabled both
# wait on the network besides. In one thread, each PDF would hold the manifest checks of every
# Submit queued behind it, a hundred documents' worth and more. The attachment checks wait for one
# another instead: their Python holds the GIL, so the default pool's threads finished four PDFs no
# sooner for the same CPU, and held the event loop up to 45-100 ms against 15-18 here (the GIL
# shared among more threads). OCSP's network waits are not the attachment thread's: a check that
# must ask a responder runs on the answers kept (until their nextUpdate, a responder that could not
# be asked skipped for 30 s: docaxis_client.trust.ocsp), its questions are asked in a thread of
# their own and the check runs again on the answers (SignatureVerifier._revocation_checked), so a
# responder that hangs holds only the documents whose signers it must answer for, up to its timeout.
MANIFEST_CHECKS = WorkerThread("manifest-checks")
ATTACHMENT_CHECKS = WorkerThread("attachment-checks")
OCSP_QUESTIONS = WorkerThread("ocsp-questions")
# Reads a blob the sender owns, by SHA-256 (the caller checked ownership).
Content = Callable[[str], Awaitable[bytes]]
# The directory's bindings of these keys (SPKI SHA-256): whom national-CA certificates sign for.
BindingLookup = Callable[[Sequence[str]], Awaitable[Bindings]]
PDF_MEDIA_TYPE = "application/pdf"
T = TypeVar("T")
_CHECKED = "chain to the axis's trust anchors at the signing time; revocation from the axis's CRLs"
# A PDF signature without a timestamp is judged when it arrives (nothing but the signer dates it).
_CHECKED_AT_RECEPTION = (
    "no timestamp: chain to the axis's trust anchors at reception; revocation from the axis's CRLs"
)


def is_pdf_attachment(attachment: AttachmentRef) -> bool:
    return attachment.media_type == PDF_MEDIA_TYPE or attachment.name.lower().endswith(".pdf")


@dataclass(slots=True)
class _Found:
    checks: list[SignatureCheck]
    warnings: list[str]
    manifest_sha256: str | None = None
    # The main PDF carried no signature at all (refused only if nothing else fills the role).
    unsigned_pdf: str | None = None


class SignatureVerifier:
    """Verifies submissions with the current trust store.

    `trust` returns the store of the moment (it changes when CRLs arrive), or None when the
    deployment has no anchors: then only unsigned documents can pass, and only where signatures
    are not `required` (development) or the sender is transport-attested.
    """

    def __init__(
        self,
        trust: Callable[[], TrustStore | None],
        *,
        required: bool,
        max_signing_age: dt.timedelta | None = None,
        revocation: OcspChecker | None = None,
        timestamps: TrustStore | None = None,
    ) -> None:
        """`revocation` adds an online check (OCSP) to the CRLs of the trust store;
        `timestamps` holds the TSA anchors that PDF signature timestamps are verified against."""
        self._trust = trust
        self._required = required
        self._max_signing_age = max_signing_age
        self._revocation = revocation
        self._timestamps = timestamps

    async def verify(
        self,
        submission: Submission,
        *,
        at: dt.datetime,
        policy: SignatureRules = DEFAULT_RULES,
        content: Content | None = None,
        bindings: BindingLookup | None = None,
        attested_by: str | None = None,
    ) -> Verification:
        """Raises a DomainError with the trust core's reason (SIGNATURE_INVALID,
        SIGNATURE_MISSING, SIGNATURE_ALGORITHM_WEAK, CERTIFICATE_REVOKED, SENDER_MISMATCH, …)
        naming the attachment and signature concerned.

        `attested_by`: a national axis the document came from. Its envelopes carry dummy or
        empty XML-DSig (domain.md §7), so the envelope is not evidence (kept, not verified); the
        PDF signatures are verified as always, and where they do not fill both roles the
        document is accepted as transport-attested by that peer, shown UNSIGNED everywhere."""
        moment = at.astimezone(dt.UTC).replace(microsecond=0)
        if attested_by is not None:
            submission = dataclasses.replace(submission, envelope=None)
            policy = dataclasses.replace(
                policy,
                transport_attested=True,
                organization_forms=policy.organization_forms - {SignatureForm.XMLDSIG},
            )
        try:
            found = await self._verify_all(submission, moment, policy, content, bindings)
            return self._decide(found, policy, moment, attested_by)
        except TrustError as exc:
            raise domain_error(exc) from None

    def _store(self) -> TrustStore:
        return _usable(self._trust())

    async def _verify_all(
        self,
        submission: Submission,
        at: dt.datetime,
        policy: SignatureRules,
        content: Content | None,
        bindings: BindingLookup | None,
    ) -> _Found:
        found = _Found([], [])
        if submission.signatures:
            await self._manifest(submission, at, found)
        if content is None:
            return found
        pdfs = [a for a in submission.attachments if is_pdf_attachment(a)]
        for index, attachment in enumerate(pdfs):
            await self._pdf(
                submission, attachment, index == 0, at, policy, content, bindings, found
            )
        if submission.envelope is not None:
            await self._envelope(
                submission, submission.envelope, at, policy, content, bindings, found
            )
        return found

    async def _manifest(self, submission: Submission, at: dt.datetime, found: _Found) -> None:
        manifest = manifest_of(submission.header, submission.attachments)
        signatures = document_signatures(
            [
                signature_of(
                    SignerRole(s.role), s.algorithm, s.value, s.certificate_chain, s.signed_at
                )
                for s in submission.signatures
            ]
        )
        store = self._store()
        # Chain building and the signature checks are CPU work: off the event loop. Verifying on
        # the loop was tried twice, the second time only for chains already kept (branch
        # verify-inline): the threads' CPU went, but the loop's grew by as much or more (docs/perf,
        # "Signature verification's CPU (session of 2026-12-07, eighth)"). In the one thread of
        # MANIFEST_CHECKS, the documents of concurrent Submits that queue while it works are
        # verified in one hop, each with its own answer ("Submit's verification hop", eleventh).
        verified = await MANIFEST_CHECKS.run(
            functools.partial(
                verify_document,
                manifest,
                signatures,
                store,
                at=at,
                expected_sender=submission.header.sender,
                max_signing_age=self._max_signing_age,
            )
        )
        found.manifest_sha256 = manifest.sha256_hex()
        found.checks.extend(_manifest_checks(verified))

    async def _pdf(
        self,
        submission: Submission,
        attachment: AttachmentRef,
        main: bool,
        at: dt.datetime,
        policy: SignatureRules,
        content: Content,
        bindings: BindingLookup | None,
        found: _Found,
    ) -> None:
        data = await content(attachment.sha256)
        try:
            # Bytes that do not start like a PDF carry no signature: said by a look at their
            # first KiB here, where a thread's hop to say it cost more than the look (a PDF's
            # name or media type on bytes that are not one).
            result = (
                await self._pdf_signatures(data, submission, main, at, policy, bindings)
                if is_pdf(data)
                else None
            )
        except TrustError as exc:
            raise exc.concerning(attachment=attachment.name) from None
        if result is None:
            # A PDF without signatures (or one no PDF reader can open, which then cannot carry
            # any) is refused only when no other form fills the roles, decided once every form
            # was looked at; a signed one is always verified.
            if main:
                found.unsigned_pdf = attachment.name
            return
        found.warnings.extend(f"{attachment.name}: {warning}" for warning in result.warnings)
        found.checks.extend(
            SignatureCheck(
                form=SignatureForm.PADES.value,
                role=signer.role.value,
                subject=signer.subject,
                agency_code=signer.agency_code,
                algorithm=signer.algorithm,
                certificate_sha256=signer.certificate_sha256,
                serial=f"{signer.serial:x}",
                signed_at=signer.signed_at,
                full_name=signer.full_name or "",
                attachment=attachment.name,
                attachment_sha256=attachment.sha256,
                field=signer.field_name,
                covers_whole_document=signer.covers_whole_file,
                legacy_algorithm=signer.legacy_algorithm,
                checked="; ".join(
                    [
                        _checked(signer.timestamped_at, signer.timestamp_authority),
                        *signer.online_revocation.checked,
                    ]
                ),
            )
            for signer in result.signers
        )

    async def _pdf_signatures(
        self,
        data: bytes,
        submission: Submission,
        main: bool,
        at: dt.datetime,
        policy: SignatureRules,
        bindings: BindingLookup | None,
    ) -> PdfVerification | None:
        """The PDF's signatures verified on one reading of it, in one hop to the attachment
        thread unless the directory must be asked for bindings on the way (docs/perf, "One
        parse per PDF"); None when it carries none."""
        pdf = _PdfAttachment(
            data,
            self._trust(),
            functools.partial(
                verify_pdf,
                agency=submission.header.sender,
                main=main,
                at=at,
                allow_legacy=policy.allow_legacy_algorithms,
                timestamps=self._timestamps,
            ),
        )
        checked = await self._revocation_checked(functools.partial(pdf.check, bindings is not None))
        if not isinstance(checked, _Unbound):
            return checked
        assert bindings is not None  # asked only of a lookup there is
        bound = await bindings(checked.keys)
        return await self._revocation_checked(functools.partial(pdf.check_bound, bound))

    async def _envelope(
        self,
        submission: Submission,
        envelope: AttachmentRef,
        at: dt.datetime,
        policy: SignatureRules,
        content: Content,
        bindings: BindingLookup | None,
        found: _Found,
    ) -> None:
        data = await content(envelope.sha256)
        try:
            if not await ATTACHMENT_CHECKS.run(functools.partial(has_envelope_signature, data)):
                return  # an empty or absent envelope signature: kept as it is, not evidence
            certificate = await ATTACHMENT_CHECKS.run(functools.partial(signer_certificate, data))
            bound = await _bindings_of([] if certificate is None else [certificate], bindings)
            result = await self._revocation_checked(
                functools.partial(
                    verify_envelope,
                    data,
                    self._store(),
                    agency=submission.header.sender,
                    at=at,
                    allow_legacy=policy.allow_legacy_algorithms,
                    bindings=bound,
                )
            )
            _check_binding(result.facts, submission)
        except TrustError as exc:
            raise exc.concerning(signature="edXML envelope") from None
        found.warnings.extend(result.warnings)
        signer = result.signer
        found.checks.append(
            SignatureCheck(
                form=SignatureForm.XMLDSIG.value,
                role=SignerRole.ORGANIZATION.value,
                subject=signer.subject,
                agency_code=signer.agency_code,
                algorithm=signer.algorithm,
                certificate_sha256=signer.certificate_sha256,
                serial=f"{signer.serial:x}",
                attachment=envelope.name,
                legacy_algorithm=signer.legacy_algorithm,
                checked="; ".join(
                    [
                        "chain to the axis's trust anchors at reception (XML-DSig carries no "
                        "signing time); revocation from the axis's CRLs",
                        *signer.online_revocation.checked,
                    ]
                ),
            )
        )

    async def _revocation_checked(self, verify: Callable[..., T]) -> T:
        """`verify(revocation=...)` in the attachment thread, with the deployment's online
        revocation check. No responder is waited for in that thread (every PDF and envelope
        queued behind would wait too): a check that must ask one runs on the answers kept, the
        questions are asked in OCSP_QUESTIONS and it runs again on their answers, whatever the
        first run said (its CPU twice, once per certificate in a kept answer's lifetime, or per
        responder in 30 s while it cannot be asked)."""
        if self._revocation is None:
            return await ATTACHMENT_CHECKS.run(functools.partial(verify, revocation=None))
        check = self._revocation.deferred()
        try:
            checked = await ATTACHMENT_CHECKS.run(functools.partial(verify, revocation=check))
        except TrustError:
            # A refusal the answers being asked may change (which signature is refused first).
            if not check.pending:
                raise
        else:
            if not check.pending:
                return checked
        await OCSP_QUESTIONS.run(check.ask)
        return await ATTACHMENT_CHECKS.run(functools.partial(verify, revocation=check))

    def _decide(
        self, found: _Found, policy: SignatureRules, at: dt.datetime, attested_by: str | None
    ) -> Verification:
        def filled(role: SignerRole, forms: frozenset[SignatureForm]) -> bool:
            return any(c.role == role.value and c.form in forms for c in found.checks)

        person = filled(SignerRole.PERSON, policy.person_forms)
        organization = filled(SignerRole.ORGANIZATION, policy.organization_forms)
        if person and organization:
            return Verification(
                SignatureMode.SIGNED,
                tuple(found.checks),
                tuple(found.warnings),
                found.manifest_sha256,
                at,
            )
        if policy.transport_attested:
            warning = (
                f"UNSIGNED: accepted on the system authentication of the national axis "
                f"{attested_by} it came through (transport-attested by that peer), not on "
                "document signatures"
                if attested_by is not None
                else "UNSIGNED: accepted on the sender's mutual-TLS identity (transport-attested "
                "policy), not on document signatures"
            )
            return Verification(
                SignatureMode.TRANSPORT_ATTESTED,
                tuple(found.checks),
                (warning, *found.warnings),
                found.manifest_sha256,
                at,
            )
        if not found.checks and not self._required:
            return Verification(SignatureMode.UNSIGNED, verified_at=at)
        missing = SignerRole.ORGANIZATION if person else SignerRole.PERSON
        forms = policy.person_forms if missing is SignerRole.PERSON else policy.organization_forms
        error = SignatureMissingError(
            missing, f"none in a form the sender's policy accepts ({', '.join(sorted(forms))})"
        )
        if found.unsigned_pdf is not None and SignatureForm.PADES in forms:
            error.concerning(attachment=found.unsigned_pdf)
        raise error


def _usable(store: TrustStore | None) -> TrustStore:
    if store is None:
        raise RejectedError(
            "this deployment has no trust anchors to verify signatures with",
            reason="UNTRUSTED_ISSUER",
        )
    return store


def _unbound_keys(certificates: Sequence[x509.Certificate]) -> list[str]:
    """The keys of the certificates that name no docaxis identity: the directory says whom
    they sign for (the axis's own certificates need no binding)."""
    return [key_id(cert) for cert in certificates if identity_uri(cert) is None]


async def _bindings_of(
    certificates: Sequence[x509.Certificate], lookup: BindingLookup | None
) -> Bindings:
    """The directory's bindings of the certificates that name no docaxis identity (asked only
    when there are some)."""
    keys = _unbound_keys(certificates)
    if lookup is None or not keys:
        return NO_BINDINGS
    return await lookup(keys)


def _checked(timestamped_at: dt.datetime | None, authority: str) -> str:
    if timestamped_at is None:
        return _CHECKED_AT_RECEPTION
    return (
        f"RFC 3161 timestamp {timestamped_at.isoformat()} by {authority}, verified against the "
        "axis's TSA anchors; chain to the axis's trust anchors at that time; revocation from "
        "the axis's CRLs"
    )


@dataclass(frozen=True, slots=True)
class _Unbound:
    """A signed PDF whose signer certificates name no docaxis identity: verified once the
    directory said whom these keys sign for."""

    keys: list[str]


class _PdfAttachment:
    """A PDF attachment's checks on the attachment thread, on one reading of its bytes however
    many times they run (docs/perf, "One parse per PDF"): after the directory's bindings, and
    again on OCSP's answers (SignatureVerifier._revocation_checked). Each call runs in that
    thread; the reading is kept between them."""

    def __init__(
        self,
        data: bytes,
        trust: TrustStore | None,
        verify: Callable[..., PdfVerification],
    ) -> None:
        """`verify(pdf, store, bindings=…, revocation=…)`: `verify_pdf` with the Submit's
        settings."""
        self._data = data
        self._trust = trust
        self._verify = verify
        self._read: SignedPdf | None = None

    def _signed(self) -> SignedPdf | None:
        """The reading; None when the PDF carries no signature, or no reader can open it (then
        it cannot carry any)."""
        if self._read is None:
            try:
                self._read = read_pdf(self._data)
            except TrustError:
                return None
        return self._read if self._read.signatures else None

    def check(
        self, lookup: bool, *, revocation: RevocationCheck | None
    ) -> PdfVerification | _Unbound | None:
        """Verified at once, unless the directory must first be asked (on the event loop) whom
        its certificates sign for: then the keys to ask about. None: no signature."""
        pdf = self._signed()
        if pdf is None:
            return None
        store = _usable(self._trust)  # a signed PDF in a deployment without anchors: refused
        keys = _unbound_keys(pdf.signer_certificates()) if lookup else []
        if keys:
            return _Unbound(keys)
        return self._verify(pdf, store, bindings=NO_BINDINGS, revocation=revocation)

    def check_bound(
        self, bindings: Bindings, *, revocation: RevocationCheck | None
    ) -> PdfVerification:
        """Verified with the directory's bindings (after `check` asked for them)."""
        pdf = self._signed()
        assert pdf is not None  # `check` read its signatures
        return self._verify(pdf, _usable(self._trust), bindings=bindings, revocation=revocation)


def _check_binding(facts: EnvelopeFacts, submission: Submission) -> None:
    """The signed envelope must be the document submitted, not another one of the sender's."""
    header = submission.header
    problems = []
    if sorted(facts.recipients) != sorted(header.recipients):
        problems.append("recipients")
    if (facts.code_number, facts.code_notation) != (header.code_number, header.code_notation):
        problems.append("code")
    if facts.attachment_sha256 != tuple(a.sha256 for a in submission.attachments):
        problems.append("attachments")
    if problems:
        raise SignatureInvalidError(
            SignerRole.ORGANIZATION,
            f"the signed envelope does not match the submission ({', '.join(problems)})",
        )


def _manifest_checks(verified: VerifiedSigners) -> Sequence[SignatureCheck]:
    return [
        SignatureCheck(
            form=SignatureForm.MANIFEST.value,
            role=signer.role.value,
            subject=signer.subject,
            agency_code=signer.agency_code,
            algorithm=signer.algorithm.value,
            certificate_sha256=signer.certificate_sha256,
            serial=f"{signer.serial:x}",
            signed_at=signer.signed_at,
            full_name=signer.full_name or "",
            checked=_CHECKED,
        )
        for signer in (verified.person, verified.organization)
    ]

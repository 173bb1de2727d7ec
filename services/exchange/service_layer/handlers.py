"""Exchange use cases: upload, submit, push, acknowledge, track, download."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import structlog

from docaxis_client.trust.errors import TrustError
from docaxis_client.trust.keys import SigningIdentity
from docaxis_client.trust.receipts import TransportReceipt, sign_receipt
from services.common import tracing
from services.common.clock import Clock, utc_now
from services.common.errors import (
    ConflictError,
    DomainError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    RejectedError,
    ValidationError,
    require_uuid,
)
from services.common.group_commit import SIDE_BY_SIDE, GroupCommit
from services.common.trust import domain_error
from services.exchange.domain.delivery import LedgerEvent
from services.exchange.domain.model import (
    DEFAULT_MAX_ATTACHMENT_BYTES,
    DEFAULT_MAX_PUSHES,
    AttachmentRef,
    CodeCheck,
    Receipt,
    Submission,
    nfc,
    submission_problems,
    today_in_vietnam,
)
from services.exchange.domain.quota import check_upload_quota
from services.exchange.domain.verification import Verification
from services.exchange.domain.withdrawal import Sight, identity_only, recipient_sight
from services.exchange.service_layer.directory_cache import DirectoryCache, KeptReads
from services.exchange.service_layer.manifest_digests import ManifestDigests
from services.exchange.service_layer.ports import (
    Acknowledgement,
    AttachmentsGoneError,
    DeadLetter,
    DeliveryRecord,
    DirectoryChangedError,
    DirectoryLookup,
    DocumentStore,
    DocumentTrack,
    DuplicateConsignmentError,
    DuplicateDocumentError,
    NewSubmission,
    PushItem,
    StoredSubmission,
    StoreRefusal,
    SubmitLookups,
)
from services.exchange.service_layer.routing import route_recipients
from services.exchange.service_layer.signatures import SignatureVerifier, is_pdf_attachment
from services.exchange.service_layer.uploads import ResumableUploads

log = structlog.get_logger(__name__)

MAX_CHUNK_BYTES = 4 * 1024 * 1024
# Documents stored in one transaction at most (a SubmitBatch carries up to 100).
MAX_SUBMIT_GROUP = 200
# Submit attempts on kept directory reads before one reads the directory itself: each further
# attempt means the directory changed while the previous one was deciding.
KEPT_ATTEMPTS = 2
# Copies claimed for a push in one transaction at most, over every stream of the process.
MAX_PUSH_GROUP = 1000


@dataclass(frozen=True, slots=True)
class SubmitResult:
    receipt: Receipt
    replayed: bool


@dataclass(frozen=True, slots=True)
class Limits:
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    # Pushes (or pull-mode fetches) of one copy without an acknowledgement before it is
    # dead-lettered; None means no limit.
    max_pushes: int | None = DEFAULT_MAX_PUSHES
    # Bytes an agency may hold in uploads no document uses (domain/quota.py); None: no quota.
    upload_quota_bytes: int | None = None


class SizeLimitError(ValidationError):
    reason = "SIZE_LIMIT_EXCEEDED"


class AttachmentMismatchError(ValidationError):
    reason = "ATTACHMENT_MISMATCH"


class ExchangeHandlers:
    def __init__(
        self,
        store: DocumentStore,
        directory: DirectoryLookup,
        code_problem: CodeCheck,
        limits: Limits = Limits(),
        clock: Clock = utc_now,
        *,
        signatures: SignatureVerifier | None = None,
        hub: SigningIdentity | None = None,
        kept_directory: DirectoryCache | None = None,
    ) -> None:
        """`signatures` defaults to a policy without trust anchors: unsigned documents pass,
        signed ones are refused (nothing to verify them with). Without a `hub` identity no
        transport receipts are issued. `kept_directory`: Submit's directory reads kept in
        memory (the same directory as `directory`, in this database)."""
        self._kept_directory = kept_directory
        self._store = store
        self._directory = directory
        self._code_problem = code_problem
        self._limits = limits
        self._clock = clock
        self._signatures = signatures or SignatureVerifier(lambda: None, required=False)
        self._hub = hub
        self._submissions: GroupCommit[NewSubmission, StoreRefusal | None] = GroupCommit(
            store.store_submissions, max_items=MAX_SUBMIT_GROUP, name="submit"
        )
        self._pushes: GroupCommit[
            tuple[str, str, dt.datetime | None], PushItem | DeadLetter | None
        ] = GroupCommit(
            self._claim_pushes, max_items=MAX_PUSH_GROUP, name="push", concurrency=SIDE_BY_SIDE
        )
        self._manifest_digests = ManifestDigests()

    async def upload_attachment(
        self, owner: str, sha256: str, size: int, chunks: AsyncIterator[bytes]
    ) -> None:
        """Stores an attachment, verified against its declared size and SHA-256 as it streams."""
        self._check_declaration(sha256, size)
        quota = self._limits.upload_quota_bytes
        # Before the bytes travel; the store checks again as it keeps them (concurrent uploads).
        check_upload_quota(owner, await self._store.unused_upload_bytes(owner, sha256), size, quota)
        limit = self._limits.max_attachment_bytes
        await self._store.store_blob(
            owner, sha256, _verified(chunks, sha256, size, limit), quota=quota
        )
        log.info("attachment_uploaded", owner=owner, sha256=sha256, size=size)

    def _check_declaration(self, sha256: str, size: int) -> None:
        problems: list[FieldViolation] = []
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            problems.append(FieldViolation("declaration.sha256", "64 lowercase hex digits"))
        if size <= 0:
            problems.append(FieldViolation("declaration.size", "must be positive"))
        if problems:
            raise ValidationError("invalid attachment declaration", problems)
        limit = self._limits.max_attachment_bytes
        if size > limit:
            raise SizeLimitError(
                f"attachment of {size} bytes exceeds the limit of {limit}",
                [FieldViolation("declaration.size", f"at most {limit} bytes")],
                meta={"limit_bytes": str(limit)},
            )

    @property
    def uploads(self) -> ResumableUploads:
        """Resumable uploads (BeginUpload, UploadChunks, GetUpload)."""
        return ResumableUploads(
            self._store,
            clock=self._clock,
            declaration_problems=self._check_declaration,
            quota=self._limits.upload_quota_bytes,
        )

    async def submit(
        self,
        caller_agency: str,
        submission: Submission,
        *,
        wire_problems: Sequence[FieldViolation] = (),
    ) -> SubmitResult:
        """`wire_problems` are what the transport could not parse; they are reported together
        with the content checks."""
        header = submission.header
        if header.sender != caller_agency:
            raise PermissionDeniedError(
                f"agency {caller_agency} cannot submit as {header.sender}",
                reason="SENDER_MISMATCH",
                meta={"caller": caller_agency, "sender": header.sender},
            )
        now = self._clock()
        problems = [
            *wire_problems,
            *submission_problems(
                submission,
                code_problem=self._code_problem,
                today=today_in_vietnam(now),
                max_attachment_bytes=self._limits.max_attachment_bytes,
            ),
        ]
        if problems:
            raise ValidationError("invalid submission", problems)
        # The sender must hold every blob it names before any of them is read for verification;
        # whether it does, the earlier request under this consignment id and the bytes the
        # signature checks read, in one round trip.
        lookups = await self._store.submit_lookups(
            header.sender,
            _files(submission),
            submission.consignment_id,
            contents=_verified_contents(submission),
        )
        _refuse_unowned(submission, lookups.unowned)
        stored = await self._decide_and_store(submission, now, lookups)
        if isinstance(stored, SubmitResult):
            return stored
        decided, refusal = stored
        receipt = decided.receipt
        if isinstance(refusal, DuplicateDocumentError):
            raise ConflictError(
                f"document {header.document_id} was already submitted",
                meta={"document_uuid": refusal.document_uuid, "document_id": header.document_id},
            )
        if isinstance(refusal, AttachmentsGoneError):
            # The upload sweeper took an upload unused for its whole TTL just now.
            await self._require_uploaded(submission)
            raise refusal  # pragma: no cover - a blob that vanished is no longer owned
        if isinstance(refusal, DuplicateConsignmentError):
            # A concurrent identical request won the race: answer as its replay.
            replay = await self._replay(submission, decided.fingerprint)
            if replay is None:  # pragma: no cover - the row that conflicted must be readable
                raise refusal
            return replay
        if refusal is not None:  # pragma: no cover - the store refuses with the errors above
            raise refusal
        digest = decided.verification and decided.verification.manifest_sha256
        if digest:
            # For its receipts: the manifest its signatures cover, as receipt_for would build it.
            self._manifest_digests.keep(receipt.document_uuid, digest)
        log.info(
            "document_submitted",
            document_uuid=receipt.document_uuid,
            sender=header.sender,
            recipients=len(receipt.routes),
            attachments=len(submission.attachments),
        )
        return SubmitResult(receipt, replayed=False)

    async def _decide_and_store(
        self, submission: Submission, now: dt.datetime, lookups: SubmitLookups
    ) -> SubmitResult | tuple[NewSubmission, StoreRefusal | DomainError | None]:
        """A replay's receipt, or the document decided and what the store answered."""
        for attempt in itertools.count():
            # Kept directory reads, checked again by the transaction (directory_cache.py); after
            # KEPT_ATTEMPTS directory changes in a row an attempt reads the directory itself,
            # unstamped, which the store never refuses as changed: the loop ends there.
            reads = self._kept_reads(fresh=attempt >= KEPT_ATTEMPTS)
            try:
                decided = await self._decide(submission, now, reads, lookups)
            except DomainError:
                if await self._reads_current(reads):
                    raise
                continue  # refused on what the directory no longer says: decide again
            if isinstance(decided, SubmitResult):
                return decided
            # Group-committed with every other document stored meanwhile (this call's batch,
            # other callers'): answered once the transaction that carried it has committed.
            (refusal,) = await self._submissions.submit([decided])
            if not isinstance(refusal, DirectoryChangedError):
                return decided, refusal
            if self._kept_directory is not None:
                self._kept_directory.clear()
        raise AssertionError("unreachable: itertools.count() does not end")

    async def _decide(
        self,
        submission: Submission,
        now: dt.datetime,
        reads: KeptReads | None,
        lookups: SubmitLookups,
    ) -> SubmitResult | NewSubmission:
        """The stored receipt of a replay, or the document to store: signatures verified and
        recipients routed on the directory's kept `reads` (on the directory itself: None)."""
        header = submission.header
        directory: DirectoryLookup = reads or self._directory

        async def content(sha256: str) -> bytes:
            read = lookups.contents.get(sha256)
            return read if read is not None else await self._content(sha256)

        # Before anything is stored or routed: a refused signature leaves no trace but the log.
        policy = await directory.signature_policy(header.sender, header.document_type)
        verification = await self._signatures.verify(
            submission,
            at=now,
            policy=policy,
            content=content,
            bindings=directory.certificate_bindings,
        )
        fingerprint = submission_fingerprint(submission)
        replay = _replayed(submission, fingerprint, lookups.earlier)
        if replay is not None:
            return replay
        routes = await route_recipients(
            directory, header.sender, header.recipients, today_in_vietnam(self._clock())
        )
        receipt = Receipt(
            document_uuid=str(uuid.uuid4()),
            document_id=header.document_id,
            consignment_id=submission.consignment_id,
            accepted_at=now,
            routes=routes,
        )
        return NewSubmission(
            submission,
            receipt,
            fingerprint,
            _submission_events(submission, receipt, fingerprint, verification),
            verification,
            tracing.current_traceparent(),
            directory_generations=frozenset(reads.stamps if reads else ()),
        )

    def _kept_reads(self, *, fresh: bool) -> KeptReads | None:
        if self._kept_directory is None or fresh:
            return None
        return self._kept_directory.reads()

    async def _reads_current(self, reads: KeptReads | None) -> bool:
        """Whether a refusal decided on kept `reads` stands (directory_cache.py, point 4)."""
        if reads is None or self._kept_directory is None:
            return True
        return await self._kept_directory.is_current(frozenset(reads.stamps))

    async def _require_uploaded(self, submission: Submission) -> None:
        sender = submission.header.sender
        _refuse_unowned(
            submission, await self._store.unowned_attachments(sender, _files(submission))
        )

    async def _content(self, sha256: str) -> bytes:
        """A blob's bytes for verification, within the attachment size limit."""
        return await self._store.blob_content(sha256, self._limits.max_attachment_bytes)

    async def _replay(self, submission: Submission, fingerprint: str) -> SubmitResult | None:
        stored = await self._store.find_by_consignment(
            submission.header.sender, submission.consignment_id
        )
        return _replayed(submission, fingerprint, stored)

    async def status_parties(
        self, caller: str, delivery_id: str
    ) -> tuple[str, str | None, str | None]:
        """Whom `caller` answers for on this delivery, and whom its statuses go to.

        After a reorganisation the successor of a closed recipient reports on copies addressed
        to the old code, and statuses for a sender whose code has closed go to its successor.
        Returns (recipient, notify, notify_hub); notify None means the sender itself, and
        notify_hub is the peer hub that serves the successor when another hub does.
        """
        record = await self._store.delivery(delivery_id)
        if record is None:
            return caller, None, None
        today = today_in_vietnam(self._clock())
        answers_for_recipient = record.recipient != caller
        # One directory call for both codes (a network hop when the directory is remote).
        codes = [record.recipient, record.sender] if answers_for_recipient else [record.sender]
        resolved = await self._directory.resolve(codes, today)
        recipient = caller
        if answers_for_recipient and resolved[record.recipient].effective == caller:
            recipient = record.recipient
        sender_now = resolved[record.sender].effective
        if sender_now in (None, record.sender):
            return recipient, None, None
        return recipient, sender_now, resolved[record.sender].hub

    async def begin_push(self, delivery_id: str, recipient: str) -> PushItem | DeadLetter | None:
        return (await self.begin_pushes([(delivery_id, recipient)]))[0]

    async def begin_pushes(
        self,
        claims: Sequence[tuple[str, str]],
        published: Mapping[str, dt.datetime] | None = None,
    ) -> list[PushItem | DeadLetter | None]:
        """Each (delivery id, recipient) claimed for a push (see DocumentStore.begin_pushes),
        group-committed with every other stream's and fetch's claims: a circular's copies,
        handed by the broker to thousands of streams at once, are claimed in a few transactions
        (each loading the document once) rather than one per stream. Answered once the
        transaction that carried them has committed. `published`: the relay's time of publish
        of the copies the broker handed over (by delivery id), none for a fetch (the store
        has it once the relay committed it)."""
        times = published or {}
        claimed: list[PushItem | DeadLetter | None] = []
        items = [(d, r, times.get(d)) for d, r in claims]
        for outcome in await self._pushes.submit(items):
            if isinstance(outcome, DomainError):
                raise outcome  # never: the store refuses no claim on its own
            claimed.append(outcome)
        return claimed

    async def _claim_pushes(
        self, items: Sequence[tuple[str, str, dt.datetime | None]]
    ) -> list[PushItem | DeadLetter | None]:
        claims = [(delivery_id, recipient) for delivery_id, recipient, _ in items]
        published = {d: at for d, _, at in items if at is not None}
        outcomes = await self._store.begin_pushes(
            claims, self._limits.max_pushes, published=published
        )
        for (delivery_id, recipient), outcome in zip(claims, outcomes, strict=True):
            if isinstance(outcome, DeadLetter):
                # The alert of domain.md §10.1: delivery gave up on this copy.
                log.warning(
                    "delivery_dead_lettered",
                    delivery_id=delivery_id,
                    recipient=recipient,
                    reason=outcome.reason,
                    push_count=outcome.push_count,
                )
        return outcomes

    async def acknowledge(self, caller_agency: str, delivery_id: str) -> Acknowledgement:
        require_uuid("delivery_id", delivery_id)
        result = await self._store.acknowledge(delivery_id, caller_agency, self._clock())
        if result is None:
            raise NotFoundError(f"no delivery {delivery_id} for {caller_agency}")
        if not result.already_acknowledged:
            log.info("delivery_acknowledged", delivery_id=delivery_id, recipient=caller_agency)
        if self._hub is not None:
            # A separate, idempotent step: should the process die right after the commit above,
            # the receipt is issued on the next acknowledgement or when someone asks for it.
            # Should it fail (the database lost between the two: a failover), the acknowledgement
            # still stands and is answered as such: an error here told the DMS its committed
            # acknowledgement had failed, and a DMS that lists its mail again to retry never
            # saw that copy again (the chaos run's REST DMS: "lost = 1").
            try:
                await self._issue_missing_receipt(delivery_id)
            except Exception as exc:  # noqa: BLE001 - issued when asked for (transport_receipt)
                log.warning("transport_receipt_deferred", delivery_id=delivery_id, error=repr(exc))
        return result

    async def _issue_missing_receipt(self, delivery_id: str) -> None:
        record = await self._store.delivery(delivery_id)
        if record is not None and record.transport_receipt is None:
            receipt = self.receipt_for(record)
            if receipt is not None:
                await self._store.save_transport_receipt(delivery_id, receipt)

    async def transport_receipt(self, caller_agency: str, delivery_id: str) -> bytes:
        """The hub-signed receipt of an acknowledged delivery, for its sender or recipient."""
        require_uuid("delivery_id", delivery_id)
        record = await self._store.delivery(delivery_id)
        # Not found and not yours look the same, as for Track.
        missing = NotFoundError(f"no delivery {delivery_id} among those you sent or received")
        if record is None or caller_agency not in (record.sender, record.recipient):
            raise missing
        sight = recipient_sight(record.state, record.acknowledged_at)
        if sight is Sight.NONE:
            if caller_agency != record.sender:
                raise missing
            # The copy was withdrawn before anyone acknowledged it: no pickup to attest, ever.
            raise NotFoundError(
                f"delivery {delivery_id} was withdrawn before its recipient acknowledged it: "
                "it has no transport receipt",
                meta={"delivery_id": delivery_id},
            )
        if record.acknowledged_at is None:
            raise RejectedError(
                f"delivery {delivery_id} is not acknowledged yet",
                reason="NOT_ACKNOWLEDGED",
                meta={"delivery_id": delivery_id},
            )
        if record.transport_receipt is not None:
            return record.transport_receipt
        if self._hub is None:
            raise NotFoundError("this deployment issues no transport receipts (no hub identity)")
        return await self._issue_receipt(record)

    async def verify_signatures(
        self, submission: Submission, at: dt.datetime, *, attested_by: str | None = None
    ) -> Verification:
        """The document's signatures checked as at Submit, under the sender's policy: for a
        document a peer hub forwards (federation), checked again here before it is stored.
        `attested_by`: the national axis it came from (SignatureVerifier.verify)."""
        header = submission.header
        policy = await self._directory.signature_policy(header.sender, header.document_type)
        return await self._signatures.verify(
            submission,
            at=at,
            policy=policy,
            content=self._content,
            bindings=self._directory.certificate_bindings,
            attested_by=attested_by,
        )

    def receipt_for(self, record: DeliveryRecord) -> TransportReceipt | None:
        """The hub-signed transport receipt of an acknowledged delivery; None without a hub
        identity, or for an unsigned development-mode document (no manifest): its
        acknowledgement stands, it just gets no receipt."""
        if self._hub is None:
            return None
        try:
            return self._sign_receipt(record)
        except ValidationError as exc:
            log.warning(
                "transport_receipt_not_issued", delivery_id=record.delivery_id, reason=exc.reason
            )
            return None

    def _manifest_sha256(self, record: DeliveryRecord) -> str:
        try:
            return self._manifest_digests.of(
                record.document_uuid, record.header, record.attachments
            )
        except TrustError as exc:
            raise domain_error(exc) from None

    def _sign_receipt(self, record: DeliveryRecord) -> TransportReceipt:
        assert self._hub is not None
        assert record.acknowledged_at is not None
        return sign_receipt(
            document_uuid=record.document_uuid,
            document_id=record.header.document_id,
            manifest_sha256=self._manifest_sha256(record),
            recipient=record.recipient,
            hub=self._hub,
            acknowledged_at=record.acknowledged_at,
        )

    async def _issue_receipt(self, record: DeliveryRecord) -> bytes:
        stored = await self._store.save_transport_receipt(
            record.delivery_id, self._sign_receipt(record)
        )
        log.info(
            "transport_receipt_issued", delivery_id=record.delivery_id, recipient=record.recipient
        )
        return stored

    async def track(
        self, caller_agency: str, *, document_uuid: str | None, document_id: str | None
    ) -> DocumentTrack:
        if document_uuid is not None:
            require_uuid("document_uuid", document_uuid)
        if document_uuid is None and not document_id:
            raise ValidationError(
                "nothing to track",
                [FieldViolation("document", "give document_uuid or document_id")],
            )
        track = await self._store.track(
            document_uuid=document_uuid, document_id=nfc(document_id) if document_id else None
        )
        # Not found and not yours look the same, so nobody learns what others exchange.
        missing = NotFoundError("no such document among those you sent or received")
        if track is None:
            raise missing
        if track.header.sender == caller_agency:
            return track
        # One copy per recipient (and document): the caller's, if any.
        own = next((r for r in track.recipients if r.effective_recipient == caller_agency), None)
        sight = Sight.NONE if own is None else recipient_sight(own.state, own.acknowledged_at)
        if own is None or sight is Sight.NONE:
            raise missing
        if sight is Sight.HISTORY:
            return dataclasses.replace(
                track,
                header=identity_only(track.header, own.requested_recipient),
                attachments=(),
                recipients=(own,),
                withheld=True,
                envelope=None,
            )
        return dataclasses.replace(track, recipients=(own,))

    async def download(
        self, caller_agency: str, document_uuid: str, sha256: str, offset: int
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Authorises first (sender or recipient, and the attachment is the document's)."""
        require_uuid("document_uuid", document_uuid)
        if offset < 0:
            raise ValidationError("invalid offset", [FieldViolation("offset", "must be >= 0")])
        track = await self.track(caller_agency, document_uuid=document_uuid, document_id=None)
        envelope = track.envelope.sha256 if track.envelope is not None else None
        if sha256 != envelope and not any(a.sha256 == sha256 for a in track.attachments):
            raise NotFoundError(f"document {document_uuid} has no attachment {sha256}")
        return self._store.attachment_chunks(document_uuid, sha256, offset)


async def _verified(
    chunks: AsyncIterator[bytes], sha256: str, size: int, limit: int
) -> AsyncIterator[bytes]:
    """Passes chunks through, failing as soon as the stream outgrows its declaration or the limit,
    and at the end when the digest differs: the store then rolls back."""
    digest = hashlib.sha256()
    received = 0
    async for chunk in chunks:
        if len(chunk) > MAX_CHUNK_BYTES:
            raise ValidationError(
                "chunk too large", [FieldViolation("chunk", f"at most {MAX_CHUNK_BYTES} bytes")]
            )
        received += len(chunk)
        if received > limit:
            raise SizeLimitError(
                f"attachment exceeds the limit of {limit} bytes",
                [FieldViolation("chunk", f"at most {limit} bytes in all")],
                meta={"limit_bytes": str(limit)},
            )
        if received > size:
            raise AttachmentMismatchError(
                "more bytes than declared",
                [FieldViolation("chunk", f"declared {size} bytes, received more")],
            )
        if chunk:
            digest.update(chunk)
            yield chunk
    if received != size:
        raise AttachmentMismatchError(
            "fewer bytes than declared",
            [FieldViolation("declaration.size", f"declared {size} bytes, received {received}")],
        )
    if digest.hexdigest() != sha256:
        raise AttachmentMismatchError(
            "content does not match the declared SHA-256",
            [FieldViolation("declaration.sha256", f"content hashes to {digest.hexdigest()}")],
        )


def submission_fingerprint(submission: Submission) -> str:
    """A digest of everything the sender asked for: a replay must match it exactly.

    The repr of these frozen dataclasses is deterministic (fields in declaration order, values
    already NFC-normalised), and the digest is only compared within one deployment's storage.
    Signatures are left out: a retry signs the same content again, with a new signing time and
    (ECDSA, RSA-PSS) new random bytes, and is still the same request; what the signatures cover,
    header and attachments, is in.
    """
    unsigned = dataclasses.replace(submission, signatures=())
    return hashlib.sha256(repr(unsigned).encode()).hexdigest()


def _submission_events(
    submission: Submission, receipt: Receipt, fingerprint: str, verification: Verification
) -> list[LedgerEvent]:
    header = submission.header
    events = [
        LedgerEvent(
            entry_type="submission",
            doc_uuid=receipt.document_uuid,
            document_id=receipt.document_id,
            occurred_at=receipt.accepted_at,
            from_agency=header.sender,
            data={
                "consignment_sha256": hashlib.sha256(
                    submission.consignment_id.encode()
                ).hexdigest(),
                "request_sha256": fingerprint,
                "business_type": int(header.business_type),
                "attachments": [a.sha256 for a in submission.attachments],
                "signatures": len(submission.signatures),
                "signature_mode": verification.mode.value,
                **({"envelope": submission.envelope.sha256} if submission.envelope else {}),
            },
        )
    ]
    events.extend(
        LedgerEvent(
            entry_type="routing",
            doc_uuid=receipt.document_uuid,
            document_id=receipt.document_id,
            occurred_at=receipt.accepted_at,
            from_agency=header.sender,
            to_agency=route.effective_recipient,
            data={
                "delivery": route.delivery_id,
                "requested": route.requested_recipient,
                **({"hub": route.hub} if route.hub else {}),
            },
        )
        for route in receipt.routes
    )
    # One `verification` fact per signature, with certificate hashes only (no names: the
    # ledger holds no personal data in clear).
    events.extend(
        LedgerEvent(
            entry_type="verification",
            doc_uuid=receipt.document_uuid,
            document_id=receipt.document_id,
            occurred_at=receipt.accepted_at,
            from_agency=header.sender,
            data=data,
        )
        for data in verification.ledger_data()
    )
    return events


def _files(submission: Submission) -> list[AttachmentRef]:
    """The blobs a submission names: its attachments, then its envelope."""
    return [*submission.attachments, *filter(None, [submission.envelope])]


def _verified_contents(submission: Submission) -> set[str]:
    """The blobs whose bytes the signature checks read: every PDF, and the envelope."""
    wanted = {a.sha256 for a in submission.attachments if is_pdf_attachment(a)}
    if submission.envelope is not None:
        wanted.add(submission.envelope.sha256)
    return wanted


def _refuse_unowned(submission: Submission, unowned: Sequence[int]) -> None:
    if unowned:
        raise ValidationError(
            "attachments not uploaded",
            [
                FieldViolation(
                    f"attachments[{index}]" if index < len(submission.attachments) else "envelope",
                    "no completed upload by the sender with this sha256 and size",
                )
                for index in unowned
            ],
        )


def _replayed(
    submission: Submission, fingerprint: str, stored: StoredSubmission | None
) -> SubmitResult | None:
    """The earlier request's receipt when this one repeats it; ConflictError when the
    consignment id was used for another request."""
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise ConflictError(
            f"consignment {submission.consignment_id} was already used for another request",
            meta={
                "consignment_id": submission.consignment_id,
                "document_uuid": stored.receipt.document_uuid,
            },
        )
    return SubmitResult(stored.receipt, replayed=True)

"""The exchange's storage in Postgres: documents, blobs, deliveries, outbox, ledger staging."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from docaxis.exchange.v1 import events_pb2

from docaxis_client.trust.receipts import TransportReceipt
from services.common.postgres import Conn
from services.exchange.adapters.postgres_copies import (
    LockedCopy,
    lock_copies,
    save_copies,
    save_sql,
    stored_failures,
    with_failures,
)
from services.exchange.adapters.postgres_statements import (
    ACTOR as ACTOR,  # re-exported: the ledger staging's callers name it from here
)
from services.exchange.adapters.postgres_statements import (
    Parameters,
    document_keys,
    event_data,
    ledger_events_sql,
)
from services.exchange.adapters.postgres_uploads import (
    PostgresUploads,
    check_quota,
    publish_blob,
)
from services.exchange.adapters.rabbit import Held, OutboundMessage
from services.exchange.adapters.receipt_chains import ReceiptChains, stored_receipt
from services.exchange.adapters.signature_chains import SignatureChain, SignatureChains
from services.exchange.adapters.stored_documents import PushedDocument, StoredDocuments
from services.exchange.domain import delivery
from services.exchange.domain.delivery import LedgerEvent
from services.exchange.domain.model import (
    AttachmentRef,
    BusinessType,
    DeliveryState,
    Header,
    Receipt,
    Route,
    Signature,
)
from services.exchange.domain.peering import Hop
from services.exchange.domain.verification import Verification
from services.exchange.service_layer.ports import (
    Acknowledgement,
    AttachmentsGoneError,
    DeadLetter,
    DeliveryRecord,
    DirectoryChangedError,
    DocumentTrack,
    DuplicateConsignmentError,
    DuplicateDocumentError,
    NewSubmission,
    PushItem,
    RecipientTrack,
    StoredSubmission,
    StoreRefusal,
    SubmitLookups,
)

OUTBOX_CHANNEL = "exchange_outbox"
DELIVERY_MESSAGE_TYPE = events_pb2.DeliveryQueued.DESCRIPTOR.full_name


def header_to_json(header: Header) -> str:
    return json.dumps(
        {
            "sender": header.sender,
            "recipients": list(header.recipients),
            "code_number": header.code_number,
            "code_notation": header.code_notation,
            "promulgation_date": header.promulgation_date.isoformat(),
            "subject": header.subject,
            "promulgation_place": header.promulgation_place,
            "document_type": header.document_type,
            "type_name": header.type_name,
            "content": header.content,
            "signer_competence": header.signer_competence,
            "signer_position": header.signer_position,
            "signer_full_name": header.signer_full_name,
            "due_date": header.due_date.isoformat() if header.due_date else None,
            "priority": header.priority,
            "business_type": int(header.business_type),
            "response_for": list(header.response_for),
            "to_places": list(header.to_places),
        },
        ensure_ascii=False,
    )


def header_from_json(raw: str) -> Header:
    data = json.loads(raw)
    return Header(
        sender=data["sender"],
        recipients=tuple(data["recipients"]),
        code_number=data["code_number"],
        code_notation=data["code_notation"],
        promulgation_date=dt.date.fromisoformat(data["promulgation_date"]),
        subject=data["subject"],
        promulgation_place=data["promulgation_place"],
        document_type=data["document_type"],
        type_name=data["type_name"],
        content=data["content"],
        signer_competence=data["signer_competence"],
        signer_position=data["signer_position"],
        signer_full_name=data["signer_full_name"],
        due_date=dt.date.fromisoformat(data["due_date"]) if data["due_date"] else None,
        priority=data["priority"],
        business_type=BusinessType(data["business_type"]),
        response_for=tuple(data["response_for"]),
        to_places=tuple(data["to_places"]),
    )


# The routing key (and inbox queue suffix) of the copies waiting for a peer hub: agency codes are
# upper case, so they never begin with it.
PEER_ROUTING_PREFIX = "hub."


async def stage_delivery_messages(
    conn: Conn, copies: Sequence[tuple[str, str, str]], *, wake_relay: bool = False
) -> None:
    """Outbox rows that queue each (document uuid, recipient, delivery id) copy, ids in the
    list's order (the relay publishes by id), as one statement whatever their number. The relay
    wakes at commit on a NOTIFY of OUTBOX_CHANNEL: sent by this same statement with
    `wake_relay`, by the caller otherwise. Every message about a document is published in the
    document's trace (the Submit's), also when an administrator's resend or a reorganisation
    queues it again."""
    if not copies:
        if wake_relay:
            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        return
    # A data-modifying WITH runs to completion whatever the main query reads of it.
    wake = f"WITH staged AS (%s) SELECT pg_notify('{OUTBOX_CHANNEL}', '')" if wake_relay else "%s"
    await conn.execute(
        wake
        % """
        INSERT INTO exchange.outbox (routing_key, message_id, message_type, payload,
            delivery_id, traceparent)
        SELECT
            -- A copy another hub delivers waits in that peer's queue (PEER_ROUTING_PREFIX).
            coalesce('hub.' || d.via_hub, u.recipient), u.message_id, $4, u.payload,
            u.delivery_id, doc.traceparent
        FROM unnest($1::text[], $2::uuid[], $3::uuid[], $5::bytea[], $6::text[])
            WITH ORDINALITY AS u(recipient, delivery_id, document_uuid, payload, message_id, n)
        LEFT JOIN exchange.delivery d ON d.id = u.delivery_id
        LEFT JOIN exchange.document doc ON doc.uuid = u.document_uuid
        ORDER BY u.n
        """,
        [recipient for _, recipient, _ in copies],
        [uuid.UUID(delivery_id) for _, _, delivery_id in copies],
        [uuid.UUID(document_uuid) for document_uuid, _, _ in copies],
        DELIVERY_MESSAGE_TYPE,
        [
            events_pb2.DeliveryQueued(
                delivery_id=delivery_id, document_uuid=document_uuid, recipient=recipient
            ).SerializeToString()
            for document_uuid, recipient, delivery_id in copies
        ],
        [delivery_id for _, _, delivery_id in copies],
    )


async def stage_ledger_events(conn: Conn, events: Sequence[LedgerEvent]) -> None:
    """The events in ledger.pending, in order (ids follow the list: the ledger sequences by id),
    as one statement whatever their number: executemany would execute one INSERT per event,
    about fourteen per document on the delivery path."""
    if not events:
        return
    await conn.execute(
        """
        INSERT INTO ledger.pending
            (entry_type, doc_uuid, document_id, from_agency, to_agency, actor, occurred_at, data)
        SELECT e.entry_type, e.doc_uuid, e.document_id, e.from_agency, e.to_agency, $6,
            e.occurred_at, e.data::jsonb
        FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
            $7::timestamptz[], $8::text[]) WITH ORDINALITY
            AS e(entry_type, doc_uuid, document_id, from_agency, to_agency, occurred_at, data, n)
        ORDER BY e.n
        """,
        [e.entry_type for e in events],
        document_keys(events),
        [e.document_id for e in events],
        [e.from_agency for e in events],
        [e.to_agency for e in events],
        ACTOR,
        [e.occurred_at for e in events],
        [event_data(e) for e in events],
    )


def envelope_to_json(envelope: AttachmentRef | None) -> str | None:
    if envelope is None:
        return None
    return json.dumps(
        {
            "name": envelope.name,
            "media_type": envelope.media_type,
            "size": envelope.size,
            "sha256": envelope.sha256,
        }
    )


def envelope_from_json(text: str | None) -> AttachmentRef | None:
    if text is None:
        return None
    data = json.loads(text)
    return AttachmentRef(data["name"], data["media_type"], data["size"], data["sha256"])


def verification_from_json(text: str | None) -> Verification | None:
    return None if text is None else Verification.from_json(text)


async def _attachments(conn: Conn, document_uuid: uuid.UUID) -> tuple[AttachmentRef, ...]:
    rows = await conn.fetch(
        """
        SELECT name, media_type, size, sha256, description FROM exchange.document_attachment
        WHERE document_uuid = $1 ORDER BY position
        """,
        document_uuid,
    )
    return tuple(
        AttachmentRef(a["name"], a["media_type"], a["size"], a["sha256"], a["description"])
        for a in rows
    )


def trace_to_json(trace: Sequence[Hop]) -> str:
    """A document's hops across hubs as exchange.document.trace stores them (federation)."""
    return json.dumps([{"hub": h.hub, "at": h.at.isoformat()} for h in trace])


def trace_from_json(raw: str) -> tuple[Hop, ...]:
    return tuple(Hop(h["hub"], dt.datetime.fromisoformat(h["at"])) for h in json.loads(raw))


async def load_manifests(
    conn: Conn, keys: Sequence[uuid.UUID], kept: StoredDocuments
) -> dict[uuid.UUID, tuple[Header, tuple[AttachmentRef, ...]]]:
    """What a document's manifest covers, header and attachments, for its transport receipts:
    from `kept`, or else load_documents without the signatures (their certificate chains are
    most of a document's bytes), the verification or the trace, in two round trips whatever the
    number."""
    manifests: dict[uuid.UUID, tuple[Header, tuple[AttachmentRef, ...]]] = {}
    for key in keys:
        if (document := kept.get(key)) is not None:
            manifests[key] = (document[0], document[1])
    keys = [key for key in keys if key not in manifests]
    if not keys:
        return manifests
    documents = await conn.fetch(
        "SELECT uuid, header::text AS header FROM exchange.document WHERE uuid = ANY($1::uuid[])",
        keys,
    )
    attachments = await _attachments_of(conn, keys)
    return manifests | {
        d["uuid"]: (header_from_json(d["header"]), tuple(attachments.get(d["uuid"], ())))
        for d in documents
    }


async def _attachments_of(
    conn: Conn, keys: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[AttachmentRef]]:
    attachments: dict[uuid.UUID, list[AttachmentRef]] = {}
    for a in await conn.fetch(
        """
        SELECT document_uuid, name, media_type, size, sha256, description
        FROM exchange.document_attachment WHERE document_uuid = ANY($1::uuid[])
        ORDER BY document_uuid, position
        """,
        keys,
    ):
        attachments.setdefault(a["document_uuid"], []).append(
            AttachmentRef(a["name"], a["media_type"], a["size"], a["sha256"], a["description"])
        )
    return attachments


async def load_documents(
    conn: Conn, keys: Sequence[uuid.UUID], kept: StoredDocuments, chains: SignatureChains
) -> dict[uuid.UUID, PushedDocument]:
    """What a push carries of each document: header, attachments, signatures and submission
    time; from `kept`, or else read in three round trips whatever the number of documents (and
    kept), and a fourth for the signatures' chains stored by reference that `chains` does not
    know yet (signature_chains.py)."""
    found: dict[uuid.UUID, PushedDocument] = {}
    for key in keys:
        if (document := kept.get(key)) is not None:
            found[key] = document
    keys = [key for key in keys if key not in found]
    if not keys:
        return found
    documents = await conn.fetch(
        """
        SELECT uuid, header::text AS header, submitted_at, verification::text AS verification,
            envelope::text AS envelope, trace::text AS trace
        FROM exchange.document WHERE uuid = ANY($1::uuid[])
        """,
        keys,
    )
    attachments = await _attachments_of(conn, keys)
    rows = await conn.fetch(
        """
        SELECT document_uuid, role, algorithm, value, certificate_chain, chain_sha256, signed_at
        FROM exchange.document_signature WHERE document_uuid = ANY($1::uuid[])
        ORDER BY document_uuid, position
        """,
        keys,
    )
    referred = await chains.certificates(
        conn, {s["chain_sha256"] for s in rows if s["chain_sha256"] is not None}
    )
    signatures: dict[uuid.UUID, list[Signature]] = {}
    for s in rows:
        # A row holds its chain inline (stored before 0043, or by a process of an earlier
        # version) or its chain's key, never both (0043's signature_chain_one_form).
        chain = (
            tuple(s["certificate_chain"])
            if s["chain_sha256"] is None
            else referred[s["chain_sha256"]]
        )
        signatures.setdefault(s["document_uuid"], []).append(
            Signature(s["role"], s["algorithm"], s["value"], chain, s["signed_at"])
        )
    for d in documents:
        found[d["uuid"]] = document = (
            header_from_json(d["header"]),
            tuple(attachments.get(d["uuid"], ())),
            tuple(signatures.get(d["uuid"], ())),
            d["submitted_at"],
            verification_from_json(d["verification"]),
            envelope_from_json(d["envelope"]),
            trace_from_json(d["trace"]),
        )
        kept.put(d["uuid"], document)
    return found


@dataclass(frozen=True, slots=True)
class _JsonColumns:
    """A document's JSON columns as insert_submissions writes them: encoded once, for the
    statement and for the document kept (_stored_document)."""

    header: str
    verification: str | None
    envelope: str | None

    @classmethod
    def of(cls, item: NewSubmission) -> _JsonColumns:
        verification = item.verification
        return cls(
            header_to_json(item.submission.header),
            None if verification is None else verification.to_json(),
            envelope_to_json(item.submission.envelope),
        )


def _stored_document(item: NewSubmission, columns: _JsonColumns) -> PushedDocument:
    """A submission as load_documents reads it back once stored: its JSON columns decoded as
    written (header and verification, the envelope without its description), no hops yet."""
    return (
        header_from_json(columns.header),
        item.submission.attachments,
        item.submission.signatures,
        item.receipt.accepted_at,
        verification_from_json(columns.verification),
        envelope_from_json(columns.envelope),
        (),
    )


# A blob (b) the agency $1 holds: its hold probed by blob_owner's primary key, (sha256, agency),
# in a LATERAL subquery whose LIMIT keeps it from being flattened: as a join, a generic plan
# read every blob the agency ever held (blob_owner_agency) and hashed them against the few
# asked for, on young statistics and current ones (docs/perf/README.md, "Young statistics" and
# "Young statistics, the rest").
_HELD_BY_1 = """
CROSS JOIN LATERAL (
    SELECT FROM exchange.blob_owner o WHERE o.sha256 = b.sha256 AND o.agency = $1 LIMIT 1
) AS held"""

# Submit's reads: the blobs the sender holds among the attachments (with the bytes of those in
# $4, when stored in one piece), and the earlier request with this consignment id, if any. The
# row comparison adds nothing to the equalities but can be an index condition of one_consignment
# only: on an empty table (a generic plan made at a new deployment's first Submit) the planner
# priced document_sender_submitted (sender, ...) the same and kept it, and the plan then read
# every document of the sender (docs/perf/README.md, "Postgres's CPU per document").
SUBMIT_LOOKUPS_SQL = f"""
SELECT b.sha256, b.size, c.data, NULL::uuid AS uuid, NULL::text AS document_id,
    NULL::text AS fingerprint, NULL::timestamptz AS submitted_at
FROM exchange.blob b{_HELD_BY_1}
LEFT JOIN exchange.blob_chunk c ON b.sha256 = ANY($4::text[])
    AND c.storage_id = b.storage_id AND c.start_offset = 0
    AND length(c.data) = b.size
WHERE b.sha256 = ANY($2::text[])
UNION ALL
SELECT NULL, NULL, NULL, uuid, document_id, fingerprint, submitted_at
FROM exchange.document WHERE sender = $1 AND consignment_id = $3
    AND (sender, consignment_id) <= ($1, $3)
"""  # noqa: S608 - constants only

# The blobs among $2 that $1 holds, for a refusal's recheck and a federated submission.
UNOWNED_ATTACHMENTS_SQL = f"""
SELECT b.sha256, b.size FROM exchange.blob b{_HELD_BY_1}
WHERE b.sha256 = ANY($2::text[])
"""  # noqa: S608 - constants only


Decisions = list[tuple[LockedCopy, delivery.Push | delivery.DeadLettered] | None]


async def _decide_pushes(
    conn: Conn,
    claims: Sequence[tuple[str, str]],
    max_pushes: int | None,
    times: Mapping[str, dt.datetime],
) -> tuple[Decisions, dict[uuid.UUID, delivery.Copy], list[LedgerEvent]]:
    """The claim's lock and its rules: what each claim decided (None: nothing to push), the
    copies changed and their ledger events, to write in one statement."""
    # BEGIN, the lock, one statement for every write, COMMIT: the rules decide between the lock
    # and the writes (domain/delivery.py), so these are as few as they get. A claim whose
    # message did not say when the relay published it (a pull-mode fetch) takes the time from
    # the copy's outbox row, read with the lock.
    locked = await lock_copies(
        conn,
        [uuid.UUID(d) for d, _ in claims],
        with_published=any(d not in times for d, _ in claims),
    )
    decided = _decided(claims, locked, max_pushes, times)
    # The push limit's dead letter names the copy's last failed hand-over as its cause, which
    # the lock does not read (postgres_copies.STORED_FAILURES_SQL): read for those copies (they
    # are locked), the claims are decided again with it.
    dead = [
        d[0].key for d in decided[0] if d is not None and isinstance(d[1], delivery.DeadLettered)
    ]
    if dead and (failures := await stored_failures(conn, dead)):
        decided = _decided(claims, with_failures(locked, failures), max_pushes, times)
    return decided


def _decided(
    claims: Sequence[tuple[str, str]],
    locked: Mapping[uuid.UUID, LockedCopy],
    max_pushes: int | None,
    times: Mapping[str, dt.datetime],
) -> tuple[Decisions, dict[uuid.UUID, delivery.Copy], list[LedgerEvent]]:
    """What the rules decide for each claim of the copies `locked`."""
    # A copy claimed twice in one batch (a republished message) is decided twice, the second
    # time against the first decision.
    current = {key: row.copy for key, row in locked.items()}
    decisions: Decisions = []
    events: list[LedgerEvent] = []
    for delivery_id, recipient in claims:
        row = locked.get(uuid.UUID(delivery_id))
        if row is None or row.ref.recipient != recipient:
            decisions.append(None)
            continue
        decided = delivery.push(
            row.ref,
            current[row.key],
            max_pushes=max_pushes,
            now=row.now,
            published_at=times.get(delivery_id) or row.published_at,
        )
        if decided is None:
            decisions.append(None)
            continue
        current[row.key] = decided.copy
        events.extend(decided.events)
        decisions.append((row, decided))
    changed = {row.key: current[row.key] for d in decisions if d for row in (d[0],)}
    return decisions, changed, events


async def _abandon(work: asyncio.Future[Any]) -> None:
    """Cancels `work` and waits for it to end, whatever it raises."""
    work.cancel()
    with contextlib.suppress(BaseException):
        await work


class PostgresDocumentStore(PostgresUploads):
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        kept: StoredDocuments | None = None,
        signature_chains: SignatureChains | None = None,
    ) -> None:
        """`kept`: the documents recently stored or read, shared with the lifecycle store;
        `signature_chains`: whether signatures' chains are stored by reference yet, and those
        known stored."""
        self._pool = pool
        self._kept = kept if kept is not None else StoredDocuments()
        self._chains = ReceiptChains()
        self._signature_chains = signature_chains or SignatureChains()

    async def find_by_consignment(
        self, sender: str, consignment_id: str
    ) -> StoredSubmission | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                """
                SELECT uuid, document_id, fingerprint, submitted_at FROM exchange.document
                WHERE sender = $1 AND consignment_id = $2
                """,
                sender,
                consignment_id,
            )
            if row is None:
                return None
            return await _stored_submission(conn, consignment_id, row)

    async def submit_lookups(
        self,
        sender: str,
        files: Sequence[AttachmentRef],
        consignment_id: str,
        contents: Collection[str],
    ) -> SubmitLookups:
        async with self._pool.acquire() as conn:
            # The blobs the sender holds (with the bytes of those asked for, when stored in one
            # piece: a Submit's PDFs and envelope, for the signature checks), then the earlier
            # request with this consignment id, if any: one round trip where there were three.
            rows = await conn.fetch(
                SUBMIT_LOOKUPS_SQL,
                sender,
                [f.sha256 for f in files],
                consignment_id,
                list(contents),
            )
            blobs = [row for row in rows if row["sha256"] is not None]
            document = next((row for row in rows if row["uuid"] is not None), None)
            earlier = (
                None
                if document is None
                else await _stored_submission(conn, consignment_id, document)
            )
        sizes = {row["sha256"]: row["size"] for row in blobs}
        return SubmitLookups(
            unowned=[i for i, f in enumerate(files) if sizes.get(f.sha256) != f.size],
            contents={row["sha256"]: row["data"] for row in blobs if row["data"] is not None},
            earlier=earlier,
        )

    async def unowned_attachments(
        self, owner: str, attachments: Sequence[AttachmentRef]
    ) -> list[int]:
        if not attachments:
            return []
        rows = await self._pool.fetch(
            UNOWNED_ATTACHMENTS_SQL,
            owner,
            [a.sha256 for a in attachments],
        )
        sizes = {row["sha256"]: row["size"] for row in rows}
        return [i for i, a in enumerate(attachments) if sizes.get(a.sha256) != a.size]

    async def store_submissions(self, batch: Sequence[NewSubmission]) -> list[StoreRefusal | None]:
        # insert_submissions is one statement, atomic on its own: no BEGIN and COMMIT around it
        # (two round trips of every Submit group, each a wait for the event loop).
        if len(batch) > 1:
            try:
                async with self._pool.acquire() as conn:
                    stored, written = await insert_submissions(conn, batch, self._signature_chains)
            except (
                DuplicateDocumentError,
                DuplicateConsignmentError,
                AttachmentsGoneError,
                DirectoryChangedError,
            ):
                pass  # one of them took the transaction down with it: each on its own
            else:
                self._signature_chains.stored(written)
                for item, document in zip(batch, stored, strict=True):
                    self._keep(item, document)
                return [None] * len(batch)
        return [await self._store_one(item) for item in batch]

    def _keep(self, item: NewSubmission, document: PushedDocument) -> None:
        """A committed document, for its pushes and receipts (StoredDocuments)."""
        self._kept.put(uuid.UUID(item.receipt.document_uuid), document)

    async def _store_one(self, item: NewSubmission) -> StoreRefusal | None:
        try:
            async with self._pool.acquire() as conn:
                (document,), written = await insert_submissions(
                    conn, [item], self._signature_chains
                )
        except DuplicateDocumentError:
            # Looked up after the rollback: the failed transaction can run nothing more.
            value = await self._pool.fetchval(
                "SELECT uuid FROM exchange.document WHERE document_id = $1 AND business_type = 0",
                item.receipt.document_id,
            )
            return DuplicateDocumentError(str(value) if value is not None else "")
        except (DuplicateConsignmentError, AttachmentsGoneError, DirectoryChangedError) as exc:
            return exc
        self._signature_chains.stored(written)
        self._keep(item, document)
        return None

    async def _load_document(
        self, conn: Conn, document_uuid: uuid.UUID
    ) -> tuple[Header, tuple[AttachmentRef, ...], dt.datetime] | None:
        """Header, attachments and submission time (signatures: _signatures)."""
        row = await conn.fetchrow(
            "SELECT header::text AS header, submitted_at FROM exchange.document WHERE uuid = $1",
            document_uuid,
        )
        if row is None:
            return None
        attachments = await _attachments(conn, document_uuid)
        return header_from_json(row["header"]), attachments, row["submitted_at"]

    async def begin_pushes(
        self,
        claims: Sequence[tuple[str, str]],
        max_pushes: int | None = None,
        *,
        published: Mapping[str, dt.datetime] | None = None,
    ) -> list[PushItem | DeadLetter | None]:
        times = published or {}
        # The documents' reads, beside the transaction (_documents_beside): abandoned with it.
        loading: asyncio.Future[dict[uuid.UUID, PushedDocument]] | None = None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                decisions, changed, events = await _decide_pushes(conn, claims, max_pushes, times)
                # A dead letter is rejected into the dead-letter queue once committed, and that
                # message is gone from the inbox: a dead letter lost in a crash would leave its
                # copy waiting with no message to push it again. Such a claim commits
                # synchronously.
                dead = any(d and isinstance(d[1], delivery.DeadLettered) for d in decisions)
                # Content only for what is pushed.
                pushed = [d[0] for d in decisions if d and isinstance(d[1], delivery.Push)]
                loading = self._documents_beside(list({row.document_key for row in pushed}))
                await write_decided(conn, changed, events, synchronous=dead)
        except BaseException:
            if loading is not None:
                await _abandon(loading)
            raise
        documents = await loading
        items: list[PushItem | DeadLetter | None] = []
        for decision in decisions:
            if decision is None:
                items.append(None)
                continue
            row, decided = decision
            if isinstance(decided, delivery.DeadLettered):
                items.append(
                    DeadLetter(
                        row.ref.delivery_id,
                        decided.copy.dead_letter_reason,
                        row.now,
                        decided.copy.push_count,
                    )
                )
                continue
            header, attachments, signatures, submitted_at, verification, envelope, trace = (
                documents[row.document_key]
            )
            items.append(
                PushItem(
                    delivery_id=row.ref.delivery_id,
                    document_uuid=row.ref.document_uuid,
                    requested_recipient=row.requested_recipient,
                    header=header,
                    attachments=attachments,
                    signatures=signatures,
                    submitted_at=submitted_at,
                    verification=verification,
                    envelope=envelope,
                    first_handover=decided.first_handover,
                    trace=trace,
                )
            )
        return items

    def _documents_beside(
        self, keys: Sequence[uuid.UUID]
    ) -> asyncio.Future[dict[uuid.UUID, PushedDocument]]:
        """The documents of `keys`, as load_documents gives them: from `kept` at once, else read
        on a connection of their own while the claim's transaction writes and commits. A copy
        pushed by a worker that did not take its Submit (DOCAXIS_WORKERS) misses this process's
        StoredDocuments, and its three reads inside the claim's transaction held the copies'
        locks and the push a median 2 ms (p99 18 ms) longer than on the Submit's worker. A
        stored document never changes and is never deleted, and the claimed copies refer to
        it: any snapshot reads the same. At most two claims run at once (GroupCommit), each
        with a second connection of the pool for as long as its reads."""
        kept = {key: found for key in keys if (found := self._kept.get(key)) is not None}
        if len(kept) < len(keys):
            return asyncio.ensure_future(self._read_documents(keys))
        done: asyncio.Future[dict[uuid.UUID, PushedDocument]] = (
            asyncio.get_running_loop().create_future()
        )
        done.set_result(kept)
        return done

    async def _read_documents(self, keys: Sequence[uuid.UUID]) -> dict[uuid.UUID, PushedDocument]:
        async with self._pool.acquire() as conn:
            return await load_documents(conn, keys, self._kept, self._signature_chains)

    async def acknowledge(
        self, delivery_id: str, recipient: str, now: dt.datetime
    ) -> Acknowledgement | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = (await lock_copies(conn, [uuid.UUID(delivery_id)])).get(uuid.UUID(delivery_id))
            if row is None or row.ref.recipient != recipient:
                return None
            decided = delivery.acknowledge(row.ref, row.copy, now)
            if decided.already:
                return Acknowledgement(decided.acknowledged_at, already_acknowledged=True)
            await save_copies(conn, {row.key: decided.copy})
            await stage_ledger_events(conn, decided.events)
        return Acknowledgement(now, already_acknowledged=False)

    async def track(
        self, *, document_uuid: str | None, document_id: str | None
    ) -> DocumentTrack | None:
        async with self._pool.acquire() as conn:
            if document_uuid is not None:
                key: uuid.UUID | None = uuid.UUID(document_uuid)
            else:
                key = await conn.fetchval(
                    """
                    SELECT uuid FROM exchange.document WHERE document_id = $1
                    ORDER BY submitted_at DESC LIMIT 1
                    """,
                    document_id,
                )
            if key is None:
                return None
            loaded = await self._load_document(conn, key)
            if loaded is None:
                return None
            header, attachments, submitted_at = loaded
            signed = await conn.fetchrow(
                "SELECT verification::text AS verification, envelope::text AS envelope "
                "FROM exchange.document WHERE uuid = $1",
                key,
            )
            rows = await conn.fetch(
                """
                SELECT id, requested_recipient, recipient, state, accepted_at, queued_at,
                       pushed_at, acknowledged_at, push_count, dead_lettered_at,
                       dead_letter_reason
                FROM exchange.delivery WHERE document_uuid = $1 ORDER BY position
                """,
                key,
            )
        return DocumentTrack(
            document_uuid=str(key),
            header=header,
            attachments=attachments,
            submitted_at=submitted_at,
            recipients=tuple(
                RecipientTrack(
                    requested_recipient=r["requested_recipient"],
                    effective_recipient=r["recipient"],
                    delivery_id=str(r["id"]),
                    state=DeliveryState(r["state"]),
                    accepted_at=r["accepted_at"],
                    queued_at=r["queued_at"],
                    pushed_at=r["pushed_at"],
                    acknowledged_at=r["acknowledged_at"],
                    push_count=r["push_count"],
                    dead_lettered_at=r["dead_lettered_at"],
                    dead_letter_reason=r["dead_letter_reason"] or "",
                )
                for r in rows
            ),
            verification=None if signed is None else verification_from_json(signed["verification"]),
            envelope=None if signed is None else envelope_from_json(signed["envelope"]),
        )

    async def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                """
                SELECT d.document_uuid, d.recipient, d.state, d.acknowledged_at,
                    d.transport_receipt, doc.sender, doc.header::text AS header
                FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
                WHERE d.id = $1
                """,
                uuid.UUID(delivery_id),
            )
            if row is None:
                return None
            attachments = await _attachments(conn, row["document_uuid"])
            receipt = row["transport_receipt"]
            if receipt is not None:
                receipt = await self._chains.served(conn, receipt)
        return DeliveryRecord(
            delivery_id=delivery_id,
            document_uuid=str(row["document_uuid"]),
            sender=row["sender"],
            recipient=row["recipient"],
            header=header_from_json(row["header"]),
            attachments=attachments,
            acknowledged_at=row["acknowledged_at"],
            transport_receipt=receipt,
            state=DeliveryState(row["state"]),
        )

    async def save_transport_receipt(self, delivery_id: str, receipt: TransportReceipt) -> bytes:
        chain, encoded = stored_receipt(receipt)
        unstored = self._chains.unstored([chain])
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await self._chains.store(conn, unstored)
                stored: bytes | None = await conn.fetchval(
                    """
                    UPDATE exchange.delivery
                    SET transport_receipt = coalesce(transport_receipt, $2)
                    WHERE id = $1 AND acknowledged_at IS NOT NULL
                    RETURNING transport_receipt
                    """,
                    uuid.UUID(delivery_id),
                    encoded,
                )
            self._chains.stored(unstored)
            if stored is None:
                raise ValueError(f"delivery {delivery_id} is not acknowledged")
            # The first receipt stored stands: this one, or another (of either form).
            return await self._chains.served(conn, stored)

    async def store_blob(
        self, owner: str, sha256: str, chunks: AsyncIterator[bytes], quota: int | None = None
    ) -> None:
        storage_id = uuid.uuid4()
        async with self._pool.acquire() as conn:
            exists = await conn.fetchval("SELECT size FROM exchange.blob WHERE sha256 = $1", sha256)
            async with conn.transaction():
                offset = 0
                async for chunk in chunks:
                    if not chunk:
                        continue  # an empty chunk would collide with the next one's offset
                    # Bytes already stored under this hash are still read and verified (proof that
                    # the uploader holds the content) but not written twice.
                    if exists is None:
                        await conn.execute(
                            "INSERT INTO exchange.blob_chunk (storage_id, start_offset, data) "
                            "VALUES ($1, $2, $3)",
                            storage_id,
                            offset,
                            chunk,
                        )
                    offset += len(chunk)
                held = await conn.fetchval(
                    "SELECT true FROM exchange.blob_owner WHERE sha256 = $1 AND agency = $2",
                    sha256,
                    owner,
                )
                if not held:  # new bytes for this agency: within its quota
                    await check_quota(conn, owner, sha256, offset, quota)
                # A concurrent upload of the same content may have won: publish_blob keeps one.
                await publish_blob(conn, sha256, offset, storage_id, owner)

    async def blob_content(self, sha256: str, max_bytes: int) -> bytes:
        data = bytearray()
        async for _offset, piece in self.attachment_chunks("", sha256, 0):
            data += piece
            if len(data) > max_bytes:
                raise ValueError(f"blob {sha256} is larger than {max_bytes} bytes")
        return bytes(data)

    async def attachment_chunks(
        self, document_uuid: str, sha256: str, offset: int
    ) -> AsyncIterator[tuple[int, bytes]]:
        del document_uuid  # authorised by the caller; content is addressed by hash
        async with self._pool.acquire() as conn:
            # The blob and its first chunk in one round trip, and no query past its size: a
            # Submit reads each attachment it verifies (most fit in one chunk) in one statement.
            first = await conn.fetchrow(
                """
                SELECT b.storage_id, b.size, c.start_offset, c.data FROM exchange.blob b
                LEFT JOIN LATERAL (
                    SELECT start_offset, data FROM exchange.blob_chunk
                    WHERE storage_id = b.storage_id AND start_offset + length(data) > $2
                    ORDER BY start_offset LIMIT 1
                ) c ON true
                WHERE b.sha256 = $1
                """,
                sha256,
                offset,
            )
            if first is None:
                return
            storage_id: uuid.UUID = first["storage_id"]
            size: int = first["size"]
            row: asyncpg.Record | None = first
            position = offset
            while row is not None and row["data"] is not None:
                start: int = row["start_offset"]
                data: bytes = row["data"]
                piece = data[position - start :] if position > start else data
                yield position, piece
                position = start + len(data)
                if position >= size:
                    return
                # One chunk per query keeps memory flat whatever the file size.
                row = await conn.fetchrow(
                    """
                    SELECT start_offset, data FROM exchange.blob_chunk
                    WHERE storage_id = $1 AND start_offset + length(data) > $2
                    ORDER BY start_offset LIMIT 1
                    """,
                    storage_id,
                    position,
                )


# Commits the transaction that runs it without waiting for its WAL to be flushed (SET LOCAL
# synchronous_commit = off, set by the statement that writes, saving a round trip). Only the
# outbox relay's transactions and the push claims' take it, because neither answers a caller:
# a crash can lose only what they recorded of copies not yet acknowledged (published, queued,
# pushed, with their staged ledger events), and those copies are then published or pushed
# again (at least once, as consumers expect; a push before the acknowledgement may repeat).
# Every later synchronous commit (Submit's, an acknowledgement's, the ledger sequencer's,
# which takes the staged events into the log before any checkpoint shows them) flushes the WAL
# up to and past them, and a synchronous standby is sent it in that order, so an acknowledged
# copy's facts and every ledger entry a checkpoint covers are durable (docs/perf/README.md,
# "The claim no longer waits for the relay").
ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


async def write_decided(
    conn: Conn,
    copies: Mapping[uuid.UUID, delivery.Copy],
    events: Sequence[LedgerEvent],
    *,
    synchronous: bool = True,
    outbox_done: Sequence[int] = (),
) -> None:
    """Stores the copies as decided, stages their ledger events (in order) and deletes the
    outbox rows `outbox_done`, as ONE statement (data-modifying WITH clauses) where each took a
    round trip; `synchronous=False`: the transaction commits with ASYNC_COMMIT."""
    p = Parameters()
    parts: list[str] = []
    if outbox_done:
        done = p(list(outbox_done), "bigint[]")
        parts.append(f"done AS (DELETE FROM exchange.outbox WHERE id = ANY({done}))")  # noqa: S608 - a placeholder
    if copies:
        parts.append(f"saved AS ({save_sql(p, copies, None)})")
    if events:
        parts.append(f"events AS ({ledger_events_sql(p, events)})")
    if not parts:
        return  # nothing written: nothing to commit either way
    setting = "NULL" if synchronous else ASYNC_COMMIT
    await conn.execute(f"WITH {', '.join(parts)} SELECT {setting}", *p.values)


# How long after its publish the relay marks queued a copy no claim has recorded as queued (a
# recipient not connected, a copy withdrawn meanwhile): the claims of the copies just published
# record it themselves, and the relay, taking their rows sooner, would lock copies their claims
# are about to lock.
SETTLE_AFTER_S = 1.0


# The relay's batch: rows not published yet, in id order, that no other relay holds, but those
# of agencies whose messages the publisher holds ($2: their routing keys).
PUBLISH_SQL = """
SELECT id, routing_key, message_id, message_type, payload, delivery_id, traceparent, now() AS now
FROM exchange.outbox WHERE published_at IS NULL AND routing_key <> ALL($2::text[])
ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
# Rows published: the notices' deleted, the copies' marked published at $2.
MARK_PUBLISHED_SQL = f"""
WITH notices AS (
    DELETE FROM exchange.outbox WHERE id = ANY($1::bigint[]) AND delivery_id IS NULL
),
copies AS (
    UPDATE exchange.outbox SET published_at = $2 WHERE id = ANY($1::bigint[])
        AND delivery_id IS NOT NULL
)
SELECT {ASYNC_COMMIT}
"""  # noqa: S608 - a constant
Publish = Callable[[Sequence[OutboundMessage]], Awaitable[Sequence[Held] | None]]


@dataclass(frozen=True, slots=True)
class _HeldRows:
    """Rows whose messages the publisher holds (`held`), by message, and their batch's time."""

    held: Held
    rows: dict[int, int]  # id() of each held message: its row's id
    published_at: dt.datetime


# The relay's pass: published rows past the grace that no other pass holds.
SETTLE_SQL = """
SELECT o.id, o.delivery_id, o.published_at,
    (d.id IS NOT NULL AND d.queued_at IS NULL) AS unmarked
FROM exchange.outbox o LEFT JOIN exchange.delivery d ON d.id = o.delivery_id
WHERE o.published_at <= now() - make_interval(secs => $2)
ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED
"""
# The final pass: every published row, waiting for those another pass holds (in id order, as
# every pass locks them: two final passes of two workers cannot deadlock).
_FINAL_SETTLE_SQL = SETTLE_SQL.replace("SKIP LOCKED", "")
# How long the final pass waits for one lock: a claim or an acknowledgement commits in
# milliseconds; a longer hold (a stuck transaction) leaves its rows to the next start, within
# the shutdown's grace.
FINISH_LOCK_TIMEOUT_S = 2.0


class PostgresOutbox:
    """Claims outbox rows, hands them to a publisher, and deletes them only once it returns."""

    def __init__(self, pool: asyncpg.Pool, *, settle_after_s: float = SETTLE_AFTER_S) -> None:
        self._pool = pool
        self._settle_after_s = settle_after_s
        # When the next pass over published rows is due (monotonic; at once at start: an
        # earlier process may have left some).
        self._settle_at = 0.0
        self._held: list[_HeldRows] = []

    async def relay_batch(self, limit: int, publish: Publish) -> int:
        """Publishes up to `limit` rows, then, at most once per `settle_after_s`, marks queued
        the copies published at least that long ago that no claim has; returns how many rows
        it published or finished. A crash after publishing and before commit publishes them
        again: consumers treat messages as at-least-once.

        The relay does not touch the copies it has just published: the broker hands a message
        to its stream before the relay has its confirm, and the stream's claim records the
        copy queued (at the relay's time, which the message carries) and pushed; when the relay
        locked the copies after the confirm to mark them, 85 % of the claims waited for its
        commit (median 9 ms at low load).

        Messages the publisher holds (their channel stalled: Held) are marked published once
        confirmed, or go again; until then their agencies' rows wait, in order, while the
        others' go on (docs/perf/README.md, "A hung RabbitMQ node")."""
        published = await self._release_held()
        published += await self._publish(limit, publish)
        settled = 0
        if time.monotonic() >= self._settle_at:
            _, settled = await self._settle(limit)
            # A full pass leaves more behind: the next one at once.
            self._settle_at = 0.0 if settled >= limit else time.monotonic() + self._settle_after_s
        return published + settled

    async def _publish(self, limit: int, publish: Publish) -> int:
        """One batch published: the notices' rows deleted, the copies' marked published, but
        those whose messages the publisher holds; a share that failed beside a held one is
        raised once the rest is committed."""
        held_keys = sorted({m.routing_key for h in self._held for m in h.held.messages})
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(PUBLISH_SQL, limit, held_keys)
            if not rows:
                return 0
            messages = [
                OutboundMessage(
                    r["routing_key"],
                    r["message_id"],
                    r["message_type"],
                    r["payload"],
                    r["traceparent"],
                    r["now"] if r["delivery_id"] is not None else None,
                )
                for r in rows
            ]
            held = await publish(messages) or ()
            row_of = {id(m): r["id"] for m, r in zip(messages, rows, strict=True)}
            failure: BaseException | None = None
            for h in held:
                if h.confirmed.done() and not h.confirmed.cancelled() and h.confirmed.exception():
                    failure = failure or h.confirmed.exception()  # its rows simply go again
                elif h.messages:
                    # Kept before the commit: should it fail, they are still held, not repeated.
                    rows_held = {id(m): row_of[id(m)] for m in h.messages}
                    self._held.append(_HeldRows(h, rows_held, rows[0]["now"]))
            waiting = {id(m) for h in held for m in h.messages}
            done = [row_of[id(m)] for m in messages if id(m) not in waiting]
            if done:
                await conn.execute(MARK_PUBLISHED_SQL, done, rows[0]["now"])
        if failure is not None:
            raise failure
        return len(rows)  # held ones too: a full batch means more rows may wait

    async def _release_held(self) -> int:
        """Marks published the held messages confirmed since (their rows' agencies go on);
        those not confirmed go again with the next batch. How many rows it marked."""
        marked = 0
        for h in [h for h in self._held if h.held.confirmed.done()]:
            future = h.held.confirmed
            if not future.cancelled() and future.exception() is None:
                confirmed = [h.rows[id(m)] for m in future.result()]
                if confirmed:
                    async with self._pool.acquire() as conn, conn.transaction():
                        await conn.execute(MARK_PUBLISHED_SQL, confirmed, h.published_at)
                    marked += len(confirmed)
            self._held.remove(h)  # once marked: a failure above leaves it for the next batch
        return marked

    async def finish(self, limit: int, *, lock_timeout_s: float = FINISH_LOCK_TIMEOUT_S) -> int:
        """The final pass of a clean stop, once no claim of this process can start any more:
        every copy published and not yet recorded queued, however recently, is marked queued at
        the time of its publish, with its `queued` ledger event, and committed synchronously
        (the relay's other transactions are not: this one records what no later transaction
        of this process will flush). Without the grace: the claims it would race have ended.
        It waits for the rows and copies other transactions hold (another worker's claim or
        acknowledgement still committing, another relay's pass) up to `lock_timeout_s` each
        time (LockNotAvailableError past it: the rows stay for the next relay to start).
        Returns how many rows it finished."""
        finished = 0
        while True:
            selected, done = await self._settle(limit, final=True, lock_timeout_s=lock_timeout_s)
            finished += done
            # Until a pass finds none (a row deleted while it waited shortens a pass, rows are
            # still left); a row it could not finish (its copy gone meanwhile) ends it too.
            if selected == 0 or done < selected:
                return finished

    async def _settle(
        self, limit: int, *, final: bool = False, lock_timeout_s: float = 0.0
    ) -> tuple[int, int]:
        """Rows published `settle_after_s` ago or more (`final`: all of them, waiting for their
        locks): those whose copy is queued (its claim recorded it) or gone are deleted without
        locking the copy; the others' copies are marked queued at the time of their publish if
        no other transaction holds them (`final`: once it no longer does). How many rows it
        took, and how many of them it finished."""
        async with self._pool.acquire() as conn, conn.transaction():
            if final:
                await conn.execute(
                    "SELECT set_config('lock_timeout', $1, true)", f"{int(lock_timeout_s * 1000)}ms"
                )
            waiting = await conn.fetch(
                _FINAL_SETTLE_SQL if final else SETTLE_SQL,
                limit,
                0.0 if final else self._settle_after_s,
            )
            if not waiting:
                return 0, 0
            # queued_at, once set, is never cleared: read without the copy's lock, it holds.
            finished = [r["id"] for r in waiting if not r["unmarked"]]
            marked = await _mark_queued(
                conn,
                [(r["id"], r["delivery_id"], r["published_at"]) for r in waiting if r["unmarked"]],
                finished,
                final=final,
            )
        return len(waiting), len(finished) + marked


async def _mark_queued(
    conn: Conn,
    published: Sequence[tuple[int, uuid.UUID, dt.datetime]],
    finished: Sequence[int],
    *,
    final: bool = False,
) -> int:
    """Marks queued the copies of `published` (outbox id, delivery id, time of publish) that no
    other transaction holds (`final`: waiting for them), and deletes their rows and the
    `finished` ones, in one statement committed with ASYNC_COMMIT (`final`: synchronously);
    how many of `published` it marked."""
    locked = await lock_copies(conn, [key for _, key, _ in published], skip_locked=not final)
    changed: dict[uuid.UUID, delivery.Copy] = {}
    events: list[LedgerEvent] = []
    done = list(finished)
    for row_id, key, at in published:
        row = locked.get(key)
        if row is None:
            continue  # held by another transaction (or gone meanwhile): a later pass
        done.append(row_id)
        # A copy queued twice here (published again: an administrator's resend) is decided
        # against the first decision.
        decided = delivery.queued(row.ref, changed.get(row.key, row.copy), at)
        if decided is not None:
            changed[row.key] = decided.copy
            events.extend(decided.events)
    await write_decided(conn, changed, events, synchronous=final, outbox_done=done)
    return len(done) - len(finished)


async def _stored_submission(
    conn: Conn, consignment_id: str, document: asyncpg.Record
) -> StoredSubmission:
    """An earlier request's receipt (its document row and its copies)."""
    routes = await conn.fetch(
        """
        SELECT requested_recipient, recipient, id FROM exchange.delivery
        WHERE document_uuid = $1 ORDER BY position
        """,
        document["uuid"],
    )
    receipt = Receipt(
        document_uuid=str(document["uuid"]),
        document_id=document["document_id"],
        consignment_id=consignment_id,
        accepted_at=document["submitted_at"],
        routes=tuple(Route(r["requested_recipient"], r["recipient"], str(r["id"])) for r in routes),
    )
    return StoredSubmission(receipt, document["fingerprint"])


async def insert_submissions(
    conn: Conn, batch: Sequence[NewSubmission], chains: SignatureChains
) -> tuple[list[PushedDocument], list[SignatureChain]]:
    """Documents, their attachments, signatures and copies, their outbox rows (NOTIFYing the
    relay at commit) and ledger events, in the caller's transaction if any (the statement is
    atomic on its own), as ONE statement for the whole batch: one round trip where a statement
    per table took six, one after the other, each waiting for the event loop on a busy process
    (data-modifying WITH clauses run to completion whatever the main query reads; the foreign
    keys between them are checked at the statement's end, so a document's rows may reference
    it in the same statement).

    Raises DuplicateConsignmentError, DuplicateDocumentError (naming no document: the caller
    looks it up after the rollback) or AttachmentsGoneError for the first document refused, or
    DirectoryChangedError when a document's directory reads are no longer current, having
    written none of the batch's rows: every clause is gated on the same generation check, so
    that the statement needs no transaction around it to leave nothing of a refused batch.

    The signatures' chains are stored by reference once `chains` says so (signature_chains.py),
    those not known stored written by the same statement (ON CONFLICT DO NOTHING: another
    statement writing the same chain meanwhile waits for it, then writes nothing).

    Returns each document as load_documents would read it back, decoded from the JSON the
    statement wrote (a caller may keep them: StoredDocuments), and the chains the statement
    wrote, for `chains.stored` once it commits (at once, outside a transaction)."""
    p = Parameters()
    columns = [_JsonColumns.of(item) for item in batch]
    referred = (
        [SignatureChain.of(s.certificate_chain) for i in batch for s in i.submission.signatures]
        if await chains.referring(conn)
        else None
    )
    written = [] if referred is None else chains.unstored(referred)
    unchanged = _unchanged_sql(p, batch)
    documents = _documents_sql(p, batch, columns, unchanged)
    attachments = _attachments_sql(p, batch, unchanged)
    signatures, signature_chains = _signatures_sql(p, batch, referred, written, unchanged)
    copies = _copies_sql(p, batch, unchanged)
    messages = _messages_sql(p, batch)
    events = ledger_events_sql(p, [event for item in batch for event in item.events], unchanged)
    try:
        inserted = await conn.fetchval(
            f"""
            WITH documents AS ({documents}),
            attachments AS ({attachments}),
            signatures AS ({signatures}),
            signature_chains AS ({signature_chains}),
            copies AS ({copies} RETURNING id, recipient, via_hub),
            messages AS ({messages}),
            events AS ({events})
            SELECT (SELECT count(*) FROM copies), pg_notify('{OUTBOX_CHANNEL}', '')
            """,  # noqa: S608 - placeholders and constants only
            *p.values,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "one_consignment":
            raise DuplicateConsignmentError from exc
        if exc.table_name == "document":
            raise DuplicateDocumentError("") from exc  # the caller names the first document
        raise
    except asyncpg.ForeignKeyViolationError as exc:
        if exc.table_name == "document_attachment":
            raise AttachmentsGoneError from exc
        raise
    if inserted == 0 and any(item.directory_generations for item in batch):
        raise DirectoryChangedError
    return [_stored_document(item, c) for item, c in zip(batch, columns, strict=True)], written


def _unchanged_sql(p: Parameters, batch: Sequence[NewSubmission]) -> str:
    """With kept directory reads, the WHERE clause that keeps every row of the batch unless the
    directory generation they were stamped with is still the current one in this statement's
    snapshot (the caller then refuses the batch: services/exchange/service_layer/
    directory_cache.py says why that is enough); none without. The check reads the directory's
    table: kept reads exist only when the directory shares this database. An uncorrelated
    subquery: evaluated once per clause (a one-time filter), not per row, and the same in every
    clause (one snapshot)."""
    generations = sorted({g for item in batch for g in item.directory_generations})
    if not generations:
        return ""
    return f"WHERE (SELECT n FROM directory.generation) = ALL({p(generations, 'bigint[]')})"  # noqa: S608 - placeholders and constants only


def _documents_sql(
    p: Parameters, batch: Sequence[NewSubmission], columns: Sequence[_JsonColumns], unchanged: str
) -> str:
    return f"""
        INSERT INTO exchange.document (uuid, document_id, sender, consignment_id,
            fingerprint, business_type, header, submitted_at, traceparent,
            verification, envelope)
        SELECT u.uuid, u.document_id, u.sender, u.consignment_id, u.fingerprint,
            u.business_type, u.header::jsonb, u.submitted_at, u.traceparent,
            u.verification::jsonb, u.envelope::jsonb
        FROM unnest({p([uuid.UUID(i.receipt.document_uuid) for i in batch], "uuid[]")},
            {p([i.receipt.document_id for i in batch], "text[]")},
            {p([i.submission.header.sender for i in batch], "text[]")},
            {p([i.submission.consignment_id for i in batch], "text[]")},
            {p([i.fingerprint for i in batch], "text[]")},
            {p([int(i.submission.header.business_type) for i in batch], "smallint[]")},
            {p([c.header for c in columns], "text[]")},
            {p([i.receipt.accepted_at for i in batch], "timestamptz[]")},
            {p([i.traceparent for i in batch], "text[]")},
            {p([c.verification for c in columns], "text[]")},
            {p([c.envelope for c in columns], "text[]")})
            AS u(uuid, document_id, sender, consignment_id, fingerprint, business_type, header,
                submitted_at, traceparent, verification, envelope)
        {unchanged}"""  # noqa: S608 - placeholders and constants only


def _attachments_sql(p: Parameters, batch: Sequence[NewSubmission], unchanged: str) -> str:
    rows = [
        (uuid.UUID(item.receipt.document_uuid), i, a)
        for item in batch
        for i, a in enumerate(item.submission.attachments)
    ]
    return f"""
        INSERT INTO exchange.document_attachment
            (document_uuid, position, name, media_type, size, sha256, description)
        SELECT * FROM unnest({p([d for d, _, _ in rows], "uuid[]")},
            {p([i for _, i, _ in rows], "smallint[]")},
            {p([a.name for _, _, a in rows], "text[]")},
            {p([a.media_type for _, _, a in rows], "text[]")},
            {p([a.size for _, _, a in rows], "bigint[]")},
            {p([a.sha256 for _, _, a in rows], "text[]")},
            {p([a.description for _, _, a in rows], "text[]")})
        {unchanged}"""  # noqa: S608 - placeholders and constants only


def _signatures_sql(
    p: Parameters,
    batch: Sequence[NewSubmission],
    referred: Sequence[SignatureChain] | None,
    written: Sequence[SignatureChain],
    unchanged: str,
) -> tuple[str, str]:
    """The signatures' rows, each with its chain inline or, with `referred` (each signature's
    chain, in the batch's order), its chain's key; and the chain rows of `written`. One text
    either way (the statement's plan is cached by its text)."""
    rows = [
        (uuid.UUID(item.receipt.document_uuid), i, s)
        for item in batch
        for i, s in enumerate(item.submission.signatures)
    ]
    # Each chain's certificates are a slice of one flat array: an array of arrays of different
    # lengths has no Postgres type, and unnest would flatten one.
    certificates: list[bytes] = []

    def sliced(chain: Sequence[bytes]) -> tuple[int, int]:
        certificates.extend(chain)
        return len(certificates) - len(chain) + 1, len(certificates)

    inline = [sliced(s.certificate_chain) if referred is None else (1, 0) for _, _, s in rows]
    keys = [None] * len(rows) if referred is None else [c.sha256 for c in referred]
    stored = [sliced(c.certificates) for c in written]
    flat = p(certificates, "bytea[]")
    signatures = f"""
        INSERT INTO exchange.document_signature (document_uuid, position, role, algorithm,
            value, certificate_chain, chain_sha256, signed_at)
        SELECT u.document_uuid, u.position, u.role, u.algorithm, u.value,
            CASE WHEN u.chain_sha256 IS NULL
                THEN coalesce(({flat})[u.first:u.last], '{{}}') END,
            u.chain_sha256, u.signed_at
        FROM unnest({p([d for d, _, _ in rows], "uuid[]")},
            {p([i for _, i, _ in rows], "smallint[]")},
            {p([s.role for _, _, s in rows], "text[]")},
            {p([s.algorithm for _, _, s in rows], "text[]")},
            {p([s.value for _, _, s in rows], "bytea[]")},
            {p([first for first, _ in inline], "int[]")},
            {p([last for _, last in inline], "int[]")},
            {p(keys, "bytea[]")},
            {p([s.signed_at for _, _, s in rows], "timestamptz[]")})
            AS u(document_uuid, position, role, algorithm, value, first, last, chain_sha256,
                signed_at)
        {unchanged}"""  # noqa: S608 - placeholders and constants only
    chains = f"""
        INSERT INTO exchange.signature_chain (sha256, certificates)
        SELECT c.sha256, coalesce(({flat})[c.first:c.last], '{{}}')
        FROM unnest({p([c.sha256 for c in written], "bytea[]")},
            {p([first for first, _ in stored], "int[]")},
            {p([last for _, last in stored], "int[]")}) AS c(sha256, first, last)
        {unchanged}
        ON CONFLICT (sha256) DO NOTHING"""  # noqa: S608 - placeholders and constants only
    return signatures, chains


def _copies_sql(p: Parameters, batch: Sequence[NewSubmission], unchanged: str) -> str:
    """The copies, none unless `unchanged` (_unchanged_sql): their count tells the caller."""
    # Each copy keeps its document's due date (the overdue report reads the open copies by it).
    routes = [
        (item.receipt, i, r, item.submission.header.due_date)
        for item in batch
        for i, r in enumerate(item.receipt.routes)
    ]
    return f"""
        INSERT INTO exchange.delivery (id, document_uuid, position, requested_recipient,
            recipient, state, accepted_at, via_hub, due_date)
        SELECT u.id, u.document_uuid, u.position, u.requested_recipient, u.recipient,
            {p(DeliveryState.ACCEPTED.value, "text")}, u.accepted_at, u.via_hub, u.due_date
        FROM unnest({p([uuid.UUID(r.delivery_id) for _, _, r, _ in routes], "uuid[]")},
            {p([uuid.UUID(receipt.document_uuid) for receipt, _, _, _ in routes], "uuid[]")},
            {p([i for _, i, _, _ in routes], "int[]")},
            {p([r.requested_recipient for _, _, r, _ in routes], "text[]")},
            {p([r.effective_recipient for _, _, r, _ in routes], "text[]")},
            {p([receipt.accepted_at for receipt, _, _, _ in routes], "timestamptz[]")},
            {p([r.hub for _, _, r, _ in routes], "text[]")},
            {p([due for _, _, _, due in routes], "date[]")})
            AS u(id, document_uuid, position, requested_recipient, recipient, accepted_at, via_hub,
                due_date)
        {unchanged}"""  # noqa: S608 - placeholders and constants only


def _messages_sql(p: Parameters, batch: Sequence[NewSubmission]) -> str:
    """The copies' outbox rows, as stage_delivery_messages writes them, ids in the batch's
    order (the relay publishes by id), only for the copies inserted."""
    copies = [(item, r) for item in batch for r in item.receipt.routes]
    return f"""
        INSERT INTO exchange.outbox (routing_key, message_id, message_type, payload,
            delivery_id, traceparent)
        SELECT coalesce('{PEER_ROUTING_PREFIX}' || c.via_hub, c.recipient), u.message_id,
            {p(DELIVERY_MESSAGE_TYPE, "text")}, u.payload, u.delivery_id, u.traceparent
        FROM unnest({p([uuid.UUID(r.delivery_id) for _, r in copies], "uuid[]")},
            {p([r.delivery_id for _, r in copies], "text[]")},
            {p([_queued(item, r) for item, r in copies], "bytea[]")},
            {p([item.traceparent for item, _ in copies], "text[]")})
            WITH ORDINALITY AS u(delivery_id, message_id, payload, traceparent, n)
        JOIN copies c ON c.id = u.delivery_id
        ORDER BY u.n"""  # noqa: S608 - placeholders and constants only


def _queued(item: NewSubmission, route: Route) -> bytes:
    return events_pb2.DeliveryQueued(
        delivery_id=route.delivery_id,
        document_uuid=item.receipt.document_uuid,
        recipient=route.effective_recipient,
    ).SerializeToString()

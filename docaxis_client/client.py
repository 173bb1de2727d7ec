"""An agency's connection to docaxis over gRPC: upload, submit (signed), receive, acknowledge,
track, and fetch transport receipts.

A DMS integrator connects with its agency certificate and signs with its officials' and its
organisation's keys in three lines::

    client = AgencyClient.connect(address, tls=TlsCredentials.from_files(ca=…, cert=…, key=…),
                                  person=official, organization=agency)
    receipt = await client.submit(consignment_id, header, attachments)  # signed on the way
    signers = client.verify(delivery, trust)  # on the receiving side

Refusals raise the typed errors of ``docaxis_client.errors`` (reason, field violations,
retryable, retry delay). The README next to the package walks through a whole integration.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from docaxis.exchange.v1 import report_service_pb2_grpc as rpb_grpc
from docaxis.ledger.v1 import ledger_service_pb2 as lpb
from docaxis.ledger.v1 import ledger_service_pb2_grpc as lpb_grpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docaxis_client.credentials import TlsCredentials
from docaxis_client.documents import manifest_of, sign_submission, verify_delivery, with_signer
from docaxis_client.errors import decoded_errors
from docaxis_client.ledger.monitor import CheckpointStore, LedgerMonitor, MemoryCheckpointStore
from docaxis_client.ledger.policy import TrustPolicy
from docaxis_client.progress import BytesDone, ignore_progress
from docaxis_client.receive import ReceiveStream
from docaxis_client.streams import AcknowledgingStream, acknowledgement_of
from docaxis_client.trace_context import trace_metadata
from docaxis_client.trust.chain import TrustStore
from docaxis_client.trust.errors import ManifestInvalidError
from docaxis_client.trust.keys import SigningIdentity
from docaxis_client.trust.receipts import TransportReceipt
from docaxis_client.trust.signatures import VerifiedSigners
from docaxis_client.uploads import ChunkSource, ResumableUploader, file_chunks

CHUNK_BYTES = 1024 * 1024
AGENCY_HEADER = "x-docaxis-agency"
ROLE_HEADER = "x-docaxis-role"
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
    # An axis served by several replicas (a name with several addresses, or a target such as
    # "ipv4:10.0.0.1:50051,10.0.0.2:50051"): calls and streams spread over the replicas that
    # answer, and a replica that goes away is skipped until it is back.
    ("grpc.lb_policy_name", "round_robin"),
)


def open_channel(address: str, tls: TlsCredentials | None) -> grpc.aio.Channel:
    """A mutual-TLS channel, or a plaintext one for a development-mode axis (tls=None)."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    options: list[tuple[str, str | int]] = [*CHANNEL_OPTIONS]
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=options)


@dataclass(frozen=True, slots=True)
class BatchDocument:
    """One document of a SubmitBatch: signed by the client on the way, like submit()."""

    consignment_id: str
    header: common_pb2.DocumentHeader
    attachments: Sequence[common_pb2.AttachmentRef] = ()


@dataclass(frozen=True, slots=True)
class Upload:
    """An attachment stored in docaxis, ready to reference in a submission."""

    sha256: str
    size: int

    def ref(self, name: str, media_type: str, description: str = "") -> common_pb2.AttachmentRef:
        return common_pb2.AttachmentRef(
            name=name,
            media_type=media_type,
            size=self.size,
            sha256=self.sha256,
            description=description,
        )


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (lowercase hex) and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class AgencyClient:
    """One agency's client. With mutual TLS the client certificate names the agency; against a
    development-mode axis (no ``tls``) a request header does.

    Given ``person`` and ``organization`` signing identities, ``submit`` signs every document
    (the official first, then the organisation, as Nghị định 30/2020 prescribes). The
    organisation identity is usually the agency certificate used for TLS, but need not be: an
    agency may sign with an Ed25519 key, which gRPC's TLS stack cannot use.
    """

    def __init__(
        self,
        address: str,
        agency_code: str | None = None,
        *,
        tls: TlsCredentials | None = None,
        person: SigningIdentity | None = None,
        organization: SigningIdentity | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        code = agency_code or (tls.agency_code if tls is not None else None)
        if code is None:
            raise ValueError("an agency client needs an agency certificate (or, in dev, a code)")
        if (person is None) != (organization is None):
            raise ValueError("documents carry both signatures: give person and organization")
        self.agency_code = code
        self._channel = open_channel(address, tls)
        # Plaintext development mode names the caller in a header; under TLS the certificate
        # does, and the server ignores such headers.
        self._metadata: tuple[tuple[str, str], ...] = (
            ((AGENCY_HEADER, code),) if tls is None else ()
        )
        self._person = person
        self._organization = organization
        self._timeout_s = timeout_s
        self.exchange = pb_grpc.ExchangeServiceStub(self._channel)
        self.directory = dpb_grpc.DirectoryServiceStub(self._channel)
        # Checkpoints, receipts and proofs for this agency's documents.
        self.ledger = lpb_grpc.LedgerServiceStub(self._channel)
        # Overdue copies and monthly statistics of this agency.
        self.reports = rpb_grpc.ReportServiceStub(self._channel)
        self._monitor: LedgerMonitor | None = None

    def monitor_ledger(
        self, policy: TrustPolicy, store: CheckpointStore | None = None
    ) -> LedgerMonitor:
        """From now on, check each ledger checkpoint the hub hands out (with submission and
        transport receipts, and Track) against the agency's own `policy` and the newest one
        seen before. A split view raises LedgerForkError after reporting both notes to the hub's
        administrators (LedgerService.ReportFork); `store` keeps the newest across restarts."""

        async def consistency(old_size: int, new_size: int) -> list[bytes]:
            with decoded_errors():
                response = await self.ledger.GetConsistencyProof(
                    lpb.GetConsistencyProofRequest(old_size=old_size, new_size=new_size),
                    metadata=self._call_metadata(),
                    timeout=self._timeout_s,
                )
            return list(response.hashes)

        async def report(held: bytes, shown: bytes, detail: str) -> None:
            with decoded_errors():
                await self.ledger.ReportFork(
                    lpb.ReportForkRequest(trusted_note=held, conflicting_note=shown, detail=detail),
                    metadata=self._call_metadata(),
                    timeout=self._timeout_s,
                )

        self._monitor = LedgerMonitor(policy, store or MemoryCheckpointStore(), consistency, report)
        return self._monitor

    async def _observe(self, note: bytes) -> None:
        """Hands a checkpoint a response carried to the ledger monitor, if there is one."""
        if self._monitor is not None and note:
            await self._monitor.observe(note)

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        tls: TlsCredentials,
        person: SigningIdentity | None = None,
        organization: SigningIdentity | None = None,
        timeout_s: float = 30.0,
    ) -> Self:
        """A client over mutual TLS, acting as the agency its certificate names."""
        return cls(address, tls=tls, person=person, organization=organization, timeout_s=timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def _call_metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata of one call: the caller's, and the current OpenTelemetry span's trace
        context when the application traces (docaxis's spans then join its trace)."""
        return self._metadata + trace_metadata()

    async def health(self, service: str = "") -> str:
        """gRPC Health/Check: ``SERVING`` while docaxis and its database and broker answer,
        ``NOT_SERVING`` otherwise (``service`` names one service, e.g.
        ``docaxis.exchange.v1.ExchangeService``; empty for the whole server)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        with decoded_errors():
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def upload_file_resumable(
        self, path: Path, *, progress: BytesDone = ignore_progress
    ) -> Upload:
        """Uploads a file of any size, never more than one chunk in memory, as a resumable
        upload: after a broken link (UNAVAILABLE) it goes on from what docaxis has committed.
        The way to send attachments from disk. `progress` is told the bytes sent so far (to
        show a large upload going on)."""
        sha256, size = file_digest(path)
        return await self.upload_resumable(
            sha256, size, lambda offset: file_chunks(path, offset), progress=progress
        )

    @property
    def uploader(self) -> ResumableUploader:
        """BeginUpload, UploadChunks and GetUpload, one by one (upload_resumable combines them)."""
        return ResumableUploader(self.exchange, self._metadata, timeout_s=self._timeout_s)

    async def upload_resumable(
        self, sha256: str, size: int, source: ChunkSource, *, progress: BytesDone = ignore_progress
    ) -> Upload:
        """Uploads content that `source(offset)` yields from any offset, resuming from the
        committed size after retryable failures; docaxis verifies the SHA-256 at the end.
        `progress` is told the bytes sent so far."""
        with decoded_errors():
            status = await self.uploader.upload(sha256, size, source, progress)
        return Upload(status.sha256, status.size)

    async def upload_stream(self, data: bytes, *, declared_sha256: str | None = None) -> Upload:
        """Uploads bytes held in memory in one UploadAttachment stream: simplest for small
        attachments, but a broken link means starting again (use upload_file_resumable for
        large files). `declared_sha256` overrides the digest docaxis checks the bytes against."""
        sha256 = declared_sha256 or hashlib.sha256(data).hexdigest()

        async def requests() -> AsyncIterator[pb.UploadAttachmentRequest]:
            yield pb.UploadAttachmentRequest(
                declaration=pb.AttachmentDeclaration(sha256=sha256, size=len(data))
            )
            for start in range(0, len(data), CHUNK_BYTES):
                yield pb.UploadAttachmentRequest(chunk=data[start : start + CHUNK_BYTES])

        with decoded_errors():
            response = await self.exchange.UploadAttachment(
                requests(), metadata=self._call_metadata(), timeout=self._timeout_s
            )
        return Upload(response.sha256, response.size)

    def sign(
        self, header: common_pb2.DocumentHeader, attachments: Sequence[common_pb2.AttachmentRef]
    ) -> list[common_pb2.DocumentSignature]:
        """Both signatures over the manifest of `header` and `attachments` (give the header as
        ``with_signer`` completes it: the signer's name is part of what is signed)."""
        if self._person is None or self._organization is None:
            raise ValueError("this client has no signing identities")
        return sign_submission(
            header, attachments, person=self._person, organization=self._organization
        )

    async def submit(
        self,
        consignment_id: str,
        header: common_pb2.DocumentHeader,
        attachments: Sequence[common_pb2.AttachmentRef] = (),
        signatures: Sequence[common_pb2.DocumentSignature] | None = None,
    ) -> pb.SubmitResponse:
        """Submits a document, signed with the client's identities unless `signatures` are
        given. A header too malformed to make a manifest is sent unsigned: docaxis then reports
        every bad field at once (VALIDATION), which helps more than the first one here.

        The header's ``signer.full_name`` may be left empty: the official's name is taken from
        the person certificate that signs (the caller's header is not changed)."""
        if self._person is not None:
            header = with_signer(header, self._person)
        if signatures is None:
            signatures = self._signatures_for(header, attachments)
        with decoded_errors():
            response: pb.SubmitResponse = await self.exchange.Submit(
                pb.SubmitRequest(
                    consignment_id=consignment_id,
                    header=header,
                    attachments=list(attachments),
                    signatures=list(signatures),
                ),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )
        await self._observe(response.ledger_checkpoint)
        return response

    def _signatures_for(
        self, header: common_pb2.DocumentHeader, attachments: Sequence[common_pb2.AttachmentRef]
    ) -> list[common_pb2.DocumentSignature]:
        """The client's signatures; none without identities, or for a header too malformed to
        make a manifest (docaxis then reports every bad field at once)."""
        if self._person is None:
            return []
        try:
            return list(self.sign(header, attachments))
        except ManifestInvalidError:
            return []

    async def submit_batch(self, documents: Sequence[BatchDocument]) -> list[pb.SubmitResult]:
        """Submits up to 100 documents in one call, each signed with the client's identities and
        answered on its own, in order: `result.response` when accepted (or replayed), else
        `item_error(result.error)` says why that document alone was refused."""
        requests = []
        for document in documents:
            header = document.header
            if self._person is not None:
                header = with_signer(header, self._person)
            requests.append(
                pb.SubmitRequest(
                    consignment_id=document.consignment_id,
                    header=header,
                    attachments=list(document.attachments),
                    signatures=self._signatures_for(header, document.attachments),
                )
            )
        with decoded_errors():
            response = await self.exchange.SubmitBatch(
                pb.SubmitBatchRequest(documents=requests),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )
        return list(response.results)

    def receive_stream(self, window: int = 32, keep_confirmed: int = 4096) -> AcknowledgingStream:
        """The push stream with acknowledgements on the stream itself (at most `window` items
        unacknowledged at once; the answers of the last `keep_confirmed` acknowledgements kept
        for `confirmed`). Use it as an async context manager."""
        return AcknowledgingStream(self.exchange, self._metadata, window, keep_confirmed)

    async def acknowledge_batch(
        self, items: Sequence[pb.ReceiveResponse | pb.AcknowledgeRequest]
    ) -> list[pb.AcknowledgeResult]:
        """Acknowledges up to 1,000 items (deliveries or notices) in one call; each answered
        on its own, in order (`item_error(result.error)` for a refusal)."""
        requests = [
            i if isinstance(i, pb.AcknowledgeRequest) else acknowledgement_of(i) for i in items
        ]
        with decoded_errors():
            response = await self.exchange.AcknowledgeBatch(
                pb.AcknowledgeBatchRequest(items=requests),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )
        return list(response.results)

    def receive(self) -> ReceiveStream:
        """The push stream of this agency's mail; ``await stream.subscribed()`` before causing
        what must arrive on it. Cancel the stream to hang up."""
        return ReceiveStream(
            self.exchange.Receive(pb.ReceiveRequest(), metadata=self._call_metadata())
        )

    async def acknowledge(self, delivery_id: str) -> pb.AcknowledgeResponse:
        with decoded_errors():
            return await self.exchange.Acknowledge(
                pb.AcknowledgeRequest(delivery_id=delivery_id),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )

    async def acknowledge_notice(self, notice_id: str) -> pb.AcknowledgeResponse:
        """Acknowledges a StatusNotice or RecallNotice, so that it is never delivered again."""
        with decoded_errors():
            return await self.exchange.Acknowledge(
                pb.AcknowledgeRequest(notice_id=notice_id),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )

    async def report_status(
        self,
        delivery_id: str,
        code: pb.StatusCode.ValueType,
        *,
        status_id: str,
        occurred_at: dt.datetime | None = None,
        description: str = "",
        staff: pb.StaffInfo | None = None,
    ) -> pb.ReportStatusResponse:
        """Reports a business status of a received document (or answers a recall with 15/16).
        `status_id` is this report's idempotency key: send the same one when retrying."""
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime((occurred_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))
        with decoded_errors():
            return await self.exchange.ReportStatus(
                pb.ReportStatusRequest(
                    delivery_id=delivery_id,
                    code=code,
                    description=description,
                    staff=staff,
                    occurred_at=stamp,
                    status_id=status_id,
                ),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )

    async def recall(
        self, document_uuid: str, reason: str, recipients: Iterable[str] = ()
    ) -> pb.RecallResponse:
        """Recalls a sent document from some recipients (all when none are named)."""
        with decoded_errors():
            return await self.exchange.Recall(
                pb.RecallRequest(document_uuid=document_uuid, reason=reason, recipients=recipients),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )

    async def list_pending(
        self, page_size: int = 0, page_token: str = ""
    ) -> pb.ListPendingResponse:
        """Pull mode: a page of this agency's unacknowledged items, oldest first."""
        with decoded_errors():
            return await self.exchange.ListPending(
                pb.ListPendingRequest(page_size=page_size, page_token=page_token),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )

    async def fetch(self, item: pb.PendingItem) -> pb.FetchResponse:
        """Pull mode: one listed item in full (a document, a status or a recall notice)."""
        if item.WhichOneof("id") == "notice_id":
            request = pb.FetchRequest(notice_id=item.notice_id)
        else:
            request = pb.FetchRequest(delivery_id=item.delivery_id)
        with decoded_errors():
            return await self.exchange.Fetch(
                request, metadata=self._call_metadata(), timeout=self._timeout_s
            )

    async def acknowledge_item(self, item: pb.PendingItem) -> pb.AcknowledgeResponse:
        """Pull mode: acknowledges a listed item."""
        if item.WhichOneof("id") == "notice_id":
            return await self.acknowledge_notice(item.notice_id)
        return await self.acknowledge(item.delivery_id)

    async def transport_receipt(self, delivery_id: str) -> TransportReceipt:
        """The hub-signed receipt of an acknowledged delivery (sender or recipient only)."""
        with decoded_errors():
            response = await self.exchange.GetTransportReceipt(
                pb.GetTransportReceiptRequest(delivery_id=delivery_id),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )
        await self._observe(response.ledger_checkpoint)
        return TransportReceipt.from_json(response.receipt)

    def manifest_sha256(
        self,
        header: common_pb2.DocumentHeader,
        attachments: Sequence[common_pb2.AttachmentRef] = (),
    ) -> str:
        """The digest the signatures and the transport receipts attest, of the header as
        ``submit`` sends it: with the official's name from the person certificate when the
        header leaves it empty (so the same header gives the same digest here as in Submit)."""
        if self._person is not None:
            header = with_signer(header, self._person)
        return manifest_of(header, attachments).sha256_hex()

    @staticmethod
    def verify(delivery: pb.Delivery, trust: TrustStore) -> VerifiedSigners:
        """Both signatures of a pushed document, checked against the recipient's own anchors."""
        return verify_delivery(delivery, trust)

    async def track(self, document_uuid: str) -> pb.TrackResponse:
        with decoded_errors():
            response: pb.TrackResponse = await self.exchange.Track(
                pb.TrackRequest(document_uuid=document_uuid),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )
        await self._observe(response.ledger_checkpoint)
        return response

    async def download(
        self,
        document_uuid: str,
        sha256: str,
        target: Path,
        *,
        progress: BytesDone = ignore_progress,
    ) -> str:
        """Downloads an attachment to `target`, resuming from its current size; returns the
        SHA-256 of the whole file. `progress` is told the bytes of the file so far."""
        offset = target.stat().st_size if target.exists() else 0
        progress(offset)
        with target.open("ab") as handle, decoded_errors():
            call = self.exchange.DownloadAttachment(
                pb.DownloadAttachmentRequest(
                    document_uuid=document_uuid, sha256=sha256, offset=offset
                ),
                metadata=self._call_metadata(),
                timeout=max(self._timeout_s, 600.0),
            )
            async for piece in call:
                handle.write(piece.chunk)
                offset += len(piece.chunk)
                progress(offset)
        return file_digest(target)[0]

    async def agencies(self, codes: Iterable[str]) -> dpb.BatchGetAgenciesResponse:
        with decoded_errors():
            return await self.directory.BatchGetAgencies(
                dpb.BatchGetAgenciesRequest(codes=list(codes)),
                metadata=self._call_metadata(),
                timeout=self._timeout_s,
            )

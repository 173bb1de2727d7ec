"""An agency's connection to docaxis over gRPC: upload, submit, receive, acknowledge, track."""

from __future__ import annotations

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

CHUNK_BYTES = 1024 * 1024
AGENCY_HEADER = "x-docaxis-agency"
ROLE_HEADER = "x-docaxis-role"


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
    """One agency's client. In development mode the agency is named by a header; with mutual TLS
    the client certificate names it."""

    def __init__(self, address: str, agency_code: str, *, timeout_s: float = 30.0) -> None:
        self.agency_code = agency_code
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 20_000),
            ],
        )
        self._metadata: tuple[tuple[str, str], ...] = ((AGENCY_HEADER, agency_code),)
        self._timeout_s = timeout_s
        self.exchange = pb_grpc.ExchangeServiceStub(self._channel)
        self.directory = dpb_grpc.DirectoryServiceStub(self._channel)

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

    async def upload_file(self, path: Path) -> Upload:
        """Streams a file: never more than one chunk in memory."""
        sha256, size = file_digest(path)

        async def requests() -> AsyncIterator[pb.UploadAttachmentRequest]:
            yield pb.UploadAttachmentRequest(
                declaration=pb.AttachmentDeclaration(sha256=sha256, size=size)
            )
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    yield pb.UploadAttachmentRequest(chunk=chunk)

        response = await self.exchange.UploadAttachment(
            requests(), metadata=self._metadata, timeout=max(self._timeout_s, size / 1e6)
        )
        return Upload(response.sha256, response.size)

    async def upload_bytes(self, data: bytes, *, declared_sha256: str | None = None) -> Upload:
        sha256 = declared_sha256 or hashlib.sha256(data).hexdigest()

        async def requests() -> AsyncIterator[pb.UploadAttachmentRequest]:
            yield pb.UploadAttachmentRequest(
                declaration=pb.AttachmentDeclaration(sha256=sha256, size=len(data))
            )
            for start in range(0, len(data), CHUNK_BYTES):
                yield pb.UploadAttachmentRequest(chunk=data[start : start + CHUNK_BYTES])

        response = await self.exchange.UploadAttachment(
            requests(), metadata=self._metadata, timeout=self._timeout_s
        )
        return Upload(response.sha256, response.size)

    async def submit(
        self,
        consignment_id: str,
        header: common_pb2.DocumentHeader,
        attachments: Sequence[common_pb2.AttachmentRef] = (),
        signatures: Sequence[common_pb2.DocumentSignature] = (),
    ) -> pb.SubmitResponse:
        return await self.exchange.Submit(
            pb.SubmitRequest(
                consignment_id=consignment_id,
                header=header,
                attachments=list(attachments),
                signatures=list(signatures),
            ),
            metadata=self._metadata,
            timeout=self._timeout_s,
        )

    def receive(self) -> grpc.aio.UnaryStreamCall[pb.ReceiveRequest, pb.ReceiveResponse]:
        """The push stream of this agency's mail. Cancel the call to hang up."""
        return self.exchange.Receive(pb.ReceiveRequest(), metadata=self._metadata)

    async def acknowledge(self, delivery_id: str) -> pb.AcknowledgeResponse:
        return await self.exchange.Acknowledge(
            pb.AcknowledgeRequest(delivery_id=delivery_id),
            metadata=self._metadata,
            timeout=self._timeout_s,
        )

    async def track(self, document_uuid: str) -> pb.TrackResponse:
        return await self.exchange.Track(
            pb.TrackRequest(document_uuid=document_uuid),
            metadata=self._metadata,
            timeout=self._timeout_s,
        )

    async def download(self, document_uuid: str, sha256: str, target: Path) -> str:
        """Downloads an attachment to `target`, resuming from its current size; returns the
        SHA-256 of the whole file."""
        offset = target.stat().st_size if target.exists() else 0
        with target.open("ab") as handle:
            call = self.exchange.DownloadAttachment(
                pb.DownloadAttachmentRequest(
                    document_uuid=document_uuid, sha256=sha256, offset=offset
                ),
                metadata=self._metadata,
                timeout=max(self._timeout_s, 600.0),
            )
            async for piece in call:
                handle.write(piece.chunk)
        return file_digest(target)[0]

    async def agencies(self, codes: Iterable[str]) -> dpb.BatchGetAgenciesResponse:
        return await self.directory.BatchGetAgencies(
            dpb.BatchGetAgenciesRequest(codes=list(codes)),
            metadata=self._metadata,
            timeout=self._timeout_s,
        )


def admin_metadata() -> tuple[tuple[str, str], ...]:
    """Development-mode administrator identity."""
    return ((ROLE_HEADER, "admin"),)

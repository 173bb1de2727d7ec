"""Attachments of packages the poller is storing: a BlobSource (the federation's receiving side
fetches a forwarded document's files through it) that answers from the package in hand for the
national axis, and asks the docaxis peers' FederationService for everything else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from services.common.errors import UnavailableError
from services.exchange.service_layer.federation_ports import BlobSource

CHUNK = 256 * 1024


class NationalAxisBlobs:
    def __init__(self, hub_code: str, peers: BlobSource) -> None:
        self._hub_code = hub_code
        self._peers = peers
        self._held: dict[str, Mapping[str, bytes]] = {}

    def hold(self, source_document_uuid: str, files: Mapping[str, bytes]) -> None:
        """The package's files by SHA-256, until `release`."""
        self._held[source_document_uuid] = files

    def release(self, source_document_uuid: str) -> None:
        self._held.pop(source_document_uuid, None)

    async def chunks(
        self, hub_code: str, source_document_uuid: str, sha256: str
    ) -> AsyncIterator[bytes]:
        if hub_code != self._hub_code:
            async for chunk in self._peers.chunks(hub_code, source_document_uuid, sha256):
                yield chunk
            return
        data = self._held.get(source_document_uuid, {}).get(sha256)
        if data is None:
            raise UnavailableError(f"no file {sha256} of national package {source_document_uuid}")
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

"""The manifest digests of recently seen documents, by document uuid.

Building a manifest canonicalises the whole header, recipient list included: for a circular to
3,000 communes that list is 3,000 codes, and each of its 3,000 receipts (transport receipts to
the DMSs, hop receipts between hubs) would build it again, seconds of CPU. A stored document
never changes, so the digests of the last few documents are kept, among them those Submit has
just verified (their signatures' manifest, built from the same header and attachments by the
same function): their receipts then build nothing."""

from __future__ import annotations

from collections.abc import Sequence

from docaxis_client.recent import Recent
from services.exchange.domain.model import AttachmentRef, Header, manifest_of

KEPT = 256


class ManifestDigests:
    def __init__(self, kept: int = KEPT) -> None:
        self._digests: Recent[str, str] = Recent(kept)

    def of(self, document_uuid: str, header: Header, attachments: Sequence[AttachmentRef]) -> str:
        """The hex SHA-256 of the document's canonical manifest; raises TrustError (from
        manifest_of) for a header no manifest can be built of, and keeps nothing then."""
        digest = self._digests.get(document_uuid)
        if digest is None:
            digest = manifest_of(header, attachments).sha256_hex()
            self._digests.put(document_uuid, digest)
        return digest

    def keep(self, document_uuid: str, digest: str) -> None:
        """The digest of the document's manifest, known already (Submit verified it)."""
        self._digests.put(document_uuid, digest)

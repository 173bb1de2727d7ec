"""Federation: the signed receipt a hub gives for each copy a peer hands over to it, and the
sending hub's check of it before the hand-over counts as done.

The receiving hub signs with its peer certificate (`urn:docaxis:peer:<hub code>`, the one it
presents to its peers over mutual TLS), so the receipt proves which hub took the document over;
it names the origin document, the recipient, the DocumentId and the manifest digest. The sending
hub keeps it (exchange.delivery.hop_receipt) once it verified all of that against its own trust
anchors: an auditor can check it offline later (docaxis_client.trust.verify_hop_receipt). Both
hubs store it without its chain and serve it as the bytes signed (adapters/receipt_chains.py).
"""

from __future__ import annotations

import datetime as dt
import uuid

from docaxis_client.trust.canonical import nfc
from docaxis_client.trust.chain import TrustStore
from docaxis_client.trust.errors import TrustError
from docaxis_client.trust.keys import SigningIdentity
from docaxis_client.trust.receipts import TransportReceipt, sign_receipt, verify_hop_receipt
from services.common.errors import RejectedError
from services.exchange.domain.model import Submission
from services.exchange.service_layer.federation_ports import OutboundDocument
from services.exchange.service_layer.manifest_digests import ManifestDigests


class PeerReceiptInvalidError(RejectedError):
    """The next hub answered a hand-over with a receipt that does not prove it: not signed by
    that hub under the trust anchors, or about another document or recipient. The hand-over is
    not done: the copy is handed over again later (the next hub answers a retry with its first
    receipt), and dead-lettered after the push limit like any copy that is never settled."""

    reason = "PEER_RECEIPT_INVALID"
    retryable = True


class HopReceipts:
    """Signs this hub's receipts (`identity`: its peer certificate and key) and checks the
    peers' (`trust`: the anchors). Without an identity (development mode, no mutual TLS) the
    receipts are empty; without anchors nothing can be checked and every receipt is kept as
    it came."""

    def __init__(self, identity: SigningIdentity | None, trust: TrustStore | None) -> None:
        self._identity = identity
        self._trust = trust
        # A circular handed over to a peer hub brings a receipt per copy, all of one document.
        self._digests = ManifestDigests()

    def sign(
        self, origin_document_uuid: str, submission: Submission, recipient: str, at: dt.datetime
    ) -> bytes:
        """This hub's receipt of the copy of `origin_document_uuid` for `recipient`."""
        if self._identity is None:
            return b""
        return sign_receipt(
            document_uuid=origin_document_uuid,
            document_id=submission.header.document_id,
            manifest_sha256=self._manifest_sha256(origin_document_uuid, submission),
            recipient=recipient,
            hub=self._identity,
            acknowledged_at=at,
        ).to_json()

    def _manifest_sha256(self, origin_document_uuid: str, submission: Submission) -> str:
        """The digest of the document's canonical manifest; empty for a header no manifest can
        be built of (an unsigned development-mode document), on both sides alike."""
        try:
            return self._digests.of(origin_document_uuid, submission.header, submission.attachments)
        except TrustError:
            return ""

    def check(self, peer: str, item: OutboundDocument, receipt: bytes) -> None:
        """Raises PeerReceiptInvalidError unless `receipt` is hub `peer`'s signed receipt of
        `item` (its origin document, recipient, DocumentId and manifest)."""
        if self._trust is None:
            return

        def invalid(detail: str) -> PeerReceiptInvalidError:
            return PeerReceiptInvalidError(
                f"hub {peer}'s receipt of {item.origin_document_uuid} for {item.recipient}: "
                f"{detail}",
                meta={"hub": peer, "origin": item.origin_document_uuid, "detail": detail},
            )

        try:
            parsed = TransportReceipt.from_json(receipt)
        except ValueError as exc:
            raise invalid(f"malformed ({exc})") from None
        try:
            verify_hop_receipt(parsed, self._trust, hub_code=peer)
        except TrustError as exc:
            raise invalid(f"{exc.reason}: {exc}") from None
        expected = {
            "document_uuid": str(uuid.UUID(item.origin_document_uuid)),
            "recipient": nfc(item.recipient),
            "document_id": nfc(item.submission.header.document_id),
            "manifest_sha256": self._manifest_sha256(item.origin_document_uuid, item.submission),
        }
        found = {
            "document_uuid": parsed.document_uuid,
            "recipient": parsed.recipient,
            "document_id": parsed.document_id,
            "manifest_sha256": parsed.manifest_sha256,
        }
        for name, value in expected.items():
            if found[name] != value:
                raise invalid(f"it names {name} {found[name]!r}, not {value!r}")

"""The documents this process stored or read lately, as a push carries them, by document uuid.

Each copy pushed (and each transport receipt signed) needs its document: header, attachments,
signatures with their certificate chains. Read from Postgres, that is three queries per claim
transaction and two per acknowledgement transaction, for a document the same process stored a
few milliseconds before. A stored document never changes (its copies do, and those are always
read under lock), so the stores keep the last few here: Submit puts each document it committed,
and a load puts what it read (a document another worker stored, or one stored before a restart).
"""

from __future__ import annotations

import datetime as dt
import uuid

from docaxis_client.recent import Recent
from services.exchange.domain.model import AttachmentRef, Header, Signature
from services.exchange.domain.peering import Hop
from services.exchange.domain.verification import Verification

# Header, attachments, signatures, submission time, verification, envelope, trace across hubs.
PushedDocument = tuple[
    Header,
    tuple[AttachmentRef, ...],
    tuple[Signature, ...],
    dt.datetime,
    Verification | None,
    AttachmentRef | None,
    tuple[Hop, ...],
]

# Enough for every document in flight at a few hundred documents per second (a copy is pushed
# within a second of its Submit); a circular's 48 KB header is the largest entry.
KEPT = 512


class StoredDocuments(Recent[uuid.UUID, PushedDocument]):
    """Only committed documents go in, exactly as a load from Postgres would give them."""

    def __init__(self, kept: int = KEPT) -> None:
        super().__init__(kept)

"""Transport receipts stored without the hub's certificate chain (migration 0035).

A receipt's JSON (TransportReceipt.to_json) is about 2.6 KB, of which about 2 KB is the hub's
chain, the same for every receipt of one key. A copy's row holds the receipt with
`"chain":"sha256:<hex>"` in the place of the chain's array, and exchange.receipt_chain holds the
array's exact JSON bytes once, keyed by their SHA-256. RFC 8785 sorts the keys, so the reference
is always the third member, after two of fixed shape (a timestamp, an algorithm's name): the
served receipt is the stored bytes with the array spliced back in, byte for byte what to_json
gives (no parse, no second encoding). A stored receipt without the reference (written before) is
served as it is.

A federation hop receipt (the next hub's receipt of a copy handed over to it, kept by the hub
that handed it over; the receipt a hub signed for a copy handed over to it, kept to answer a
retry) is stored the same way, from its bytes (received_receipt): they are the bytes a peer
signed or this hub handed out, and the ones whose SHA-256 the ledger records, so the row keeps
the bytes either side of the chain member's value as they are and the chain row the value's
exact bytes, whatever the sender's encoding.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from docaxis_client.jcs import dumps
from docaxis_client.trust.receipts import TransportReceipt
from services.common.postgres import Conn

_PREFIX = b"sha256:"
# The start of a receipt up to its chain's value: the members before "chain" are a format_utc
# timestamp and an algorithm's name, neither with a quote or a backslash.
_BEFORE_CHAIN = rb'\{"acknowledged_at":"[0-9TZ:-]+","alg":"[a-z0-9-]+","chain":'
_CHAIN_ARRAY = re.compile(_BEFORE_CHAIN + rb"(\[[^\]]*\])")
# A receipt stored with a reference.
_REFERENCE = re.compile(_BEFORE_CHAIN + rb'("sha256:([0-9a-f]{64})")')


class StoredChainError(RuntimeError):
    """A stored receipt names a chain that is missing or whose bytes no longer hash to its key:
    the receipt cannot be served as the hub signed and handed it out."""


@dataclass(frozen=True, slots=True)
class HubChain:
    """A hub chain as receipts carry it: the JSON array's exact bytes (the chain member's value
    as it came, for a receipt stored from its bytes) and their SHA-256."""

    sha256: bytes
    text: bytes

    @classmethod
    def of(cls, text: bytes) -> HubChain:
        """The chain whose array is `text`, keyed by its hash."""
        return cls(hashlib.sha256(text).digest(), text)

    @property
    def reference(self) -> str:
        """What a stored receipt carries in the chain's place."""
        return _PREFIX.decode() + self.sha256.hex()


@functools.lru_cache(maxsize=64)
def hub_chain(chain: tuple[bytes, ...]) -> HubChain:
    """Encoded once per chain (a hub has one per key): the array's bytes as in to_json."""
    return HubChain.of(dumps([base64.b64encode(der).decode("ascii") for der in chain], fast=True))


def stored_receipt(receipt: TransportReceipt) -> tuple[HubChain, bytes]:
    """The receipt's chain, and the receipt as a copy's row stores it (the chain referred to)."""
    chain = hub_chain(receipt.chain)
    return chain, receipt.json_with_chain(chain.reference)


def received_receipt(received: bytes) -> tuple[HubChain | None, bytes]:
    """A receipt's JSON as received from a peer or handed out to one (a hop receipt), and the
    chain it is stored without, or None for bytes stored as they are (an empty receipt, another
    format). served_receipt gives the bytes back exactly: the chain row holds the chain
    member's value as it came (the array's bytes, the same for every receipt of one key). Bytes
    whose chain is already a reference (no receipt: never verified, only a peer unchecked
    without trust anchors sends them) have that string referred to likewise, so that a row
    stored whole never reads as one stored with a reference."""
    match = _CHAIN_ARRAY.match(received) or _REFERENCE.match(received)
    if match is None:
        return None, received
    start, end = match.span(1)
    chain = HubChain.of(received[start:end])
    return chain, b'%s"%s"%s' % (received[:start], chain.reference.encode(), received[end:])


def chain_named(stored: bytes) -> bytes | None:
    """The SHA-256 of the chain a stored receipt refers to; None for a receipt stored whole."""
    match = _REFERENCE.match(stored)
    return None if match is None else bytes.fromhex(match[2].decode("ascii"))


def served_receipt(stored: bytes, chain: HubChain) -> bytes:
    """The receipt as signed and handed out: the stored bytes with the chain put back."""
    match = _REFERENCE.match(stored)
    if match is None:
        return stored
    if bytes.fromhex(match[2].decode("ascii")) != chain.sha256:
        raise StoredChainError("the receipt refers to another chain")
    start, end = match.span(1)
    return stored[:start] + chain.text + stored[end:]


class ReceiptChains:
    """The chains this process knows stored (written and committed, or read and checked), by
    their SHA-256; a chain is immutable once stored, so each is written or read once."""

    def __init__(self) -> None:
        self._stored: dict[bytes, HubChain] = {}

    def unstored(self, chains: Iterable[HubChain]) -> list[HubChain]:
        """Those of `chains` not known stored, once each."""
        return list({c.sha256: c for c in chains if c.sha256 not in self._stored}.values())

    async def store(self, conn: Conn, chains: list[HubChain]) -> None:
        """Writes `chains` in the caller's transaction (a chain stored already stays as it is);
        `stored` records them once it commits."""
        if chains:
            await conn.execute(
                """
                INSERT INTO exchange.receipt_chain (sha256, chain)
                SELECT * FROM unnest($1::bytea[], $2::bytea[])
                ON CONFLICT (sha256) DO NOTHING
                """,
                [c.sha256 for c in chains],
                [c.text for c in chains],
            )

    def stored(self, chains: Iterable[HubChain]) -> None:
        """`chains` were committed (store's transaction ended)."""
        for chain in chains:
            self._stored[chain.sha256] = chain

    async def served(self, conn: Conn, stored: bytes) -> bytes:
        """A copy's stored receipt as served (StoredChainError if its chain is missing or was
        altered)."""
        sha256 = chain_named(stored)
        if sha256 is None:
            return stored
        chain = self._stored.get(sha256)
        if chain is None:
            text: bytes | None = await conn.fetchval(
                "SELECT chain FROM exchange.receipt_chain WHERE sha256 = $1", sha256
            )
            if text is None:
                raise StoredChainError(f"no stored chain {sha256.hex()}")
            chain = HubChain.of(text)
            # A row changed since it was written must not pass as the hub's chain.
            if chain.sha256 != sha256:
                raise StoredChainError(f"the stored chain {sha256.hex()} does not match its hash")
            self._stored[sha256] = chain
        return served_receipt(stored, chain)

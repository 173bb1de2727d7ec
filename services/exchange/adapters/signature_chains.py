"""Signatures stored without their certificate chains (migration 0043).

A Submit's signatures carry about 3.2 KB of certificates (the agency's chain, the official's),
the same with every document of one signer. A signature's row may keep, in their place, the
SHA-256 of the chain (chain_sha256), and exchange.signature_chain the certificates once under
that key: read back, a signature has the same certificates in the same order, byte for byte,
as the one stored inline (Download, Fetch, the pushes, federation's forwarding all read
documents through postgres.load_documents). Rows stored inline (before 0043, or by a process of
an earlier version during the upgrade) are read as they are.

The writer refers to chains only once no process of an earlier version, which reads the chains
inline only, can be running (referring); until then it stores them inline as before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from docaxis_client.recent import Recent
from services.common.clock import Clock, utc_now
from services.common.postgres import Conn
from services.exchange.adapters.receipt_chains import StoredChainError
from services.exchange.service_layer.upgrade_walks import UPGRADE_WINDOW

# The chains a process keeps (known stored, with their certificates): a signer's chain is the
# same for each of its documents; an agency signs with two (its own, its official's).
KEPT = 2048


@dataclass(frozen=True, slots=True)
class SignatureChain:
    """A signature's certificates (DER, leaf first) and the SHA-256 they are stored under."""

    sha256: bytes
    certificates: tuple[bytes, ...]

    @classmethod
    def of(cls, certificates: Sequence[bytes]) -> SignatureChain:
        """The chain of `certificates`, keyed by the SHA-256 of each certificate's length (four
        bytes, big-endian) and bytes in turn: two different lists never share an encoding."""
        digest = hashlib.sha256()
        for certificate in certificates:
            digest.update(len(certificate).to_bytes(4, "big"))
            digest.update(certificate)
        return cls(digest.digest(), tuple(certificates))


def writes_from(began: dt.datetime | None, applied: Iterable[dt.datetime | None]) -> dt.datetime:
    """When the writer may refer to chains, from when 0043 began (None: on a database no
    earlier version ran against, at once) and when each migration since was applied: a day
    (UPGRADE_WINDOW) after the last of those applied within a day of it (the rest of the upgrade
    that applied 0043, the ledger's included; or the next one's), for the processes of the
    version before run until a day after the upgrade's last migration at most."""
    if began is None:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    within = (t for t in applied if t is not None and t < began + UPGRADE_WINDOW)
    return max([began, *within]) + UPGRADE_WINDOW


class SignatureChains:
    """Whether this process writes signatures' chains by reference yet, and the chains it knows
    stored (written and committed, or read and checked): a stored chain never changes, so each
    is written or read once while the process keeps it."""

    def __init__(self, clock: Clock = utc_now, kept: int = KEPT) -> None:
        self._clock = clock
        self._known: Recent[bytes, SignatureChain] = Recent(kept)
        self._writes_from: dt.datetime | None = None
        self._referring = False

    async def referring(self, conn: Conn) -> bool:
        """Whether signatures are stored with a reference to their chain from now on. Read once
        per process (the row never changes); once true it stays true."""
        if not self._referring:
            if self._writes_from is None:
                since = await conn.fetch(
                    "SELECT began_at, applied_at FROM exchange.signature_chain_writes_since"
                )
                # One row at least (0043 writes signature_chain_writes' row).
                self._writes_from = writes_from(
                    since[0]["began_at"], [row["applied_at"] for row in since]
                )
            self._referring = self._clock() >= self._writes_from
        return self._referring

    def unstored(self, chains: Iterable[SignatureChain]) -> list[SignatureChain]:
        """Those of `chains` not known stored, once each."""
        return list({c.sha256: c for c in chains if self._known.get(c.sha256) is None}.values())

    def stored(self, chains: Iterable[SignatureChain]) -> None:
        """`chains` were committed (the statement or transaction that wrote them ended)."""
        for chain in chains:
            self._known.put(chain.sha256, chain)

    async def certificates(
        self, conn: Conn, keys: Iterable[bytes]
    ) -> dict[bytes, tuple[bytes, ...]]:
        """The certificates of the chains `keys` name, read once each while kept, each checked
        against its key (StoredChainError if one is missing or was altered)."""
        found: dict[bytes, tuple[bytes, ...]] = {}
        missing: set[bytes] = set()
        for key in keys:
            if (chain := self._known.get(key)) is not None:
                found[key] = chain.certificates
            else:
                missing.add(key)
        if missing:
            rows = await conn.fetch(
                "SELECT sha256, certificates FROM exchange.signature_chain "
                "WHERE sha256 = ANY($1::bytea[])",
                list(missing),
            )
            for row in rows:
                chain = SignatureChain.of(row["certificates"])
                # A row changed since it was written must not pass as the signer's chain.
                if chain.sha256 != row["sha256"]:
                    raise StoredChainError(
                        f"the stored chain {row['sha256'].hex()} does not match its hash"
                    )
                self._known.put(chain.sha256, chain)
                found[chain.sha256] = chain.certificates
            if lost := missing - found.keys():
                raise StoredChainError(f"no stored chain {min(lost).hex()}")
        return found

"""The Merkle log in Postgres: sequencing staged events, checkpoints, proofs, export."""

from __future__ import annotations

import datetime as dt
import json
import operator
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg

from docaxis_client.ledger.entry import EntryType, PrevRef
from docaxis_client.ledger.merkle import (
    HASH_SIZE,
    CompactRange,
    consistency_plan,
    hash_leaf,
    inclusion_plan,
)
from docaxis_client.ledger.note import Checkpoint, NoteSigner, sign_checkpoint
from docaxis_client.ledger.tiles import (
    TILE_WIDTH,
    TileCoord,
)
from services.common.postgres import Conn
from services.ledger.domain.sequencing import StagedEvent, iter_sequenced
from services.ledger.domain.tiles import (
    TileBuilder,
    TileHashSource,
    encode_entries,
    tile_width,
    tiles_for_nodes,
)
from services.ledger.service_layer.ports import FencedOutError, StoredCheckpoint, StoredEntry

SEQUENCER_ROLE = "ledger_sequencer"
READER_ROLE = "ledger_reader"


@dataclass(frozen=True, slots=True)
class TreeState:
    size: int
    root: bytes
    compact_range: CompactRange
    tile_builder: TileBuilder


class EntryGapError(ValueError):
    """The stored entries are not the contiguous, self-consistent sequence the tree says."""

    reason = "LEDGER_GAP"


_ENTRIES = "SELECT seq, entry_type, body, leaf_hash FROM ledger.entry"


# A document's entries, in log order, probed by entry_by_doc whatever the statistics. With
# `doc_id = $1`, on statistics taken while the log held one document (a new axis's first
# autoanalyze), a generic plan takes every entry for the document's (1 / n_distinct) and walked
# the whole partition by its primary key, in seq order, filtering on doc_id: 2.7-4.1 ms for
# 16,000 entries and growing with the log, against 0.04-0.2 ms. A range on unknown bounds is
# estimated at the planner's default (0.5 %), so the index probe wins; doc_id leads the ORDER BY
# as in LATEST_PER_DOCUMENT, an order entry_by_doc delivers and the primary key does not
# (docs/perf/README.md, "Young statistics").
DOCUMENT_ENTRIES = f"{_ENTRIES} WHERE doc_id >= $1 AND doc_id <= $1 ORDER BY doc_id, seq"


def _stored_entries(rows: Sequence[asyncpg.Record]) -> list[StoredEntry]:
    return [
        StoredEntry(r["seq"], r["entry_type"], bytes(r["body"]), bytes(r["leaf_hash"]))
        for r in rows
    ]


_STATE = "SELECT size, root, compact_range, tile_builder FROM ledger.tree_state"
# The writer's: its fencing token read with the state, under the row's lock, in one round trip.
_FENCED_STATE = (
    "SELECT writer_epoch, size, root, compact_range, tile_builder FROM ledger.tree_state"
)
_FENCED_STATE_FOR_UPDATE = _FENCED_STATE + " FOR UPDATE"
_FENCED_STATE_FOR_SHARE = _FENCED_STATE + " FOR SHARE"
# Per staged event (13 a bench document), in C: `json.loads`'s checks and a sort key's lambda
# were Python frames of their own.
_JSON = json.JSONDecoder()
_PENDING_ID = operator.attrgetter("pending_id")


async def _tree_state(conn: Conn) -> TreeState:
    row = await conn.fetchrow(_STATE)
    assert row is not None  # the migration inserts the single row
    return _state_of(row)


def _state_of(row: asyncpg.Record) -> TreeState:
    return TreeState(
        row["size"],
        bytes(row["root"]),
        CompactRange.from_bytes(bytes(row["compact_range"])),
        TileBuilder.from_bytes(bytes(row["tile_builder"])),
    )


# The next batch of staged events, taken out of staging. `= ANY(ARRAY(subquery))` makes the
# LIMIT subquery an InitPlan that runs once, then deletes by primary key. `IN (subquery)` left
# the join to the planner, and ledger.pending's statistics routinely say it is empty: the writer
# drains it, and autovacuum then records reltuples = 0 while the pages stay (it skips the
# truncation whenever it cannot take the lock at once). On those statistics a backlog (a
# circular, 100,000 staged events) was claimed with a nested-loop semi join that ran the
# (then locking) subquery again for every staged row, each run past the rows already deleted: the
# LIMIT was not even kept (the whole backlog in one transaction), and a claim out of 100,000
# did not finish in the pool's 60-s command timeout (the bench's ledger figures failed with
# TimeoutError). tests/integration/test_ledger_sequencer.py recreates those statistics.
# Each document's last entry: one backward probe of entry_by_doc per document (DISTINCT ON over
# = ANY(...) sorted every matching row instead, ~0.5 s per 8000 documents). The doc_id range and
# its place in ORDER BY are there for the planner: with `doc_id = d.doc_id ORDER BY seq DESC`
# the sort key on doc_id is dropped as constant, so the primary key also delivers that order,
# and on statistics taken while the log held few documents (a new axis's first autoanalyze) the
# planner walked the whole partition backwards by seq filtering on doc_id, "sure" to meet the
# document at once: 57-89 ms a call in two bench runs of six, and growing with the log. Only
# entry_by_doc delivers (doc_id, seq) order, so it is the one path left.
LATEST_PER_DOCUMENT = """
SELECT d.doc_id, e.seq, e.leaf_hash
FROM unnest($1::uuid[]) AS d (doc_id)
CROSS JOIN LATERAL (
    SELECT seq, leaf_hash FROM ledger.entry
    WHERE doc_id >= d.doc_id AND doc_id <= d.doc_id
    ORDER BY doc_id DESC, seq DESC LIMIT 1
) AS e
"""

# No row lock in the subquery: only the writer deletes staged events, and its batch holds the
# tree state's row lock (`_fenced`), so no other claim runs meanwhile; the DELETE locks what it
# deletes. `FOR UPDATE SKIP LOCKED` there locked each row a first time, a WAL record each
# (13 a bench document, about 700 bytes of its 36 KB, beside the DELETE's own record), for
# nothing (docs/perf/README.md, "Postgres's writes per document").
CLAIM_PENDING = """
    DELETE FROM ledger.pending WHERE id = ANY(ARRAY(
        SELECT id FROM ledger.pending ORDER BY id LIMIT $1
    ))
    RETURNING id, entry_type, doc_uuid, document_id, from_agency, to_agency, actor,
              occurred_at, data::text AS data
"""


class PostgresLedgerWriter:
    """Moves staged events into the log in batches, for the one elected leader (Leadership).

    Fenced: `take_over` bumps ledger.tree_state.writer_epoch, and every batch and checkpoint
    checks the epoch under the lock of that same row before it writes. A leader whose lock
    session died without it knowing yet (a partition, a stalled host) and another that took over
    meanwhile can therefore never both append: the new leader's bump waits for the old one's
    open batch to commit, and the old one's next batch finds the newer epoch and raises
    FencedOutError. Every batch starts from the state committed in the database, never from
    memory, so the new leader continues exactly where the old one stopped."""

    def __init__(self, pool: asyncpg.Pool, origin: str) -> None:
        self._pool = pool
        self._origin = origin
        self._epoch: int | None = None

    async def take_over(self) -> int:
        """Makes this writer the only one that may append; returns its epoch."""
        async with self._pool.acquire() as conn:
            epoch: int = await conn.fetchval(
                "UPDATE ledger.tree_state SET writer_epoch = writer_epoch + 1 "
                "RETURNING writer_epoch"
            )
        self._epoch = epoch
        return epoch

    async def _fenced(self, conn: Conn, *, for_update: bool) -> asyncpg.Record:
        """The tree state's row (_state_of), read under its lock; raises FencedOutError unless
        this writer's epoch is still the newest. The row lock keeps a new leader's bump waiting
        until the caller's transaction ends."""
        row = await conn.fetchrow(
            _FENCED_STATE_FOR_UPDATE if for_update else _FENCED_STATE_FOR_SHARE
        )
        assert row is not None  # the migration inserts the single row
        current = row["writer_epoch"]
        if self._epoch is None or current != self._epoch:
            raise FencedOutError(f"writer epoch {self._epoch} is not the newest ({current})")
        return row

    async def sequence_batch(self, limit: int) -> int:
        """Sequences up to `limit` staged events in one transaction; returns how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            fenced = await self._fenced(conn, for_update=True)
            rows = await conn.fetch(CLAIM_PENDING, limit)
            if not rows:
                return 0
            state = _state_of(fenced)
            events = sorted(
                (
                    StagedEvent(
                        pending_id=r["id"],
                        entry_type=r["entry_type"],
                        doc_uuid=str(r["doc_uuid"]) if r["doc_uuid"] is not None else None,
                        document_id=r["document_id"],
                        from_agency=r["from_agency"],
                        to_agency=r["to_agency"],
                        actor=r["actor"],
                        occurred_at=r["occurred_at"],
                        data=_JSON.decode(r["data"]),
                    )
                    for r in rows
                ),
                key=_PENDING_ID,  # RETURNING has no order; staging order is log order
            )
            prevs = await self._latest_per_document(
                conn, {e.doc_uuid for e in events if e.doc_uuid}
            )
            leaves: list[bytes] = []

            async def records() -> AsyncIterator[tuple[object, ...]]:
                # Streamed: Postgres ingests rows on its own core while the next are encoded.
                for e in iter_sequenced(
                    events,
                    first_seq=state.size,
                    origin=self._origin,
                    logged_at=dt.datetime.now(dt.UTC),
                    prevs=prevs,
                ):
                    leaves.append(e.leaf_hash)
                    # asyncpg encodes uuid columns from their text form: no re-parsing.
                    yield (e.seq, e.entry_type, e.doc_uuid, e.logged_at, e.body, e.leaf_hash)

            await conn.copy_records_to_table(
                "entry",
                schema_name="ledger",
                columns=["seq", "entry_type", "doc_id", "logged_at", "body", "leaf_hash"],
                records=records(),
            )
            state.compact_range.extend(leaves)
            full_tiles = state.tile_builder.extend(leaves)
            if full_tiles:
                await conn.executemany(
                    "INSERT INTO ledger.tile (level, idx, hashes) VALUES ($1, $2, $3)",
                    [(coord.level, coord.index, data) for coord, data in full_tiles],
                )
            await conn.execute(
                """
                UPDATE ledger.tree_state SET size = $1, root = $2, compact_range = $3,
                    tile_builder = $4, updated_at = now()
                """,
                state.compact_range.size,
                state.compact_range.root(),
                state.compact_range.to_bytes(),
                state.tile_builder.to_bytes(),
            )
        return len(leaves)

    @staticmethod
    async def _latest_per_document(conn: Conn, docs: set[str]) -> dict[str, PrevRef]:
        if not docs:
            return {}
        rows = await conn.fetch(LATEST_PER_DOCUMENT, list(docs))
        return {str(r["doc_id"]): PrevRef(r["seq"], bytes(r["leaf_hash"])) for r in rows}

    async def publish_checkpoint(self, signers: Sequence[NoteSigner]) -> StoredCheckpoint | None:
        """Signs the committed tree if it grew since the last checkpoint. Never signs two
        checkpoints for one size: the size is the primary key and must exceed the last one."""
        async with self._pool.acquire() as conn, conn.transaction():
            state = _state_of(await self._fenced(conn, for_update=False))
            last = await conn.fetchval("SELECT max(size) FROM ledger.checkpoint")
            if state.size == 0 or (last is not None and state.size <= last):
                return None
            note = sign_checkpoint(Checkpoint(self._origin, state.size, state.root), signers)
            inserted = await conn.fetchval(
                """
                INSERT INTO ledger.checkpoint (size, root, note)
                SELECT $1, $2, $3
                WHERE NOT EXISTS (SELECT 1 FROM ledger.checkpoint WHERE size >= $1)
                RETURNING size
                """,
                state.size,
                state.root,
                note,
            )
        if inserted is None:
            return None
        return StoredCheckpoint(state.size, state.root, note)

    async def record_keys(self, signers: Sequence[NoteSigner]) -> list[str]:
        """Registers signing keys on first use, each with a `key` entry in the log itself, and
        retires every recorded key the writer no longer holds (its end becomes the key's
        valid_until in the trust policy, and a `key` entry too)."""
        added: list[str] = []
        current = [signer.verifier.vkey for signer in signers]
        async with self._pool.acquire() as conn, conn.transaction():
            retired = await conn.fetch(
                """
                INSERT INTO ledger.key_retirement (vkey)
                SELECT vkey FROM ledger.signing_key
                WHERE vkey <> ALL($1::text[])
                  AND vkey NOT IN (SELECT vkey FROM ledger.key_retirement)
                RETURNING vkey
                """,
                current,
            )
            for row in retired:
                await conn.execute(
                    """
                    INSERT INTO ledger.pending (entry_type, actor, occurred_at, data)
                    VALUES ($1, 'ledger', now(), $2::jsonb)
                    """,
                    EntryType.KEY.value,
                    json.dumps({"event": "checkpoint_key_retired", "vkey": row["vkey"]}),
                )
            for signer in signers:
                vkey = signer.verifier.vkey
                row = await conn.fetchval(
                    "INSERT INTO ledger.signing_key (vkey, name) VALUES ($1, $2) "
                    "ON CONFLICT (vkey) DO NOTHING RETURNING vkey",
                    vkey,
                    signer.name,
                )
                if row is None:
                    continue
                await conn.execute(
                    """
                    INSERT INTO ledger.pending (entry_type, actor, occurred_at, data)
                    VALUES ($1, 'ledger', now(), $2::jsonb)
                    """,
                    EntryType.KEY.value,
                    json.dumps({"event": "checkpoint_key_added", "vkey": vkey}),
                )
                added.append(vkey)
        return added

    async def store_cosignatures(
        self, size: int, cosignatures: Sequence[tuple[str, str, dt.datetime]]
    ) -> None:
        """(witness vkey, signature line, cosignature time) for checkpoint `size`; a witness's
        first cosignature of a size is kept."""
        async with self._pool.acquire() as conn:
            await conn.executemany(
                """
                INSERT INTO ledger.cosignature (size, witness, line, cosigned_at)
                VALUES ($1, $2, $3, $4) ON CONFLICT (size, witness) DO NOTHING
                """,
                [(size, witness, line, when) for witness, line, when in cosignatures],
            )

    async def record_fork(
        self, reporter: str, trusted_note: bytes, conflicting_note: bytes, detail: str
    ) -> int:
        """Keeps split-view evidence; returns the report's id."""
        report_id: int = await self._pool.fetchval(
            """
            INSERT INTO ledger.fork_report (reporter, trusted_note, conflicting_note, detail)
            VALUES ($1, $2, $3, $4) RETURNING id
            """,
            reporter,
            trusted_note,
            conflicting_note,
            detail,
        )
        return report_id


# A checkpoint's note with the witnesses' cosignature lines appended (C2SP: the log serves the
# cosigned checkpoint), and how many witnesses cosigned it.
_COSIGNED = """
SELECT c.size, c.root, c.note,
       coalesce(string_agg(w.line, '' ORDER BY w.witness), '') AS lines,
       count(w.witness) AS cosignatures
FROM ledger.checkpoint c LEFT JOIN ledger.cosignature w ON w.size = c.size
"""


def _cosigned(row: asyncpg.Record) -> StoredCheckpoint:
    note = bytes(row["note"]) + row["lines"].encode("utf-8")
    return StoredCheckpoint(row["size"], bytes(row["root"]), note)


class PostgresLedgerCheckpoints:
    """The latest served checkpoint for the exchange to hand to clients with receipts and Track
    (the application role may read checkpoints and cosignatures). Cached briefly: every Submit
    carries it, and a second-old anchor is as good for a monitor."""

    def __init__(self, pool: asyncpg.Pool, quorum: int, max_age_s: float = 1.0) -> None:
        self._pool = pool
        self._quorum = quorum
        self._max_age_s = max_age_s
        self._cached: tuple[float, bytes] | None = None

    async def latest_note(self) -> bytes:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._max_age_s:
            return self._cached[1]
        async with self._pool.acquire() as conn:
            latest = await latest_cosigned_checkpoint(conn, self._quorum)
        if latest is None:
            return b""  # not cached: the first checkpoint is due within a second
        self._cached = (now, latest.note)
        return latest.note


async def latest_cosigned_checkpoint(conn: Conn, quorum: int) -> StoredCheckpoint | None:
    """The newest checkpoint at least `quorum` witnesses cosigned, with their cosignatures: the
    one the log publishes (a newer one without its quorum is not served yet)."""
    row = await conn.fetchrow(
        _COSIGNED + " GROUP BY c.size HAVING count(w.witness) >= $1 ORDER BY c.size DESC LIMIT 1",
        quorum,
    )
    return None if row is None else _cosigned(row)


class PostgresLedgerReader:
    """Reads for proofs and audits, each from one consistent snapshot. `quorum`: how many
    witness cosignatures a checkpoint needs before it is served."""

    def __init__(self, pool: asyncpg.Pool, quorum: int = 0) -> None:
        self._pool = pool
        self._quorum = quorum

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        async with self._pool.acquire() as conn:
            return await latest_cosigned_checkpoint(conn, self._quorum)

    async def latest_signed_checkpoint(self) -> StoredCheckpoint | None:
        """The newest checkpoint the log signed, cosigned or not (what witnesses are sent)."""
        row = await self._pool.fetchrow(_COSIGNED + " GROUP BY c.size ORDER BY c.size DESC LIMIT 1")
        return None if row is None else _cosigned(row)

    async def checkpoints(self) -> list[StoredCheckpoint]:
        """Every checkpoint, with the cosignatures collected for it."""
        rows = await self._pool.fetch(_COSIGNED + " GROUP BY c.size ORDER BY c.size")
        return [_cosigned(r) for r in rows]

    async def signing_keys(self) -> list[tuple[str, dt.datetime, dt.datetime | None]]:
        """(vkey, first used, retired or None) of every checkpoint key the log has used."""
        rows = await self._pool.fetch(
            """
            SELECT k.vkey, k.first_used, r.retired_at
            FROM ledger.signing_key k LEFT JOIN ledger.key_retirement r USING (vkey)
            ORDER BY k.first_used
            """
        )
        return [(r["vkey"], r["first_used"], r["retired_at"]) for r in rows]

    async def tree_size(self) -> int:
        size: int = await self._pool.fetchval("SELECT size FROM ledger.tree_state")
        return size

    async def entries(self, start: int, end: int) -> list[StoredEntry]:
        return _stored_entries(
            await self._pool.fetch(
                f"{_ENTRIES} WHERE seq >= $1 AND seq < $2 ORDER BY seq", start, end
            )
        )

    async def document_entries(self, document_uuid: str) -> list[StoredEntry]:
        return _stored_entries(await self._pool.fetch(DOCUMENT_ENTRIES, uuid.UUID(document_uuid)))

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        plan = inclusion_plan(index, size)
        return plan.fetch(await self._hash_source(plan.nodes, size))

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        plan = consistency_plan(old_size, new_size)
        return plan.fetch(await self._hash_source(plan.nodes, new_size))

    async def _hash_source(self, nodes: Sequence[tuple[int, int]], size: int) -> TileHashSource:
        """Fetches every tile the proof needs in one snapshot."""
        tiles = await self._read_tiles(tiles_for_nodes(nodes, size), size)
        return TileHashSource(size, tiles.__getitem__)

    async def tile(self, level: int, index: int, width: int, size: int) -> bytes | None:
        """C2SP tlog-tiles hash tile (level, index) of `width` hashes, if the tree of `size`
        leaves holds that many (tile contents never change once a position is filled)."""
        if width > tile_width(level, index, size):
            return None
        coord = TileCoord(level, index, width)
        return (await self._read_tiles([coord], size))[coord]

    async def entry_bundle(self, index: int, width: int, size: int) -> bytes | None:
        """C2SP tlog-tiles entry bundle: entries [index*256, index*256 + width) if within
        `size`, each length-prefixed; checked to be exactly those indices."""
        start = index * TILE_WIDTH
        if start + width > size:
            return None
        entries = await self.entries(start, start + width)
        if [e.seq for e in entries] != list(range(start, start + width)):
            raise EntryGapError(f"entries [{start}, {start + width}) are not all stored")
        return encode_entries(e.body for e in entries)

    async def _read_tiles(self, coords: Sequence[TileCoord], size: int) -> dict[TileCoord, bytes]:
        """The tiles, cut to their widths, from one snapshot. A partial tile at `size` is the
        first W hashes of the full tile stored since, or of the current partial tile."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            state = await _tree_state(conn)
            if size > state.size:
                raise ValueError(f"tree size {size} exceeds the log's size {state.size}")
            rows = await conn.fetch(
                "SELECT level, idx, hashes FROM ledger.tile "
                "WHERE (level, idx) IN (SELECT * FROM unnest($1::smallint[], $2::bigint[]))",
                [c.level for c in coords],
                [c.index for c in coords],
            )
        stored = {(r["level"], r["idx"]): bytes(r["hashes"]) for r in rows}
        partial = {(c.level, c.index): data for c, data in state.tile_builder.partial_tiles()}
        tiles: dict[TileCoord, bytes] = {}
        for coord in coords:
            data = stored.get((coord.level, coord.index)) or partial.get((coord.level, coord.index))
            if data is None:
                raise ValueError(f"tile {coord.path} is missing")
            tiles[coord] = data[: coord.width * HASH_SIZE]
        return tiles

    async def export_entries(
        self, size: int, page: int = 10_000
    ) -> AsyncIterator[list[StoredEntry]]:
        """The entries [0, size) a page at a time, each checked: the page holds exactly the
        expected indices and every stored leaf hash is the hash of its body. Raises
        EntryGapError otherwise (an export must never shift entries silently)."""
        start = 0
        while start < size:
            end = min(start + page, size)
            entries = await self.entries(start, end)
            for expected, entry in enumerate(entries, start=start):
                if entry.seq != expected:
                    raise EntryGapError(f"entry {expected} is missing (next stored: {entry.seq})")
                if hash_leaf(entry.body) != entry.leaf_hash:
                    raise EntryGapError(f"entry {entry.seq}'s stored leaf hash is not its body's")
            if len(entries) != end - start:
                raise EntryGapError(f"entries [{start + len(entries)}, {end}) are missing")
            yield entries
            start = end

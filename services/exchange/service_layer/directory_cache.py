"""Submit's directory reads kept in each process: the recipients' resolutions (which read the
agencies and the hub routes) and the sender's signature policy. Both change rarely (a
reorganisation, a registration, a policy set by an administrator), and without this every Submit
read them again: two round trips of five before its transaction (docs/perf/README.md).

Why a kept read never lets a document through that the current directory would refuse (nor
refuses one it would accept), whatever a concurrent write does:

1. Every statement that changes agencies, hub routes or signature policies bumps the directory's
   generation in its own transaction (a trigger: services/directory/migrations/
   0007_change_generation.sql) and NOTIFYs `directory_changed` at its commit. The new generation
   becomes visible together with the change, never before it.
2. What is kept is stamped with a generation read *before* its data was read (the first miss
   after each clear reads it; later misses reuse it). Data is therefore at least as new as its
   stamp: a write that commits in between makes the data newer than the stamp, never older.
3. A Submit's transaction stores the document only if the current generation, read by the
   statement that inserts it (adapters/postgres.py, insert_submissions: each of its clauses
   reads it, in the statement's one snapshot), equals every
   stamp its reads carried; otherwise it stores nothing and the Submit reads again and decides
   again (DirectoryChangedError). Equal means no directory write committed between the stamp's
   read and that statement, so what the Submit used is what a fresh read would have returned
   inside its own transaction. That is later than the uncached Submit read it (before its
   transaction began), so the window in which a concurrent write is ordered after the Submit is
   narrower than without the cache, not wider: a write that commits after that statement is
   concurrent with the Submit and ordered after it, as it always was.
4. A Submit refused on kept reads (an unknown or closed recipient, a signature the kept policy
   does not accept) reads the current generation before it answers: if it moved, the Submit
   reads again and decides again. A registration just committed is never refused from memory.
5. The NOTIFY only makes this cheap: a process that hears it forgets everything at once, so the
   check in 3 seldom fails. Notifications are missed only while the listening connection is
   down: reads then bypass the cache (stamped with nothing, checked by nothing, as before it),
   and it is cleared when listening again. Correctness never depends on the notification.

Reads for anything but Submit (statuses, reroutes, federation) keep reading the directory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from docaxis_client.recent import Recent
from docaxis_client.trust.bindings import Bindings
from services.exchange.domain.addresses import Resolution
from services.exchange.domain.signature_rules import SignatureRules
from services.exchange.service_layer.ports import AgencyView, DirectoryLookup

# Entries of each kind kept at most (the least recently used forgotten first): every agency of a
# province's directory and more, for a few MiB.
DEFAULT_KEPT = 20_000


class DirectoryGeneration(Protocol):
    async def current(self) -> int:
        """The directory's generation now (bumped by every change to what is kept)."""
        ...


@dataclass(slots=True)
class _Kept:
    """Everything kept since the last clear, all stamped with one generation (None until the
    first miss reads it)."""

    size: int
    generation: int | None = None
    resolutions: Recent[tuple[str, dt.date], Resolution] = field(init=False)
    policies: Recent[tuple[str, int], SignatureRules] = field(init=False)

    def __post_init__(self) -> None:
        self.resolutions = Recent(self.size)
        self.policies = Recent(self.size)


class DirectoryCache:
    def __init__(
        self,
        directory: DirectoryLookup,
        generation: DirectoryGeneration,
        *,
        kept: int = DEFAULT_KEPT,
    ) -> None:
        self._directory = directory
        self._generation = generation
        self._size = kept
        self._kept = _Kept(kept)
        # Off until the change notifications are heard (entrypoints/directory_changes.py).
        self._listening = False

    def clear(self) -> None:
        """Forgets everything kept; loads still under way keep nothing of what they read."""
        self._kept = _Kept(self._size)

    def set_listening(self, heard: bool) -> None:
        """Whether changes are heard now: while they are not, nothing is kept or answered from
        memory. Either way everything kept so far is forgotten (a change may have been missed)."""
        self._listening = heard
        self.clear()

    @property
    def listening(self) -> bool:
        return self._listening

    @property
    def entries(self) -> int:
        """How many resolutions and policies are kept now."""
        return len(self._kept.resolutions) + len(self._kept.policies)

    def reads(self) -> KeptReads:
        """The directory for one Submit: answers from memory where it can, and records the
        generations of everything it answered."""
        return KeptReads(self, self._directory)

    async def is_current(self, generations: frozenset[int]) -> bool:
        """Whether reads stamped with `generations` are still what the directory says (nothing
        stamped: read uncached, current by definition). Clears the cache when they are not."""
        if not generations:
            return True
        if generations == {await self._generation.current()}:
            return True
        self.clear()
        return False

    async def resolve(
        self, codes: Sequence[str], on_date: dt.date, stamps: set[int]
    ) -> dict[str, Resolution]:
        """DirectoryLookup.resolve, from memory where it can; adds to `stamps` the generation of
        what it answered."""
        if not self._listening:
            return await self._directory.resolve(codes, on_date)
        kept = self._kept
        found: dict[str, Resolution] = {}
        missing: list[str] = []
        for code in dict.fromkeys(codes):
            resolution = kept.resolutions.get((code, on_date))
            if resolution is None:
                missing.append(code)
            else:
                found[code] = resolution
        if found:
            assert kept.generation is not None  # entries join only a stamped generation
            stamps.add(kept.generation)
        if not missing:
            return found
        stamp = await self._stamp(kept)
        loaded = await self._directory.resolve(missing, on_date)
        stamps.add(stamp)
        if self._keeps(kept, stamp):
            for code in missing:
                if code in loaded:
                    kept.resolutions.put((code, on_date), loaded[code])
        return found | loaded

    async def signature_policy(
        self, agency_code: str, document_type: int, stamps: set[int]
    ) -> SignatureRules:
        """DirectoryLookup.signature_policy, from memory where it can (as `resolve`)."""
        if not self._listening:
            return await self._directory.signature_policy(agency_code, document_type)
        kept = self._kept
        key = (agency_code, document_type)
        rules = kept.policies.get(key)
        if rules is not None:
            assert kept.generation is not None
            stamps.add(kept.generation)
            return rules
        stamp = await self._stamp(kept)
        rules = await self._directory.signature_policy(agency_code, document_type)
        stamps.add(stamp)
        if self._keeps(kept, stamp):
            kept.policies.put(key, rules)
        return rules

    async def _stamp(self, kept: _Kept) -> int:
        """The generation a miss's data is stamped with: kept's own, or read now, before the
        data (point 2 above)."""
        if kept.generation is not None:
            return kept.generation
        return await self._generation.current()

    def _keeps(self, kept: _Kept, stamp: int) -> bool:
        """Whether data read under `stamp` may join `kept`: only while kept is still the cache's
        (no clear since the read began) and only data of kept's own generation (two first misses
        after a clear may read different generations: the first to finish decides)."""
        if kept is not self._kept:
            return False
        if kept.generation is None:
            kept.generation = stamp
        return kept.generation == stamp


class KeptReads:
    """DirectoryLookup for one Submit (route_recipients and the signature check take it): the
    generations of everything it answered from the cache or stamped are in `stamps`."""

    def __init__(self, cache: DirectoryCache, directory: DirectoryLookup) -> None:
        self._cache = cache
        self._directory = directory
        self.stamps: set[int] = set()

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        return await self._cache.resolve(codes, on_date, self.stamps)

    async def signature_policy(self, agency_code: str, document_type: int) -> SignatureRules:
        return await self._cache.signature_policy(agency_code, document_type, self.stamps)

    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        return await self._directory.lookup(codes)

    async def certificate_bindings(self, spki_sha256: Sequence[str]) -> Bindings:
        return await self._directory.certificate_bindings(spki_sha256)

"""Status notices for an agency that is not listening: coalesced and bounded.

Every status a recipient reports (and the 01 docaxis records at its acknowledgement) becomes a
notice for the document's sender, pushed on its Receive stream or listed in pull mode. A sender
that never opens Receive nor lists would see them pile up without end, as would its broker
queue. So, deciding the notices of new statuses:

- once an agency has `coalesce_after` notices waiting (it is not keeping up), a status notice
  it has not been handed yet is replaced by the next status notice of the same copy
  (coalesced): the agency gets the latest status, and Track has the whole history (each status
  is still recorded and ledgered). Below that, every status is a notice of its own;
- an agency has at most `bound` status notices waiting; past it, a new status is recorded and
  ledgered but not queued as a notice (suppressed), until the agency catches up.

Recall notices ask for an answer: they are never coalesced nor suppressed. Nor is a status
notice another hub carries on towards a sender it serves (federation): the hop is not the
sender, and a status it never got would be missing from the sender's history for good (the
sender's own hub applies these limits to it).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

# Status notices waiting for one agency, at most (DOCAXIS_MAX_PENDING_NOTICES).
DEFAULT_MAX_PENDING_NOTICES = 10_000
# Notices waiting for one agency from which its copies' notices coalesce
# (DOCAXIS_COALESCE_NOTICES_AFTER).
DEFAULT_COALESCE_AFTER = 100


@dataclass(frozen=True, slots=True)
class NoticeLimits:
    """At most `bound` notices wait for one agency; from `coalesce_after` on, its copies'
    notices coalesce (services/exchange/domain/notices.py)."""

    bound: int = DEFAULT_MAX_PENDING_NOTICES
    coalesce_after: int = DEFAULT_COALESCE_AFTER


DEFAULT_NOTICE_LIMITS = NoticeLimits()


class NoticeFate(enum.StrEnum):
    QUEUED = "queued"  # a notice more for the agency
    COALESCED = "coalesced"  # queued, replacing the copy's notice the agency has not had yet
    SUPPRESSED = "suppressed"  # not queued: the agency has `bound` notices waiting


@dataclass(frozen=True, slots=True)
class NewNotice:
    agency: str
    delivery_id: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """What already waits for one agency: its status notices not yet acknowledged, and the
    copies (delivery ids) whose notice it has not been handed yet."""

    count: int
    unhanded: frozenset[str]


def fates(
    new: Sequence[NewNotice],
    waiting: Mapping[str, Waiting],
    *,
    bound: int,
    coalesce_after: int,
    forwarded: Collection[str] = (),
) -> list[NoticeFate]:
    """The fate of each new status notice, in order (earlier ones first to the bound).
    `forwarded`: the copies (delivery ids) whose notices go on to another hub: always queued."""
    counts = {agency: w.count for agency, w in waiting.items()}
    unhanded = {agency: set(w.unhanded) for agency, w in waiting.items()}
    decided: list[NoticeFate] = []
    for notice in new:
        if notice.delivery_id in forwarded:
            decided.append(NoticeFate.QUEUED)
            continue
        pending = unhanded.setdefault(notice.agency, set())
        behind = counts.get(notice.agency, 0) >= coalesce_after
        if behind and notice.delivery_id in pending:
            decided.append(NoticeFate.COALESCED)  # one replaces one: the count stays
            continue
        if counts.get(notice.agency, 0) >= bound:
            decided.append(NoticeFate.SUPPRESSED)
            continue
        counts[notice.agency] = counts.get(notice.agency, 0) + 1
        pending.add(notice.delivery_id)
        decided.append(NoticeFate.QUEUED)
    return decided

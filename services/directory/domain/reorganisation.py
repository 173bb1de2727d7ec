"""Reorganisations (merges, renames, closures, splits) and where mail to a code goes on a day."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common.errors import FieldViolation, ValidationError
from services.directory.domain.codes import DEFAULT_FORMS, CodeForm, code_problem, normalise_code
from services.directory.domain.model import Agency

# A successor chain longer than this is a data error, not a reorganisation history.
MAX_CHAIN = 16
MAX_CODES = 1000
MAX_NOTE_LENGTH = 1000


class ReorganisationKind(enum.StrEnum):
    MERGE = "merge"  # many old codes (or one) into one successor
    RENAME = "rename"  # one old code replaced by one new code
    CLOSE = "close"  # old codes closed, no successor: their mail is refused
    SPLIT = "split"  # one old code into several: mail to it is ambiguous and refused


@dataclass(frozen=True, slots=True)
class Reorganisation:
    kind: ReorganisationKind
    # The first day of the new arrangement: each old code's last valid day is the day before.
    effective_date: dt.date
    old_codes: tuple[str, ...]
    new_codes: tuple[str, ...] = ()
    note: str = ""
    # Assigned by the store.
    id: int = dataclasses.field(default=0, compare=False)

    @property
    def last_day(self) -> dt.date:
        return self.effective_date - dt.timedelta(days=1)

    def closed(self, agency: Agency) -> Agency:
        """`agency` as this reorganisation leaves it: closed, mail going to the new codes."""
        return dataclasses.replace(agency, valid_to=self.last_day, successor_codes=self.new_codes)


def validate_reorganisation(
    reorganisation: Reorganisation, forms: frozenset[CodeForm] = DEFAULT_FORMS
) -> Reorganisation:
    """The reorganisation with normalised codes, or a ValidationError listing every problem."""
    problems: list[FieldViolation] = []
    old = tuple(dict.fromkeys(normalise_code(c) for c in reorganisation.old_codes))
    new = tuple(dict.fromkeys(normalise_code(c) for c in reorganisation.new_codes))
    for name, codes in (("old_codes", old), ("new_codes", new)):
        if len(codes) > MAX_CODES:
            problems.append(FieldViolation(f"reorganisation.{name}", f"at most {MAX_CODES}"))
        for index, code in enumerate(codes):
            if (why := code_problem(code, forms)) is not None:
                problems.append(FieldViolation(f"reorganisation.{name}[{index}]", why))
    kind = reorganisation.kind
    if not old:
        problems.append(FieldViolation("reorganisation.old_codes", "at least one code"))
    wanted_new = {
        ReorganisationKind.MERGE: (len(new) == 1, "exactly one successor"),
        ReorganisationKind.RENAME: (len(new) == 1, "exactly one new code"),
        ReorganisationKind.CLOSE: (not new, "none: a closure has no successor"),
        ReorganisationKind.SPLIT: (len(new) >= 2, "at least two successors"),
    }[kind]
    if not wanted_new[0]:
        problems.append(FieldViolation("reorganisation.new_codes", wanted_new[1]))
    if kind in (ReorganisationKind.RENAME, ReorganisationKind.SPLIT) and len(old) > 1:
        problems.append(FieldViolation("reorganisation.old_codes", f"one code for a {kind}"))
    for code in set(old) & set(new):
        problems.append(
            FieldViolation(
                "reorganisation.new_codes",
                f"{code} is also an old code: a code that carries on is not closed",
            )
        )
    note = reorganisation.note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        problems.append(FieldViolation("reorganisation.note", f"at most {MAX_NOTE_LENGTH}"))
    if problems:
        raise ValidationError("invalid reorganisation", problems)
    return Reorganisation(kind, reorganisation.effective_date, old, new, note)


def reorganisation_problems(
    reorganisation: Reorganisation, found: Mapping[str, Agency]
) -> list[FieldViolation]:
    """What the directory's current state forbids: unknown codes, old codes not open until the
    effective date, successors not open from it."""
    problems: list[FieldViolation] = []
    day = reorganisation.effective_date
    for index, code in enumerate(reorganisation.old_codes):
        agency = found.get(code)
        field = f"reorganisation.old_codes[{index}]"
        if agency is None:
            problems.append(FieldViolation(field, f"unknown agency {code}"))
        elif agency.valid_to is not None and agency != reorganisation.closed(agency):
            problems.append(FieldViolation(field, f"{code} already closed on {agency.valid_to}"))
        elif agency.valid_from > reorganisation.last_day:
            problems.append(FieldViolation(field, f"{code} is valid only from {agency.valid_from}"))
    for index, code in enumerate(reorganisation.new_codes):
        agency = found.get(code)
        field = f"reorganisation.new_codes[{index}]"
        if agency is None:
            problems.append(FieldViolation(field, f"unknown agency {code}: register it first"))
        elif not agency.is_open_on(day):
            problems.append(FieldViolation(field, f"{code} is not open on {day}"))
    return problems


class AddressState(enum.StrEnum):
    """A code's own state on a day."""

    OPEN = "open"
    NOT_YET_VALID = "not_yet_valid"
    CLOSED = "closed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail addressed to `code` goes on a day."""

    code: str
    state: AddressState
    # The open agency that receives it: `code` itself when open, the end of its successor chain
    # when closed; None when it cannot be routed (`problem` says why).
    effective: str | None
    # Codes followed, `code` first and `effective` last (just `code` when open).
    chain: tuple[str, ...] = ()
    # Of `code` itself: its last valid day and its direct successors.
    valid_to: dt.date | None = None
    successor_codes: tuple[str, ...] = ()
    problem: str = ""
    # The peer hub that `effective` is served by (federation, domain/hubs.py); None: this hub.
    hub: str | None = None

    @property
    def redirected(self) -> bool:
        return self.effective is not None and self.effective != self.code


def state_on(agency: Agency | None, day: dt.date) -> AddressState:
    if agency is None:
        return AddressState.UNKNOWN
    if agency.is_closed_on(day):
        return AddressState.CLOSED
    if agency.is_open_on(day):
        return AddressState.OPEN
    return AddressState.NOT_YET_VALID


def next_hops(codes: Sequence[str], known: Mapping[str, Agency], day: dt.date) -> set[str]:
    """Successor codes a resolution of `codes` needs that `known` does not hold yet."""
    wanted: set[str] = set()
    for code in codes:
        seen: set[str] = set()
        current = known.get(code)
        while current is not None and current.code not in seen and len(seen) <= MAX_CHAIN:
            seen.add(current.code)
            if not current.is_closed_on(day) or len(current.successor_codes) != 1:
                break
            successor = current.successor_codes[0]
            if successor not in known:
                wanted.add(successor)
                break
            current = known[successor]
    return wanted


def resolve(code: str, known: Mapping[str, Agency], day: dt.date) -> Resolution:
    """Follows a closed code's single successors (A→B→C) to the agency open on `day`.

    Unroutable: an unknown code, one not yet valid, a closure without successor or with several
    (a split: the sender must choose), a cycle, a chain longer than MAX_CHAIN, or a chain that
    ends at an agency not open on the day."""
    agency = known.get(code)
    state = state_on(agency, day)
    if agency is None:
        return Resolution(code, state, None, (code,), problem="unknown agency")

    def answer(effective: str | None, chain: Sequence[str], problem: str = "") -> Resolution:
        assert agency is not None
        return Resolution(
            code,
            state,
            effective,
            tuple(chain),
            valid_to=agency.valid_to,
            successor_codes=agency.successor_codes,
            problem=problem,
        )

    if state is AddressState.OPEN:
        return answer(code, (code,))
    if state is AddressState.NOT_YET_VALID:
        return answer(None, (code,), f"valid only from {agency.valid_from}")
    effective, chain, problem = _follow(code, agency, known, day)
    return answer(effective, chain, problem)


def _follow(
    code: str, agency: Agency, known: Mapping[str, Agency], day: dt.date
) -> tuple[str | None, list[str], str]:
    """(the agency open on `day` or None, the codes followed, why None) from a closed code."""
    chain = [code]
    current = agency
    while current.is_closed_on(day):
        problem = _no_single_successor(current, chain)
        if problem:
            return None, chain, problem
        successor = current.successor_codes[0]
        following = known.get(successor)
        chain.append(successor)
        if following is None:
            return None, chain, f"successor {successor} is not a registered agency"
        current = following
    if current.is_open_on(day):
        return current.code, chain, ""
    return None, chain, f"successor {current.code} is valid only from {current.valid_from}"


def _no_single_successor(closed: Agency, chain: Sequence[str]) -> str:
    """Why the chain cannot go on from `closed` to its one successor, or ""."""
    successors = closed.successor_codes
    if not successors:
        return f"{closed.code} closed on {closed.valid_to} without successor"
    if len(successors) > 1:
        return (
            f"{closed.code} closed on {closed.valid_to} with several successors "
            f"({', '.join(successors)}): address one of them"
        )
    if successors[0] in chain:
        return f"successor cycle through {successors[0]}"
    if len(chain) > MAX_CHAIN:
        return f"successor chain longer than {MAX_CHAIN}"
    return ""

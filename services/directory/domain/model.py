"""The agency record and its validation."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from docaxis_client.vietnam import VIETNAM as VIETNAM
from docaxis_client.vietnam import today_in_vietnam as today_in_vietnam
from services.common.errors import FieldViolation, ValidationError
from services.directory.domain.codes import DEFAULT_FORMS, CodeForm, code_problem, normalise_code

MAX_NAME_LENGTH = 200


class AgencyKind(enum.StrEnum):
    MINISTRY = "ministry"
    PROVINCE = "province"
    DEPARTMENT = "department"
    DISTRICT = "district"
    WARD = "ward"
    COMMUNE = "commune"
    SPECIAL_ZONE = "special_zone"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Agency:
    code: str
    name: str
    kind: AgencyKind
    valid_from: dt.date
    parent_code: str | None = None
    valid_to: dt.date | None = None
    successor_codes: tuple[str, ...] = ()
    email: str = ""
    version: int = field(default=0, compare=False)
    # The peer hub this agency's mail goes to (its record was pulled from that hub's directory,
    # domain/hubs.py); None for an agency this hub serves. Not a registrant's field.
    served_by: str | None = field(default=None, compare=False)

    def is_open_on(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def is_closed_on(self, day: dt.date) -> bool:
        return self.valid_to is not None and day > self.valid_to

    def same_record(self, other: Agency) -> bool:
        """Equal in everything a registrant supplies (the version is the store's)."""
        return self == other


def validate_agency(agency: Agency, forms: frozenset[CodeForm] = DEFAULT_FORMS) -> Agency:
    """The agency with normalised codes, or a ValidationError listing every problem."""
    problems: list[FieldViolation] = []
    code = normalise_code(agency.code)
    if (why := code_problem(code, forms)) is not None:
        problems.append(FieldViolation("agency.code", why))
    name = normalise_code(agency.name)
    if not name:
        problems.append(FieldViolation("agency.name", "must not be empty"))
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(FieldViolation("agency.name", f"at most {MAX_NAME_LENGTH} characters"))
    parent = normalise_code(agency.parent_code) if agency.parent_code else None
    if parent is not None:
        problems.extend(_parent_problems(parent, code, forms))
    successors = tuple(normalise_code(s) for s in agency.successor_codes)
    problems.extend(_succession_problems(successors, code, agency, forms))
    if problems:
        raise ValidationError("invalid agency", problems)
    return Agency(
        code=code,
        name=name,
        kind=agency.kind,
        valid_from=agency.valid_from,
        parent_code=parent,
        valid_to=agency.valid_to,
        successor_codes=successors,
        email=agency.email.strip(),
    )


def _parent_problems(parent: str, code: str, forms: frozenset[CodeForm]) -> list[FieldViolation]:
    if (why := code_problem(parent, forms)) is not None:
        return [FieldViolation("agency.parent_code", why)]
    if parent == code:
        return [FieldViolation("agency.parent_code", "an agency cannot be its own parent")]
    return []


def _succession_problems(
    successors: tuple[str, ...], code: str, agency: Agency, forms: frozenset[CodeForm]
) -> list[FieldViolation]:
    """The successor codes (normalised) and the validity period they depend on."""
    problems: list[FieldViolation] = []
    for index, successor in enumerate(successors):
        if (why := code_problem(successor, forms)) is not None:
            problems.append(FieldViolation(f"agency.successor_codes[{index}]", why))
        elif successor == code:
            problems.append(
                FieldViolation(
                    f"agency.successor_codes[{index}]", "an agency cannot succeed itself"
                )
            )
    if successors and agency.valid_to is None:
        problems.append(
            FieldViolation(
                "agency.successor_codes", "only a closed agency (valid_to) has successors"
            )
        )
    if agency.valid_to is not None and agency.valid_to < agency.valid_from:
        problems.append(FieldViolation("agency.valid_to", "must not be before valid_from"))
    return problems

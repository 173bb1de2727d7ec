"""Which hub serves an agency (federation, domain.md §1): this hub, or a peer hub.

An agency pulled from a peer's directory is served by that peer (`Agency.served_by`: the hub
the mail goes to next, which may forward it further). A code this hub does not know at all is
routed by rules on its shape: an explicit override for the whole code first, then its level-1
part (`H45` of `000.00.00.H45`: a province or ministry), then its group letter (`H`: every
provincial People's Committee), then a default (`*`), typically the national hub. An override
also beats what a directory pull said, so an operator can always send a code elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from services.common.errors import FieldViolation, ValidationError
from services.directory.domain.codes import DEFAULT_FORMS, CodeForm, code_problem, normalise_code
from services.directory.domain.model import Agency

DEFAULT_PATTERN = "*"
# Hub codes name peers in settings, URIs and queue names: short, lower case, no separators
# RabbitMQ or a URN would read differently.
_HUB_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_LEVEL1 = re.compile(r"[A-Z][0-9]{2}")
_GROUP = re.compile(r"[A-Z]")


def hub_code_problem(code: str) -> str | None:
    if _HUB_CODE.fullmatch(code):
        return None
    return f"{code!r} is not a hub code (1 to 63 of a-z, 0-9 and '-', not starting with '-')"


def level1_of(code: str) -> str | None:
    """The level-1 part of a QCVN 102 code (`H45` of `000.00.00.H45`), or None for other forms."""
    last = code.rsplit(".", 1)[-1]
    return last if len(code) == 13 and _LEVEL1.fullmatch(last) else None


def patterns_of(code: str) -> list[str]:
    """The route patterns that may match `code`, most specific first."""
    patterns = [code]
    level1 = level1_of(code)
    if level1 is not None:
        patterns += [level1, level1[0]]
    return [*patterns, DEFAULT_PATTERN]


def hub_for(code: str, agency: Agency | None, routes: Mapping[str, str]) -> str | None:
    """The peer hub that mail for `code` goes to, or None when this hub serves it."""
    override = routes.get(code)
    if override is not None:
        return override
    if agency is not None:
        return agency.served_by
    for pattern in patterns_of(code)[1:]:
        if pattern in routes:
            return routes[pattern]
    return None


def validate_route(
    pattern: str, hub_code: str, forms: frozenset[CodeForm] = DEFAULT_FORMS
) -> tuple[str, str]:
    """A route (pattern, hub) with a normalised pattern, or a ValidationError: the pattern is a
    whole agency code, a level-1 part (`H45`), a group letter (`H`) or `*`."""
    problems: list[FieldViolation] = []
    pattern = normalise_code(pattern)
    if not (
        pattern == DEFAULT_PATTERN
        or _LEVEL1.fullmatch(pattern)
        or _GROUP.fullmatch(pattern)
        or code_problem(pattern, forms) is None
    ):
        problems.append(
            FieldViolation(
                "route.pattern",
                f"{pattern!r} is not an agency code, a level-1 part like H45, a group letter or *",
            )
        )
    if (why := hub_code_problem(hub_code)) is not None:
        problems.append(FieldViolation("route.hub_code", why))
    if problems:
        raise ValidationError("invalid hub route", problems)
    return pattern, hub_code

"""Routing a document's recipients through the directory, reorganisations included.

A recipient code closed on the day of sending follows its single successors to the agency open
that day (the delivery keeps the code the sender wrote as its requested recipient). A code that
leads nowhere (unknown, not yet valid, closed without successor, split into several) is refused
with INVALID_ADDRESSEE naming the closure and the successors. A recipient another hub serves
(federation: the directory says which) is routed to that hub, the copy's next hop.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from services.common.errors import FieldViolation, RejectedError, ValidationError
from services.exchange.domain.addresses import AddressState, Resolution
from services.exchange.domain.model import Route
from services.exchange.service_layer.ports import DirectoryLookup


async def route_recipients(
    directory: DirectoryLookup, sender: str, recipients: Sequence[str], day: dt.date
) -> tuple[Route, ...]:
    resolutions = await directory.resolve([sender, *recipients], day)
    own = resolutions.get(sender)
    if own is None or own.state is not AddressState.OPEN or own.hub is not None:
        raise RejectedError(
            f"sender {sender} is not a registered, open agency",
            reason="NOT_REGISTERED",
            meta={"sender": sender},
        )
    refused = [resolutions[code] for code in recipients if resolutions[code].effective is None]
    if refused:
        raise invalid_addressee(refused)
    routes = tuple(
        Route(
            code,
            resolutions[code].effective or code,
            str(uuid.uuid4()),
            hub=resolutions[code].hub,
        )
        for code in recipients
    )
    _refuse_shared_successors(routes)
    return routes


async def effective_agency(directory: DirectoryLookup, code: str, on_date: dt.date) -> str | None:
    """The open agency that now stands for `code` (itself when open, its successor when it was
    closed by a reorganisation), or None. For matching late statuses and replies addressed to a
    closed code."""
    return (await directory.resolve([code], on_date))[code].effective


def invalid_addressee(refused: Sequence[Resolution]) -> RejectedError:
    unknown = [r.code for r in refused if r.state is AddressState.UNKNOWN]
    closed = [r.code for r in refused if r.state is AddressState.CLOSED]
    ahead = [r.code for r in refused if r.state is AddressState.NOT_YET_VALID]
    meta = {"unknown": ",".join(unknown), "closed": ",".join(closed)}
    if ahead:
        meta["not_yet_valid"] = ",".join(ahead)
    parts = []
    if unknown:
        parts.append("unknown recipient(s) " + ", ".join(unknown))
    for r in refused:
        if r.state is AddressState.UNKNOWN:
            continue
        meta[f"successors.{r.code}"] = ",".join(r.successor_codes)
        if r.valid_to is not None:
            meta[f"closed_on.{r.code}"] = r.valid_to.isoformat()
        meta[f"problem.{r.code}"] = r.problem
        if r.state is AddressState.CLOSED:
            parts.append(
                f"recipient {r.code} closed on {r.valid_to} (successors: "
                f"{', '.join(r.successor_codes) or 'none'}): {r.problem}"
            )
        else:
            parts.append(f"recipient {r.code} is not open yet: {r.problem}")
    return RejectedError("; ".join(parts), reason="INVALID_ADDRESSEE", meta=meta)


def _refuse_shared_successors(routes: Sequence[Route]) -> None:
    """Two written codes that now reach one agency (two merged wards, or a ward and its
    successor) would be two copies for one recipient: the sender addresses it once."""
    first: dict[str, int] = {}
    problems: list[FieldViolation] = []
    for index, route in enumerate(routes):
        earlier = first.setdefault(route.effective_recipient, index)
        if earlier != index:
            problems.append(
                FieldViolation(
                    f"header.recipients[{index}]",
                    f"{route.requested_recipient} now reaches {route.effective_recipient}, as "
                    f"does header.recipients[{earlier}] ({routes[earlier].requested_recipient}): "
                    "address it once",
                )
            )
    if problems:
        raise ValidationError("recipients reach the same agency", problems)

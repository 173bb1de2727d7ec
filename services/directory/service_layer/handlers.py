"""Directory use cases."""

from __future__ import annotations

import base64
import builtins
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.common.errors import (
    ConflictError,
    FieldViolation,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from services.directory.domain.codes import DEFAULT_FORMS, CodeForm, code_problem, normalise_code
from services.directory.domain.hubs import hub_for, validate_route
from services.directory.domain.model import Agency, validate_agency
from services.directory.domain.reorganisation import (
    MAX_CHAIN,
    Reorganisation,
    Resolution,
    next_hops,
    reorganisation_problems,
    resolve,
    validate_reorganisation,
)
from services.directory.service_layer.ports import (
    Agencies,
    AgencyExistsError,
    HubRoutes,
    StaleAgencyError,
)

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Registration:
    agency: Agency
    created: bool


@dataclass(frozen=True, slots=True)
class Page:
    agencies: list[Agency]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class RecordedReorganisation:
    reorganisation: Reorganisation
    # The old codes' agencies as they are now (closed), then the successors.
    agencies: list[Agency]
    # False when the same reorganisation had already been recorded.
    created: bool


@dataclass(frozen=True, slots=True)
class SyncPage:
    """A page of the delta feed: agencies changed since a version, by version."""

    agencies: list[Agency]
    # Ask again from here; equals the request's version when nothing changed.
    next_since_version: int
    latest_version: int
    more: bool


# A page of a peer's delta feed: (agencies with the hub that serves each as the peer sees it,
# None for the peer itself; next_since_version; more).
PeerPage = tuple[list[tuple[Agency, str | None]], int, bool]


class DirectoryHandlers:
    def __init__(
        self,
        agencies: Agencies,
        forms: frozenset[CodeForm] = DEFAULT_FORMS,
        *,
        hubs: HubRoutes | None = None,
        own_hub: str = "",
    ) -> None:
        """`hubs` and `own_hub` (this hub's code) for a federated hub; without them every
        agency is served here."""
        self._agencies = agencies
        self._forms = forms
        self._hubs = hubs
        self._own_hub = own_hub

    @property
    def forms(self) -> frozenset[CodeForm]:
        """The code forms this deployment accepts."""
        return self._forms

    async def register(self, agency: Agency) -> Registration:
        candidate = validate_agency(agency, self._forms)
        existing = await self._agencies.get(candidate.code)
        if existing is not None:
            if existing.same_record(candidate):
                return Registration(existing, created=False)
            raise ConflictError(
                f"agency {candidate.code} is already registered with other details",
                meta={"code": candidate.code},
            )
        if (
            candidate.parent_code is not None
            and await self._agencies.get(candidate.parent_code) is None
        ):
            raise ValidationError(
                "invalid agency",
                [FieldViolation("agency.parent_code", f"unknown agency {candidate.parent_code}")],
            )
        try:
            return Registration(await self._agencies.add(candidate), created=True)
        except AgencyExistsError:
            # A concurrent registration of the same code committed first: answer as if it had
            # been there when we looked.
            winner = await self._agencies.get(candidate.code)
            if winner is not None and winner.same_record(candidate):
                return Registration(winner, created=False)
            raise ConflictError(
                f"agency {candidate.code} is already registered with other details",
                meta={"code": candidate.code},
            ) from None

    async def get(self, code: str) -> Agency:
        normalised = self._checked_code(code, "code")
        agency = await self._agencies.get(normalised)
        if agency is None:
            raise NotFoundError(f"no agency {normalised}", meta={"code": normalised})
        return agency

    async def get_many(self, codes: Sequence[str]) -> tuple[list[Agency], list[str]]:
        if len(codes) > MAX_BATCH:
            raise ValidationError(
                "too many codes", [FieldViolation("codes", f"at most {MAX_BATCH} per call")]
            )
        normalised = [normalise_code(code) for code in codes]
        found = await self._agencies.get_many(normalised)
        unknown = [code for code in dict.fromkeys(normalised) if code not in found]
        return [found[code] for code in dict.fromkeys(normalised) if code in found], unknown

    async def list(
        self,
        *,
        parent_code: str | None,
        include_closed: bool,
        page_size: int,
        page_token: str,
        today: dt.date,
    ) -> Page:
        problems: list[FieldViolation] = []
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            problems.append(FieldViolation("page_size", f"must be between 0 and {MAX_PAGE_SIZE}"))
        after = ""
        if page_token:
            # A token names the last code listed; anything else (undecodable, or with a NUL
            # byte, which Postgres text cannot hold) was not issued here.
            try:
                after = base64.b64decode(page_token, altchars=b"-_", validate=True).decode()
                issued = code_problem(after, self._forms) is None
            except (ValueError, UnicodeDecodeError):
                issued = False
            if not issued:
                problems.append(FieldViolation("page_token", "not a token this service issued"))
        parent = normalise_code(parent_code) if parent_code else None
        if parent is not None and (why := code_problem(parent, self._forms)) is not None:
            problems.append(FieldViolation("parent_code", why))
        if problems:
            raise ValidationError("invalid list request", problems)
        limit = page_size or DEFAULT_PAGE_SIZE
        rows = await self._agencies.list(
            parent_code=parent,
            open_on=None if include_closed else today,
            after_code=after,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        token = base64.urlsafe_b64encode(rows[-1].code.encode()).decode() if more else ""
        return Page(rows, token)

    def _checked_code(self, code: str, field: str) -> str:
        normalised = normalise_code(code)
        if (why := code_problem(normalised, self._forms)) is not None:
            raise ValidationError("invalid agency code", [FieldViolation(field, why)])
        return normalised

    async def record_reorganisation(self, reorganisation: Reorganisation) -> RecordedReorganisation:
        """Closes the old codes from the effective date with the new codes as successors, in one
        transaction that is also a `directory` ledger event. Recording the same reorganisation
        again changes nothing."""
        candidate = validate_reorganisation(reorganisation, self._forms)
        for _attempt in range(3):
            found = await self._agencies.get_many([*candidate.old_codes, *candidate.new_codes])
            problems = reorganisation_problems(candidate, found)
            if problems:
                raise ValidationError("reorganisation refused", problems)
            old = [found[code] for code in candidate.old_codes]
            successors = [found[code] for code in candidate.new_codes]
            if all(agency == candidate.closed(agency) for agency in old):
                return RecordedReorganisation(candidate, [*old, *successors], created=False)
            try:
                recorded, closed = await self._agencies.record_reorganisation(
                    candidate, [candidate.closed(agency) for agency in old]
                )
            except StaleAgencyError:
                continue  # an agency changed between our read and the write: look again
            return RecordedReorganisation(recorded, [*closed, *successors], created=True)
        raise UnavailableError(
            "the agencies of this reorganisation keep changing; try again",
            meta={"old_codes": ",".join(candidate.old_codes)},
        )

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> builtins.list[Resolution]:
        """Where mail addressed to each code goes on `on_date`: successor chains are followed
        (one lookup per chain step for the whole batch, bounded)."""
        if len(codes) > MAX_BATCH:
            raise ValidationError(
                "too many codes", [FieldViolation("codes", f"at most {MAX_BATCH} per call")]
            )
        normalised = list(dict.fromkeys(normalise_code(code) for code in codes))
        known = dict(await self._agencies.get_many(normalised))
        for _step in range(MAX_CHAIN + 1):
            wanted = next_hops(normalised, known, on_date)
            if not wanted:
                break
            fetched = await self._agencies.get_many(sorted(wanted))
            known.update(fetched)
            # Unknown successors stay unknown: resolve reports them.
            if not fetched:
                break
        resolutions = [resolve(code, known, on_date) for code in normalised]
        if self._hubs is None:
            return resolutions
        routes = await self._hubs.routes()
        return [self._with_hub(r, known, routes) for r in resolutions]

    def _with_hub(
        self, resolution: Resolution, known: dict[str, Agency], routes: dict[str, str]
    ) -> Resolution:
        """The resolution with the hub that serves its end: a code (or the successor a chain
        ends at) this directory does not know goes to the hub its shape routes to, which
        decides there (federation)."""
        end = resolution.effective
        if end is None:
            last = resolution.chain[-1] if resolution.chain else resolution.code
            if last in known:  # not yet valid, closed without successor, split, a cycle
                return resolution
            end = last
        hub = hub_for(end, known.get(end), routes)
        if hub == self._own_hub:
            hub = None
        if hub is None:
            return resolution
        return dataclasses.replace(resolution, effective=end, hub=hub, problem="")

    async def effective_agency(self, code: str, on_date: dt.date) -> str | None:
        """The open agency that now stands for `code` (itself when open): for matching late
        statuses and replies addressed to a closed code. None when there is none."""
        (resolution,) = await self.resolve([code], on_date)
        return resolution.effective

    async def sync(self, *, since_version: int, page_size: int) -> SyncPage:
        problems: builtins.list[FieldViolation] = []
        if since_version < 0:
            problems.append(FieldViolation("since_version", "must be >= 0"))
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            problems.append(FieldViolation("page_size", f"must be between 0 and {MAX_PAGE_SIZE}"))
        if problems:
            raise ValidationError("invalid sync request", problems)
        limit = page_size or DEFAULT_PAGE_SIZE
        latest = await self._agencies.latest_version()
        rows = await self._agencies.changes(since_version, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_since = rows[-1].version if rows else since_version
        return SyncPage(rows, next_since, max(latest, next_since), more)

    async def routes(self) -> dict[str, str]:
        return {} if self._hubs is None else await self._hubs.routes()

    async def set_route(self, pattern: str, hub_code: str, updated_by: str) -> tuple[str, str]:
        """Routes codes matching `pattern` to a peer hub (an empty hub code removes the route):
        recorded in the ledger."""
        if self._hubs is None:
            raise ValidationError(
                "this directory is not federated",
                [FieldViolation("route", "set DOCAXIS_HUB_CODE to route to other hubs")],
            )
        if not hub_code:
            pattern, _ = validate_route(pattern, "removed", self._forms)
            await self._hubs.set_route(pattern, None, updated_by)
            return pattern, ""
        pattern, hub_code = validate_route(pattern, hub_code, self._forms)
        await self._hubs.set_route(pattern, hub_code, updated_by)
        return pattern, hub_code

    async def pull_peer(
        self, hub_code: str, fetch: Callable[[int], Awaitable[PeerPage]], *, max_pages: int = 100
    ) -> int:
        """Applies a peer's delta feed from where the last pull stopped; returns how many
        agencies changed here. Split horizon: what the peer itself routes to this hub is not
        taken back (this hub serves it, or knows better where it is)."""
        assert self._hubs is not None
        changed = 0
        since = await self._hubs.peer_since(hub_code)
        for _page in range(max_pages):
            agencies, next_since, more = await fetch(since)
            taken = [
                agency
                for agency, served_by in agencies
                if served_by != self._own_hub and code_problem(agency.code, self._forms) is None
            ]
            changed += await self._hubs.apply_peer_page(hub_code, taken, next_since)
            since = next_since
            if not more:
                break
        return changed

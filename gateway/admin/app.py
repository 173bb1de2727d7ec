"""The admin console at /admin/: server-rendered pages over the services' gRPC contracts, as
the administrator who signed in (the gateway forwards the administrator's certificate; see
docaxis_client/delegation.py).

Security: every request is authenticated by the administrator's client certificate and a
session cookie bound to it (gateway/admin/session.py); every form that changes something carries
the session's CSRF token and must come from this origin; pages are never cached and may not be
framed; the Content-Security-Policy allows no script at all.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from docaxis_client.vietnam import VIETNAM
from gateway.admin.i18n import Language, Translator, language_of
from gateway.admin.ledger_proof import LedgerProofs
from gateway.admin.session import COOKIE, Session, SessionSigner
from gateway.auth import Administrator
from gateway.problems import Problem
from gateway.rest.app import Context, check_text, cross_origin

log = structlog.get_logger(__name__)

LANGUAGE_COOKIE = "docaxis-lang"

_HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, Chromium sends "Origin: null" on form posts, which the CSRF
    # check must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def vietnam_time(value: dt.datetime | None) -> str:
    """dd/MM/yyyy HH:mm:ss in Vietnam time, as Vietnamese administrators read dates."""
    if value is None:
        return "–"
    return value.astimezone(VIETNAM).strftime("%d/%m/%Y %H:%M:%S")


def vietnam_month(now: dt.datetime) -> str:
    return now.astimezone(VIETNAM).strftime("%Y-%m")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["vntime"] = vietnam_time
    environment.filters["pbtime"] = lambda stamp: vietnam_time(
        stamp.ToDatetime(dt.UTC) if stamp.seconds or stamp.nanos else None
    )
    return environment


@dataclass(frozen=True, slots=True)
class Page:
    """What a page handler gets: who is signed in, in which language, and the session."""

    request: Request
    admin: Administrator
    session: Session
    t: Translator

    def query(self, name: str) -> str:
        return self.request.query_params.get(name, "").strip()


Handler = Callable[["Console", Page], Awaitable[Response]]


class Console:
    def __init__(self, ctx: Context, signer: SessionSigner, ledger: LedgerProofs) -> None:
        self.ctx = ctx
        self.signer = signer
        self.ledger = ledger
        self.templates = _environment()

    # ---- rendering ---------------------------------------------------------------------------

    def translator(self, request: Request) -> Translator:
        chosen = language_of(request.query_params.get("lang")) or language_of(
            request.cookies.get(LANGUAGE_COOKIE)
        )
        return Translator(chosen or Language.VI)

    def render(
        self,
        request: Request,
        template: str,
        t: Translator,
        *,
        status: int = 200,
        session: Session | None = None,
        admin: Administrator | None = None,
        **values: Any,
    ) -> HTMLResponse:
        other = {**dict(request.query_params), "lang": t.other.value}
        html = self.templates.get_template(template).render(
            t=t,
            lang=t.language.value,
            switch_url=f"{request.url.path}?{urlencode(other)}",
            path=request.url.path,
            admin=admin,
            csrf=session.csrf if session else "",
            **values,
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if "lang" in request.query_params and language_of(request.query_params["lang"]):
            response.set_cookie(
                LANGUAGE_COOKIE,
                t.language.value,
                max_age=365 * 86400,
                secure=True,
                httponly=True,
                samesite="strict",
                path="/admin",
            )
        if session is not None and admin is not None:
            self._set_session(response, admin, session.csrf)
        return response

    def _set_session(self, response: Response, admin: Administrator, csrf: str | None) -> None:
        value = self.signer.issue(admin.fingerprint, dt.datetime.now(dt.UTC), csrf)
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(self.signer.idle.total_seconds()),
            secure=True,
            httponly=True,
            samesite="strict",
            path="/",
        )

    def error(self, request: Request, problem: Problem, **context: Any) -> HTMLResponse:
        self.ctx.metrics.count_rejection(problem)
        return self.render(
            request,
            "error.html",
            self.translator(request),
            status=problem.status,
            problem=problem,
            **context,
        )

    # ---- authentication ----------------------------------------------------------------------

    def _administrator(self, request: Request) -> Administrator:
        return self.ctx.authenticator.administrator(request.scope)

    def page(
        self, handler: Handler, *, changes: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A console page: signed in with this certificate, or sent to the sign-in page.
        `changes`: a POST that changes something, which must carry the CSRF token."""

        async def endpoint(request: Request) -> Response:
            t = self.translator(request)
            try:
                check_text(request)
            except Problem as problem:
                return self.error(request, problem)
            try:
                admin = self._administrator(request)
            except Problem as problem:
                return self._refused(request, t, problem)
            session = self.signer.open(
                request.cookies.get(COOKIE), admin.fingerprint, dt.datetime.now(dt.UTC)
            )
            if session is None:
                if changes:
                    return self.error(request, Problem(403, "SESSION_REQUIRED", t("login.expired")))
                return RedirectResponse(
                    f"/admin/login?{urlencode({'next': request.url.path, 'expired': '1'})}", 303
                )
            if changes:
                form = await request.form()
                token = str(form.get("csrf", ""))
                if not hmac.compare_digest(token, session.csrf) or not _same_origin(request):
                    return self.error(
                        request, Problem(403, "CSRF", "the form is stale; reload the page")
                    )
            try:
                response = await handler(self, Page(request, admin, session, t))
            except Problem as problem:
                return self.error(request, problem, admin=admin, session=session)
            # Each request moves the idle expiry, unless the response set (or, signing out,
            # deleted) the session cookie itself.
            cookies = response.headers.getlist("set-cookie")
            if not any(cookie.startswith(f"{COOKIE}=") for cookie in cookies):
                self._set_session(response, admin, session.csrf)
            return response

        return endpoint

    def _refused(self, request: Request, t: Translator, problem: Problem) -> HTMLResponse:
        """The sign-in page saying why this certificate (or none) does not get in."""
        key = "login.not_admin" if problem.status == 403 else "login.no_certificate"
        self.ctx.metrics.count_rejection(problem)
        return self.render(
            request,
            "login.html",
            t,
            status=problem.status,
            refused=t(key),
            detail=problem.detail,
            expired=False,
            next_path="",
        )

    async def login_form(self, request: Request) -> Response:
        t = self.translator(request)
        expired = request.query_params.get("expired") == "1"
        try:
            admin = self._administrator(request)
        except Problem as problem:
            return self._refused(request, t, problem)
        return self.render(
            request,
            "login.html",
            t,
            refused="",
            detail="",
            expired=expired,
            subject=admin.subject,
            serial=admin.serial,
            next_path=_safe_next(request.query_params.get("next")),
        )

    async def login(self, request: Request) -> Response:
        try:
            admin = self._administrator(request)
        except Problem as problem:
            return self.error(request, problem)
        if not _same_origin(request):
            return self.error(request, Problem(403, "CSRF", "sign in from the console's own page"))
        form = await request.form()
        response = RedirectResponse(_safe_next(str(form.get("next", ""))), 303)
        self._set_session(response, admin, None)
        log.info("admin_signed_in", subject=admin.subject, serial=admin.serial)
        return response

    def show(self, page: Page, template: str, **values: Any) -> HTMLResponse:
        """A page of the signed-in console."""
        return self.render(
            page.request, template, page.t, session=page.session, admin=page.admin, **values
        )

    async def logout(self, page: Page) -> Response:
        self.signer.end(page.session, dt.datetime.now(dt.UTC))
        response = RedirectResponse("/admin/login", 303)
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        log.info("admin_signed_out", subject=page.admin.subject, serial=page.admin.serial)
        return response


def _same_origin(request: Request) -> bool:
    """Browsers send Origin with every POST; a form posted from another site names that site.
    The console is for browsers only, so a form without Origin is refused too."""
    return "origin" in request.headers and not cross_origin(request)


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if value and value.startswith("/admin/") and "//" not in value and "\\" not in value:
        return value
    return "/admin/documents"


def admin_mount(
    ctx: Context,
    signer: SessionSigner,
    ledger: LedgerProofs,
    pages: list[tuple[str, Handler, list[str]]],
) -> Mount:
    """The console under /admin, with `pages` (path, handler, methods: gateway/admin/pages.py)."""
    console = Console(ctx, signer, ledger)
    routes = [
        Route("/", lambda request: RedirectResponse("/admin/documents", 303)),
        Route("/login", console.login_form, methods=["GET"]),
        Route("/login", console.login, methods=["POST"]),
        Route(
            "/logout",
            console.page(lambda _, page: console.logout(page), changes=True),
            methods=["POST"],
        ),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    for path, handler, methods in pages:
        routes.append(
            Route(path, console.page(handler, changes="POST" in methods), methods=methods)
        )
    return Mount("/admin", app=Starlette(routes=routes), name="admin")

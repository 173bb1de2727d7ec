"""Administrator sessions: a signed cookie bound to the client certificate that signed in.

The certificate authenticates every request anyway (mutual TLS); the session adds an explicit
sign-in and sign-out, an idle timeout, and the CSRF token that the console's forms carry. The
signing key is random per gateway process, so a restart signs everyone out. The only state kept
is the sessions signed out before they expire: their cookies (a copy kept by the browser, or
taken from it) are refused from the sign-out on, not only once they idle out.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

COOKIE = "__Host-docaxis-admin"


@dataclass(frozen=True, slots=True)
class Session:
    fingerprint: bytes
    csrf: str
    expires: dt.datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, idle: dt.timedelta, key: bytes | None = None) -> None:
        self.idle = idle
        self._key = key or secrets.token_bytes(32)
        # Sessions signed out (by their CSRF token, which every refresh keeps), until the
        # latest moment a cookie of theirs could still be valid.
        self._ended: dict[str, dt.datetime] = {}

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, fingerprint: bytes, now: dt.datetime, csrf: str | None = None) -> str:
        """A cookie value for the certificate `fingerprint`, valid for the idle time from now
        (a refresh keeps the CSRF token)."""
        body = {
            "f": _b64(fingerprint),
            "c": csrf or secrets.token_urlsafe(24),
            "e": int((now + self.idle).timestamp()),
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def open(self, cookie: str | None, fingerprint: bytes, now: dt.datetime) -> Session | None:
        """The session the cookie carries, if this signer made it, it has not expired and it
        belongs to the certificate presented now; None otherwise."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            body = json.loads(_unb64(payload))
            session = Session(
                _unb64(body["f"]), str(body["c"]), dt.datetime.fromtimestamp(body["e"], dt.UTC)
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.expires <= now or not hmac.compare_digest(session.fingerprint, fingerprint):
            return None
        if session.csrf in self._ended:
            return None
        return session

    def end(self, session: Session, now: dt.datetime) -> None:
        """Signs `session` out: no cookie of it opens again, whatever its expiry says."""
        self._ended = {csrf: until for csrf, until in self._ended.items() if until > now}
        self._ended[session.csrf] = now + self.idle

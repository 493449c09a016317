"""Who may use the web page and the API, and which requests are the site's own.

A token (or password) set with TASUKI_WEB_TOKEN guards both: the API takes
`Authorization: Bearer <token>`, the page a session cookie set by its login form. With no token
the page is open, which is allowed only while Tasuki listens on this machine alone (127.0.0.1,
localhost, ::1). Beside that, whatever the token:

- the `Host` header must be a name this Tasuki answers to (`host_refusal`: TASUKI_HOST, the host
  of TASUKI_PUBLIC_URL, localhost, TASUKI_ALLOWED_HOSTS), so a DNS-rebinding page on another
  name cannot reach it;
- a request that changes something (`cross_site_refusal`) must come from the site itself: an
  `Origin` (or `Sec-Fetch-Site`) naming another site is refused, the API's calls must say
  `Content-Type: application/json` (which another site's page cannot send without asking first)
  unless they carry the bearer token, and the page's forms carry a CSRF token;
- a session expires after TASUKI_SESSION_HOURS, ends when its person signs out (the store
  remembers it ended), is `Secure` when the site is served over https, and a login's `next=`
  only ever leads to a page of this site (`safe_next`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from tasuki.shared.errors import ConfigError
from tasuki.shared.settings import LOOPBACK, Settings

COOKIE = "tasuki_session"
LOCAL_HOSTS = frozenset(LOOPBACK)
# Methods that change nothing; every other one must come from the site itself.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION = re.compile(r"^v1\.(\d{1,12})\.([A-Za-z0-9_-]{16,64})\.([0-9a-f]{64})$")


class Refusal(NamedTuple):
    """A request refused before any view sees it: the HTTP status and why."""

    status: int
    message: str


def check_configuration(settings: Settings) -> None:
    if not settings.web_token and settings.host not in LOCAL_HOSTS:
        raise ConfigError(
            f"TASUKI_WEB_TOKEN: the web page listens on {settings.host}, beyond this machine, so it "
            f"needs a token or password; set TASUKI_WEB_TOKEN (or listen on 127.0.0.1)"
        )


# --- the Host header -------------------------------------------------------------------------------


def allowed_hosts(settings: Settings) -> set[str]:
    """The names the web page answers to (lower case, no port)."""
    names = set(LOCAL_HOSTS)
    if settings.host not in ("", "0.0.0.0", "::"):
        names.add(settings.host.lower())
    if settings.public_url:
        names.add((urlsplit(settings.public_url).hostname or "").lower())
    names.update(part.strip().lower() for part in settings.allowed_hosts.split(",") if part.strip())
    names.discard("")
    return names


def host_name(host: str) -> str:
    """`example.com:8000` -> `example.com`, `[::1]:8000` -> `::1`, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_refusal(settings: Settings, host: str) -> Refusal | None:
    """A 400 unless the Host header names this Tasuki."""
    name = host_name(host)
    if name in allowed_hosts(settings):
        return None
    return Refusal(
        400,
        f"this Tasuki does not answer to the name {name or '(none)'!r}: add it to TASUKI_ALLOWED_HOSTS, or "
        f"set TASUKI_PUBLIC_URL to the address people use",
    )


# --- requests from the site itself ------------------------------------------------------------------


def scheme(settings: Settings, request: Any) -> str:
    """How the request reached Tasuki: https directly, or through a trusted proxy that says so."""
    if settings.trust_proxy:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if forwarded in ("http", "https"):
            return forwarded
    return request.scheme


def same_origins(settings: Settings, request: Any) -> set[str]:
    """The origins of this site: the one the request was sent to, and TASUKI_PUBLIC_URL's."""
    origins = {f"{scheme(settings, request)}://{request.host.lower()}"}
    if settings.public_url:
        public = urlsplit(settings.public_url)
        origins.add(f"{public.scheme}://{public.netloc}".lower())
    return origins


def cross_site_refusal(settings: Settings, request: Any, *, api: bool, bearer: bool) -> Refusal | None:
    """A request that changes something must be the site's own: a 403 for one a browser says
    comes from another site, a 415 for an API call without a JSON body type (unless it carries
    the bearer token, which no other site's page can send)."""
    if request.method in SAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site and site not in ("same-origin", "none"):
        return Refusal(403, f"refused: the browser says this request comes from another site ({site})")
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/").lower() not in same_origins(settings, request):
        return Refusal(403, f"refused: the request comes from another site ({origin[:100]})")
    if api and not bearer:
        kind = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return Refusal(
                415,
                f"send Content-Type: application/json with calls that change something (found {kind or 'none'}), "
                f"or Authorization: Bearer <token>",
            )
    return None


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site, else `/`. Refuses what a browser would
    read as another site: `//evil`, `/\\evil`, `/\\t/evil`, `https://evil`, `javascript:`."""
    if not target or not target.startswith("/") or len(target) > 2000:
        return "/"
    if "\\" in target or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return "/"
    if target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


# --- who is signed in ------------------------------------------------------------------------------


def _mac(key: str, purpose: str) -> str:
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def token_matches(settings: Settings, given: str) -> bool:
    return bool(settings.web_token) and hmac.compare_digest(given.encode(), settings.web_token.encode())


def bearer_ok(settings: Settings, headers: Any) -> bool:
    scheme_word, _, token = (headers.get("Authorization") or "").partition(" ")
    return scheme_word.lower() == "bearer" and token_matches(settings, token.strip())


def new_session(settings: Settings, now: float | None = None) -> str:
    """A session cookie's value: when it was made, its id, signed with the token (a new token
    ends every session)."""
    issued = int(time.time() if now is None else now)
    session_id = secrets.token_urlsafe(18)
    return f"v1.{issued}.{session_id}.{_mac(settings.web_token, f'tasuki-session|{issued}|{session_id}')}"


def session(settings: Settings, value: str, now: float | None = None) -> tuple[str, datetime] | None:
    """The id and expiry of a valid, unexpired session cookie; None otherwise."""
    match = _SESSION.match(value or "")
    if not match or not settings.web_token:
        return None
    issued, session_id, mac = int(match.group(1)), match.group(2), match.group(3)
    if not hmac.compare_digest(mac, _mac(settings.web_token, f"tasuki-session|{issued}|{session_id}")):
        return None
    now = time.time() if now is None else now
    expires = issued + settings.session_hours * 3600
    if not issued - 60 <= now < expires:
        return None
    return session_id, datetime.fromtimestamp(expires, UTC)


def allowed(
    settings: Settings, headers: Any, cookies: Mapping[str, str], ended: Callable[[str], bool] = lambda sid: False
) -> bool:
    """May this request use the page and the API: no token set, the bearer token, or a valid
    session that was not ended by signing out (`ended`, the store's memory of that)."""
    if not settings.web_token:
        return True
    if bearer_ok(settings, headers):
        return True
    found = session(settings, cookies.get(COOKIE, ""))
    return found is not None and not ended(found[0])


def csrf_token(key: str) -> str:
    return _mac(key, "tasuki-csrf")[:32]


def csrf_ok(key: str, given: str) -> bool:
    return hmac.compare_digest(given.encode(), csrf_token(key).encode())

"""Who may use the web page and the API.

A token (or password) set with TASUKI_WEB_TOKEN guards both: the API takes
`Authorization: Bearer <token>`, the page a session cookie set by its login form. With no token
the page is open, which is allowed only while Tasuki listens on this machine alone (127.0.0.1,
localhost, ::1). Forms carry a CSRF token, so another site cannot post to the page.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from tasuki.shared.errors import ConfigError
from tasuki.shared.settings import LOOPBACK, Settings

COOKIE = "tasuki_session"
LOCAL_HOSTS = frozenset(LOOPBACK)


def check_configuration(settings: Settings) -> None:
    if not settings.web_token and settings.host not in LOCAL_HOSTS:
        raise ConfigError(
            f"TASUKI_WEB_TOKEN: the web page listens on {settings.host}, beyond this machine, so it "
            f"needs a token or password; set TASUKI_WEB_TOKEN (or listen on 127.0.0.1)"
        )


def _mac(key: str, purpose: str) -> str:
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def session_cookie(settings: Settings) -> str:
    return _mac(settings.web_token, "tasuki-session")


def token_matches(settings: Settings, given: str) -> bool:
    return bool(settings.web_token) and hmac.compare_digest(given.encode(), settings.web_token.encode())


def allowed(settings: Settings, headers: Any, cookies: Mapping[str, str]) -> bool:
    if not settings.web_token:
        return True
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token_matches(settings, token.strip()):
        return True
    return hmac.compare_digest(cookies.get(COOKIE, "").encode(), session_cookie(settings).encode())


def csrf_token(key: str) -> str:
    return _mac(key, "tasuki-csrf")[:32]


def csrf_ok(key: str, given: str) -> bool:
    return hmac.compare_digest(given.encode(), csrf_token(key).encode())

"""Google-signed OIDC tokens: what a Pub/Sub push subscription or a Cloud Scheduler job sends.

On Google Cloud, whatever Google itself delivers to a function (a Cloud Scheduler job, a real
Pub/Sub push subscription) carries `Authorization: Bearer <Google-signed ID token>`, not the
bridge's HS256 token. A function accepts one when `TASUKI_PUSH_OIDC_SERVICE_ACCOUNT` is set and
the token

- is signed (RS256) by one of Google's keys, published at `TASUKI_PUSH_OIDC_CERTS_URL`
  (`{"key id": "x509 certificate"}`; a setting so that tests serve their own on loopback),
- was issued by Google (`iss` https://accounts.google.com or accounts.google.com), has not
  expired, and names the expected audience (`TASUKI_PUSH_OIDC_AUDIENCE`, by default the
  function's endpoint URL, as Pub/Sub and Cloud Scheduler send by default),
- names the allowed service account as `email`, with `email_verified` true.

The signature, expiry and audience are checked by `google-auth` (`google.auth.jwt.decode`);
the issuer and the account here. The certificates are fetched on first use and kept for as long
as the answer's `Cache-Control: max-age` says (within bounds), so a push costs no extra request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from google.auth import exceptions as google_exceptions
from google.auth import jwt as google_jwt

from tasuki.shared.errors import AuthError

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
CLOCK_SKEW = 10  # seconds
MAX_CERTS_BYTES = 256 * 1024  # Google's answer is about 4 KB
CERTS_TTL_BOUNDS = (60.0, 6 * 3600.0)  # seconds; Google says about 5 hours
FETCH_TIMEOUT = 5.0

Clock = Callable[[], float]


class Certificates:
    """The signing certificates published at one URL, fetched on first use and kept for their
    max-age; thread-safe (functions serve requests from several threads)."""

    def __init__(self, url: str, *, clock: Clock = time.monotonic) -> None:
        self.url = url
        self.clock = clock
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._expires = 0.0

    def get(self) -> dict[str, str]:
        with self._lock:
            if not self._certs or self.clock() >= self._expires:
                self._certs, ttl = self._fetch()
                self._expires = self.clock() + ttl
            return self._certs

    def _fetch(self) -> tuple[dict[str, str], float]:
        try:
            with requests.get(self.url, timeout=FETCH_TIMEOUT, stream=True) as answer:
                answer.raise_for_status()
                body = answer.raw.read(MAX_CERTS_BYTES + 1, decode_content=True)
                cache_control = answer.headers.get("Cache-Control", "")
        except requests.RequestException as exc:
            raise AuthError(f"cannot fetch the OIDC signing certificates from {self.url}: {exc}") from None
        if len(body) > MAX_CERTS_BYTES:
            raise AuthError(f"the OIDC signing certificates at {self.url} are over {MAX_CERTS_BYTES} bytes")
        try:
            certs = json.loads(body)
        except ValueError:
            raise AuthError(f"expected JSON certificates at {self.url}, found something else") from None
        if not isinstance(certs, dict) or not certs or not all(isinstance(v, str) for v in certs.values()):
            raise AuthError(f'expected {{"key id": "x509 certificate", ...}} at {self.url}')
        return certs, max_age(cache_control)


def max_age(cache_control: str) -> float:
    """How long to keep an answer with this Cache-Control header, within CERTS_TTL_BOUNDS."""
    low, high = CERTS_TTL_BOUNDS
    found = re.search(r"max-age=(\d+)", cache_control)
    return min(max(float(found.group(1)) if found else low, low), high)


def is_google(claims: Mapping[str, Any]) -> bool:
    """Whether unverified claims say Google issued the token (which check to apply, not a check)."""
    return claims.get("iss") in GOOGLE_ISSUERS


class GoogleTokens:
    """Verifies Google-signed ID tokens for one allowed service account."""

    def __init__(self, service_account: str, certificates: Certificates, *, audience: str = "") -> None:
        self.service_account = service_account
        self.certificates = certificates
        self.audience = audience  # empty: each function's endpoint URL

    def verify(self, token: str, endpoint: str) -> Mapping[str, Any]:
        audience = self.audience or endpoint
        try:
            claims = google_jwt.decode(
                token, certs=self.certificates.get(), audience=audience, clock_skew_in_seconds=CLOCK_SKEW
            )
        except (google_exceptions.GoogleAuthError, ValueError) as exc:
            raise AuthError(f"invalid Google-signed push token: {reason(exc, audience)}") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise AuthError(f"the push token was not issued by Google (iss {claims.get('iss')!r})")
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            raise AuthError(
                f"the push token is for {claims.get('email')!r}, expected the verified service account "
                f"{self.service_account} (TASUKI_PUSH_OIDC_SERVICE_ACCOUNT)"
            )
        return claims


def reason(exc: Exception, audience: str) -> str:
    text = str(exc)
    if "wrong audience" in text:
        return f"not for this endpoint (expected audience {audience})"
    if "expired" in text.lower():
        return "the token has expired"
    return text

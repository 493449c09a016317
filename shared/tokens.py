"""Push tokens: the bridge signs, every pushed-to handler verifies.

As a Pub/Sub push subscription sends an OIDC token, the bridge sends
`Authorization: Bearer <JWT>` with the endpoint URL as audience and a short expiry, signed
(HS256) with the key from settings. `verify()` raises `AuthError` with the reason.

A function on Google Cloud also receives what Google delivers itself (Cloud Scheduler, a real
Pub/Sub push), signed by Google: a `Verifier` accepts both kinds, the bridge's always and
Google's when `shared.oidc.GoogleTokens` are configured (TASUKI_PUSH_OIDC_*).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import jwt

from tasuki.shared import oidc
from tasuki.shared.errors import AuthError

ISSUER = "tasuki-bridge"
ALGORITHM = "HS256"
LIFETIME = 300  # seconds
REMEMBERED = 64  # verified tokens a Verifier remembers (a few per bridge)


def sign(key: str, audience: str, *, subject: str = "bridge", lifetime: int = LIFETIME) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "sub": subject, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value, or `AuthError`."""
    if not authorization:
        raise AuthError("missing Authorization header: pushes must carry 'Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()


def verify(key: str, authorization: str | None, audience: str) -> Mapping[str, object]:
    """Check an `Authorization` header value carrying a bridge token; its claims, or `AuthError`."""
    token = bearer(authorization)
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the push token has expired") from None
    except jwt.InvalidAudienceError:
        raise AuthError(f"the push token is not for this endpoint (expected audience {audience})") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid push token: {exc}") from None


class Verifier:
    """What one pushed-to function accepts: the bridge's tokens for its endpoint URL and, when
    `google` is set, Google-signed OIDC tokens (checked as `shared.oidc` says).

    The bridge sends one token for half its lifetime, so a bridge token verified once is
    remembered (the exact token, at most `REMEMBERED` of them) until it expires: the pushes after
    the first cost a lookup, not a signature check and a JSON decode."""

    def __init__(self, key: str, endpoint: str, google: oidc.GoogleTokens | None = None) -> None:
        self.key = key
        self.endpoint = endpoint
        self.google = google
        self._verified: dict[str, tuple[float, Mapping[str, object]]] = {}

    def verify(self, authorization: str | None) -> Mapping[str, object]:
        token = bearer(authorization)
        known = self._verified.get(token)
        if known is not None and time.time() < known[0]:
            return known[1]
        if self.google is not None and oidc.is_google(unverified_claims(token)):
            return self.google.verify(token, self.endpoint)
        claims = verify(self.key, authorization, self.endpoint)
        if len(self._verified) >= REMEMBERED:
            self._verified.clear()  # a few old tokens verified again, never a growing table
        self._verified[token] = (float(claims["exp"]), claims)  # type: ignore[arg-type]
        return claims


def unverified_claims(token: str) -> Mapping[str, object]:
    """The claims of a token without checking anything: only to choose which check applies."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid push token: {exc}") from None

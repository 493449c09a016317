"""Push tokens: the bridge signs, every pushed-to handler verifies.

As a Pub/Sub push subscription sends an OIDC token, the bridge sends
`Authorization: Bearer <JWT>` with the endpoint URL as audience and a short expiry, signed
(HS256) with the key from settings. `verify()` raises `AuthError` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import jwt

from tasuki.shared.errors import AuthError

ISSUER = "tasuki-bridge"
ALGORITHM = "HS256"
LIFETIME = 300  # seconds


def sign(key: str, audience: str, *, subject: str = "bridge", lifetime: int = LIFETIME) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "sub": subject, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, authorization: str | None, audience: str) -> Mapping[str, object]:
    """Check an `Authorization` header value; the token's claims, or `AuthError`."""
    if not authorization:
        raise AuthError("missing Authorization header: pushes must carry 'Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    try:
        return jwt.decode(
            token.strip(),
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

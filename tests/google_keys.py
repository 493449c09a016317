"""A stand-in for Google's OIDC signing keys: RSA keys with self-signed certificates, served on
loopback as Google serves https://www.googleapis.com/oauth2/v1/certs (`{"key id": "PEM"}`, with a
Cache-Control max-age), and ID tokens signed with them shaped like a Pub/Sub push's.

    with KeySet() as keys:
        settings = Settings(push_oidc_certs_url=keys.url, push_oidc_service_account=ACCOUNT)
        token = keys.token(audience=url, email=ACCOUNT)
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


class SigningKey:
    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.kid)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(self.private, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


class KeySet:
    """Published signing keys on a loopback URL; `fetches` counts the requests for them."""

    def __init__(self, keys: int = 2, max_age: int = 300) -> None:
        self.keys = [SigningKey() for _ in range(keys)]
        self.max_age = max_age
        self.fetches = 0
        keyset = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                keyset.fetches += 1
                body = json.dumps({k.kid: k.certificate_pem for k in keyset.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", f"public, max-age={keyset.max_age}, must-revalidate, no-transform")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v1/certs"

    def __enter__(self) -> KeySet:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()  # a quick shutdown
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def token(
        self,
        *,
        audience: str,
        email: str,
        issuer: str = "https://accounts.google.com",
        lifetime: int = 3600,
        issued_ago: int = 0,
        key: SigningKey | None = None,
        email_verified: bool = True,
    ) -> str:
        """An ID token as Google signs for a push subscription's service account."""
        now = int(time.time()) - issued_ago
        claims = {
            "aud": audience,
            "azp": "113774264463038321964",
            "email": email,
            "email_verified": email_verified,
            "exp": now + lifetime,
            "iat": now,
            "iss": issuer,
            "sub": "113774264463038321964",
        }
        return (key or self.keys[0]).sign(claims)

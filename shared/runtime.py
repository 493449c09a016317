"""What a process needs, built once on first use from settings: broker, store, registry.

Nothing here connects at import. Function modules call `runtime()` inside the request path;
`runtime()` reads the environment once (the process boundary) and caches the result. Tests that
change the environment call `runtime.cache_clear()`.

A runtime can also be given its broker: `Runtime(settings, broker=MemoryBroker())` publishes in
memory (`shared.memory`), and `set_runtime(rt)` makes the functions of this process use it. That
is how the unit tests run the handlers without RabbitMQ. It is not a setting on purpose: a
deployed ingress with an in-memory broker would answer 202 and lose every webhook.
"""

from __future__ import annotations

import os
from functools import cache, cached_property

from tasuki.shared import oidc, tokens
from tasuki.shared.broker import Broker, MessageBroker, Publishing
from tasuki.shared.publisher import Publisher
from tasuki.shared.registry import Repositories, load_registry
from tasuki.shared.settings import Settings
from tasuki.shared.store import Store, open_store


class Runtime:
    def __init__(self, settings: Settings, *, broker: MessageBroker | None = None) -> None:
        self.settings = settings
        self._broker = broker
        self._verifiers: dict[str, tokens.Verifier] = {}

    @cached_property
    def broker(self) -> MessageBroker:
        """RabbitMQ at `amqp_url`, one connection per thread (or the broker this runtime was given)."""
        return self._broker if self._broker is not None else Broker(self.settings.amqp_url)

    @cached_property
    def store(self) -> Store:
        return open_store(self.settings)

    @cached_property
    def registry(self) -> Repositories:
        schemes = self.settings.allowed_clone_schemes
        return Repositories(load_registry(self.settings.repositories_file, schemes), self.store, schemes)

    @cached_property
    def signing_key(self) -> str:
        return self.settings.signing_key()

    @cached_property
    def order_key(self) -> str:
        """The key that seals what orders carry for executors alone (`TASUKI_ORDER_KEY`)."""
        return self.settings.order_key_value()

    @cached_property
    def google_tokens(self) -> oidc.GoogleTokens | None:
        """Google-signed push tokens, when TASUKI_PUSH_OIDC_SERVICE_ACCOUNT says whose to accept."""
        s = self.settings
        if not s.push_oidc_service_account:
            return None
        certificates = oidc.Certificates(s.push_oidc_certs_url)
        return oidc.GoogleTokens(s.push_oidc_service_account, certificates, audience=s.push_oidc_audience)

    def push_verifier(self, function: str) -> tokens.Verifier:
        """What the pushed-to `function` accepts: the bridge's tokens for its endpoint URL, and
        Google's when configured. One per function, kept: it remembers the tokens it verified."""
        verifier = self._verifiers.get(function)
        if verifier is None:
            verifier = tokens.Verifier(self.signing_key, self.settings.endpoint(function), self.google_tokens)
            verifier = self._verifiers.setdefault(function, verifier)
        return verifier

    @cached_property
    def publisher(self) -> Publishing:
        """One connection shared by every thread, confirms pipelined (for busy handlers); or the
        broker this runtime was given."""
        return self._broker if self._broker is not None else Publisher(self.settings.amqp_url)


_given: Runtime | None = None


def set_runtime(rt: Runtime | None) -> None:
    """Make `runtime()` return `rt` in this process; None: build it from the environment again."""
    global _given
    _given = rt
    runtime.cache_clear()


@cache
def runtime() -> Runtime:
    return _given if _given is not None else Runtime(Settings.from_env(os.environ))

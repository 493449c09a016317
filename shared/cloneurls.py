"""Clone URLs: which ones Tasuki lets git fetch from (`TASUKI_CLONE_SCHEMES`).

A clone URL is registered by an operator (the registry file, the page, the API) and then handed
to git by the executor. git reads many things as a place to fetch from, some of which run
commands or reach the host itself, so every URL is sorted into one scheme and only the schemes
the operator allows pass:

    https     https://host/path                                the default, and usually all
    http      http://host/path                                 unencrypted; only on purpose
    ssh       ssh://[user@]host/path, [user@]host:path         the executor's own SSH keys
    git       git://host/path                                  unauthenticated git protocol
    file      /path, ./path, file:///path                      this machine's own folders

and refused whatever the setting says:

    ext::cmd, fd::0         git's remote helpers that run a command or use a file descriptor
    -anything               git (or ssh) would read it as an option
    other helper:: / scheme git's other transports (ftp, remote helpers): not supported
    spaces, control chars   nothing a person types into a clone URL

`problem()` is pure: it answers why a URL is refused, or None. Callers raise their own error
(a 400 for the page, a `ConfigError` for the registry file, `CheckoutFailed` before git runs).
`git_protocols()` gives the same list to git itself (`GIT_ALLOW_PROTOCOL`), which then also
holds for redirects and submodules.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import urlsplit

SCHEMES = ("https", "http", "ssh", "git", "file")
DEFAULT = "https"
# git's remote helpers that run an arbitrary command or read a file descriptor.
DANGEROUS = frozenset({"ext", "fd"})
# The protocol names git uses for each scheme (GIT_ALLOW_PROTOCOL).
GIT_PROTOCOLS = {"https": "https", "http": "http", "ssh": "ssh", "git": "git", "file": "file"}

_HELPER = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SSH_ALIASES = {"ssh", "git+ssh", "ssh+git"}
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def parse_schemes(text: str) -> tuple[str, ...]:
    """`https,ssh,file` -> ("https", "ssh", "file"); ValueError naming an unknown one."""
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    if not names:
        raise ValueError(f"name at least one clone URL scheme, from {', '.join(SCHEMES)}")
    for name in names:
        if name not in SCHEMES:
            if name in DANGEROUS:
                raise ValueError(f"{name}:: runs commands through git and is never allowed")
            raise ValueError(f"unknown clone URL scheme {name!r}; known: {', '.join(SCHEMES)}")
    return names


def scheme(url: str) -> str:
    """The scheme a clone URL uses, as git would read it (a name in `SCHEMES`, or another word
    for what git would do with it: a helper's name, an unknown scheme)."""
    helper = _HELPER.match(url)
    if helper:
        return helper.group(1).lower()
    named = _URL.match(url)
    if named:
        name = named.group(1).lower()
        return "ssh" if name in _SSH_ALIASES else name
    # git: "[user@]host:path" is SSH only when no slash comes before the first colon.
    colon = url.find(":")
    if colon > 0 and "/" not in url[:colon]:
        return "ssh"
    return "file"


def problem(url: str, allowed: Collection[str]) -> str | None:
    """Why git must not fetch from `url` under the schemes `allowed`; None when it may."""
    if not url:
        return "no clone URL"
    if url.startswith("-"):
        return "a clone URL cannot start with '-' (git would read it as an option)"
    found = scheme(url)
    if found in DANGEROUS:
        return f"{found}:: makes git run a command or read a file descriptor; it is never allowed"
    if _CONTROL.search(url):
        return "a clone URL has no spaces or control characters"
    if _HELPER.match(url):
        return f"{found}:: (a git remote helper) is not a clone URL Tasuki supports; use one of {', '.join(SCHEMES)}"
    if found not in SCHEMES:
        return f"the scheme {found}:// is not one Tasuki clones from; use one of {', '.join(SCHEMES)}"
    if found != "file" and _login(url).startswith("-"):
        return "a clone URL's user or host cannot start with '-' (ssh would read it as an option)"
    if found not in allowed:
        return (
            f"{found} clone URLs are not allowed here (TASUKI_CLONE_SCHEMES={','.join(allowed)}); "
            f"use an {'/'.join(allowed)} URL, or ask the operator to add {found}"
        )
    return None


def _login(url: str) -> str:
    """The `[user@]host[:port]` part, as ssh would be given it."""
    return urlsplit(url).netloc if _URL.match(url) else url.split(":", 1)[0]


def git_protocols(allowed: Collection[str]) -> str:
    """The value of GIT_ALLOW_PROTOCOL for these schemes: git then refuses every other protocol
    itself, for redirects and submodules too."""
    return ":".join(GIT_PROTOCOLS[name] for name in allowed if name in GIT_PROTOCOLS)

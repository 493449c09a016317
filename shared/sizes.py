"""Sizes in bytes as operators write them (TASUKI_JOB_MEMORY, TASUKI_JOB_LOG_LIMIT).

Accepted: a number of bytes (`1048576`), or a number (decimals allowed) with a unit of k, m, g
or t, optionally followed by `i`, `b` or `ib`, in any case: `512k`, `32m`, `32MiB`, `1.5G`,
`2gb`. Units are powers of 1024 whichever way they are written (as Docker reads `--memory`).
"""

from __future__ import annotations

import re

from tasuki.shared.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse(text: str, setting: str, *, example: str = "32MiB") -> int:
    """Bytes from `text`; ConfigError naming `setting` with an example otherwise."""
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"{setting}: expected a size like {example} (bytes, or with k, m, g), found {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def show(size: int) -> str:
    """`size` as a person reads it: 32 MiB, 1.5 GiB, 512 bytes."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"

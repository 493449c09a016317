"""Run every benchmark module (or the named ones) and collect their figures."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

import tests.bench as package


def main(names: list[str]) -> int:
    available = sorted(
        m.name.removeprefix("bench_") for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_")
    )
    chosen = names or available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        print(f"unknown benchmark {unknown[0]}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    results = {}
    for name in chosen:
        print(f"== {name}", flush=True)
        results[name] = importlib.import_module(f"tests.bench.bench_{name}").main()
    out = Path(".tasuki") / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

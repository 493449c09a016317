"""Restoring a cache beside `tar` of the same folder: 200 MB of many small files (a pip or npm
cache's shape: half compressed bytes, like wheels, half text), saved once by Tasuki's
`caches.save` and restored by `caches.restore` from the folder backend, beside `tar -cf` and
`tar -xf` of the same folder on the same disk (no compression: the cheapest restore there is).
Each restore goes into a fresh folder; the figure is the median of `BENCH_CACHE_ROUNDS` (3) and
the ratio Tasuki / tar (the aim: within 1.5x). `BENCH_CACHE_MB` changes the size.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tasuki.local.executor import caches
from tasuki.shared import objects
from tasuki.shared.flowfile.model import Cache

SIZE_MB = int(os.environ.get("BENCH_CACHE_MB", "200"))
ROUNDS = int(os.environ.get("BENCH_CACHE_ROUNDS", "3"))
FILE_BYTES = 10_000
AIM = 1.5


def make_folder(root: Path, total: int) -> int:
    """`total` bytes in files of FILE_BYTES, 100 to a folder; how many files."""
    text = (b"requests==2.31.0 # a line of a lock file that compresses well\n" * 200)[:FILE_BYTES]
    count = total // FILE_BYTES
    for n in range(count):
        folder = root / ".cache" / "deps" / f"d{n // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:06d}").write_bytes(os.urandom(FILE_BYTES) if n % 2 else text)
    return count


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> dict:
    spec = Cache(key="bench", paths=[".cache/deps"])
    scope = caches.Scope("bench/repo", "main")
    with tempfile.TemporaryDirectory(prefix="tasuki-bench-cache-") as tmp:
        base = Path(tmp)
        source = base / "source"
        files = make_folder(source, SIZE_MB * 1_000_000)
        store = objects.FolderObjects(base / "objects")
        said: list[str] = []
        save = timed(lambda: caches.save(store, scope, spec, "bench", source, limit=10**12, say=said.append))
        archive = base / "plain.tar"
        tar_c = timed(lambda: subprocess.run(["tar", "-cf", str(archive), "-C", str(source), ".cache"], check=True))
        restores, untars = [], []
        for n in range(ROUNDS):
            target = base / f"restore{n}"
            target.mkdir()
            restores.append(timed(lambda t=target: caches.restore(store, scope, spec, "bench", t, say=said.append)))
            assert (target / ".cache/deps/d0000/f000000").is_file(), said
            plain = base / f"untar{n}"
            plain.mkdir()
            untars.append(timed(lambda p=plain: subprocess.run(["tar", "-xf", str(archive), "-C", str(p)], check=True)))
        stored = sum(o.size for o in store.list("caches/") if o.key.endswith(caches.SUFFIX))
    restore, untar = statistics.median(restores), statistics.median(untars)
    print(f"{files} files, {SIZE_MB} MB; Tasuki's archive {stored / 1e6:.1f} MB (gzip level 1)")
    print(f"save:    Tasuki {save:.2f} s   tar -cf {tar_c:.2f} s   ratio {save / tar_c:.2f}")
    print(
        f"restore: Tasuki {restore:.2f} s   tar -xf {untar:.2f} s   ratio {restore / untar:.2f} "
        f"(median of {ROUNDS}; aim: within {AIM}x)"
    )
    return {
        "files": files,
        "megabytes": SIZE_MB,
        "archive_mb": round(stored / 1e6, 1),
        "save_s": round(save, 3),
        "tar_create_s": round(tar_c, 3),
        "restore_s": round(restore, 3),
        "tar_extract_s": round(untar, 3),
        "restore_ratio": round(restore / untar, 2),
    }

"""A throwaway PostgreSQL cluster for a test session: its own folder, its own port, gone after.

Why not the cluster Debian's package sets up (or one `local/setup.sh` would start)? Several test
sessions run at once on one machine (other worktrees, CI): a cluster per session shares no
state, no port and no configuration with them, needs no password set on a system cluster, runs
with durability off (fsync, synchronous_commit: fast), and is gone when the session ends. It
costs about two seconds at start.

`initdb` refuses to run as root: as root, the cluster's folder belongs to the `postgres` user
and the server runs as that user (`runuser`); as anyone else, as oneself.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "tasuki"
# A password with the characters a URL must escape: the tests reach the server through it.
PASSWORD = "p@ss:w/rd%+ 1"


class Unavailable(Exception):
    """PostgreSQL cannot be started here; the message says why."""


class NotStarted(Unavailable):
    """The server did not come up (its port may have been taken meanwhile)."""


def bindir() -> Path | None:
    """The newest installed PostgreSQL's programs (Debian keeps them off PATH)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0),
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Cluster:
    def __init__(self, port: int) -> None:
        programs = bindir()
        if programs is None:
            raise Unavailable("PostgreSQL is not installed (`local/setup.sh system` installs Debian's postgresql)")
        self.bin = programs
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="tasuki-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.owner = _postgres_user() if os.geteuid() == 0 else None
        self.started = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [*(["runuser", "-u", self.owner, "--"] if self.owner else []), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> None:
        if self.owner:
            uid = pwd.getpwnam(self.owner).pw_uid
            os.chown(self.root, uid, -1)
        pwfile = self.root / "password"
        pwfile.write_text(PASSWORD + "\n")
        if self.owner:
            os.chown(pwfile, pwd.getpwnam(self.owner).pw_uid, -1)
        done = self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if done.returncode != 0:
            raise Unavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        done = self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if done.returncode != 0:
            tail = self.log.read_text()[-800:] if self.log.exists() else done.stderr
            raise NotStarted(f"PostgreSQL did not start on port {self.port}: {tail.strip()}")
        self.started = True

    def stop(self) -> None:
        if self.started:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_user() -> str:
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        raise Unavailable(
            "running as root but there is no `postgres` user to run the server (initdb refuses root)"
        ) from None

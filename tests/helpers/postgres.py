"""A throwaway PostgreSQL cluster from the system's server binaries, for tests and `make cluster`.

initdb in a directory of its own (as the `postgres` user when run as root: initdb refuses root), a unix socket in
that directory, TCP on 127.0.0.1 and a free port, fsync off (nothing here must survive a power cut). Local socket
connections are trusted; TCP connections need the superuser's password, so tests can also check what a wrong
password does. Starting one costs 2-6 s, so tests share one cluster per session and one database per test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "postgres"
PASSWORD = "reelscan-test"


def find_bin_dir() -> Path | None:
    """Where pg_ctl and initdb are: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: _version(p.parent.parent))
    return candidates[-1].parent if candidates else None


def _version(path: Path) -> float:
    try:
        return float(path.name)
    except ValueError:
        return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """`base` must be reachable by the postgres user when run as root (None: a new directory under the system's
    temporary directory)."""

    def __init__(self, base: Path | None = None, *, port: int | None = None) -> None:
        if base is None:
            base = Path(tempfile.mkdtemp(prefix="reelscan-pg-"))
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL server binaries (pg_ctl, initdb) not found")
        self.bin = bin_dir
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "sock"
        self.log = base / "postgres.log"
        self.port = port or free_port()
        self._as_root = os.geteuid() == 0

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._as_root:
            shutil.chown(self.base, SUPERUSER)
            shutil.chown(self.socket_dir, SUPERUSER)
        pwfile = self.base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_root:
            shutil.chown(pwfile, SUPERUSER)
        self._run(
            "initdb",
            "-D", str(self.data),
            "-U", SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E", "UTF8",
            "--locale=C",
        )  # fmt: skip
        pwfile.unlink()

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self.init()
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
            ]
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # ---- databases -------------------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", *, password: str | None = PASSWORD) -> str:
        auth = SUPERUSER if password is None else f"{SUPERUSER}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        """Runs one statement through psql over the unix socket (no password: local is trusted)."""
        result = subprocess.run(
            [self._psql(), "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", dbname,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", statement],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def terminate_connections(self, dbname: str) -> int:
        """Kills every backend connected to `dbname` (as a network cut or a DBA would)."""
        out = self.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()"
        )
        return int(out or 0)

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _psql(self) -> str:
        local = self.bin / "psql"
        return str(local) if local.exists() else (shutil.which("psql") or "psql")

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin / program), *args]
        if self._as_root:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}) after {time.monotonic() - started:.1f}s:\n"
                f"{result.stdout}\n{result.stderr}\n{log}"
            )

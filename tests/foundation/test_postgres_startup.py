"""`reelscan serve --db postgresql://...` as an operator meets it: bad settings fail fast and say why (host, port,
database, never the password), passwords from the URL, a file or PGPASSWORD, migrations that run once when
replicas start together, and a schema newer than the server knows refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.helpers.postgres import PASSWORD, SUPERUSER, PostgresCluster, free_port
from tests.helpers.server import ServerProcess

FAIL_FAST_S = 10.0


def serve(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "reelscan.service", "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return result, time.monotonic() - started


def _refused(result: subprocess.CompletedProcess[str], elapsed: float, *needles: str) -> str:
    assert result.returncode != 0, result.stderr
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f}s to give up:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


def test_wrong_password_names_host_port_and_database_but_never_the_password(pg_cluster: PostgresCluster) -> None:
    url = f"postgresql://{SUPERUSER}:not-the-{PASSWORD}@127.0.0.1:{pg_cluster.port}/postgres"
    result, elapsed = serve("--db", url)
    err = _refused(result, elapsed, "host 127.0.0.1", f"port {pg_cluster.port}", "database postgres", "password")
    assert f"not-the-{PASSWORD}" not in err


def test_missing_database_is_named(pg_cluster: PostgresCluster) -> None:
    result, elapsed = serve("--db", pg_cluster.url("no_such_database"))
    err = _refused(result, elapsed, "database no_such_database", "does not exist")
    assert PASSWORD not in err


def test_nothing_listening_on_the_port(pg_cluster: PostgresCluster) -> None:
    port = free_port()
    result, elapsed = serve("--db", f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{port}/reelscan")
    err = _refused(result, elapsed, "host 127.0.0.1", f"port {port}", "database reelscan")
    assert PASSWORD not in err


def test_an_unreachable_host_gives_up_within_the_connect_timeout() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): nothing answers there, so only the connect timeout ends the wait.
    result, elapsed = serve("--db", f"postgresql://{SUPERUSER}:{PASSWORD}@192.0.2.1:5432/reelscan")
    err = _refused(result, elapsed, "host 192.0.2.1", "port 5432", "database reelscan")
    assert PASSWORD not in err


def test_an_unknown_url_scheme_is_a_usage_error() -> None:
    result, elapsed = serve("--db", "mysql://user:secret@127.0.0.1/reelscan")
    err = _refused(result, elapsed, "unknown URL scheme 'mysql'")
    assert "secret" not in err
    assert result.returncode == 2


def test_the_password_may_come_from_a_file_or_pgpassword(
    pg_cluster: PostgresCluster, pg_url: str, tmp_path: Path
) -> None:
    bare = pg_url.replace(f":{PASSWORD}@", "@")
    assert PASSWORD not in bare
    secret = tmp_path / "pg-password"
    secret.write_text(PASSWORD + "\n")
    with ServerProcess(bare, extra_args=["--db-password-file", str(secret)]) as server:
        assert server.proc is not None and server.proc.poll() is None
    with ServerProcess(bare, env={"PGPASSWORD": PASSWORD}) as server:
        assert server.proc is not None and server.proc.poll() is None
    assert PASSWORD not in server.log
    result, elapsed = serve("--db", bare, env={"PGPASSWORD": "", "PGPASSFILE": str(tmp_path / "none")})
    _refused(result, elapsed, "password")


def test_replicas_starting_at_once_migrate_once(pg_url: str) -> None:
    servers = [ServerProcess(pg_url) for _ in range(3)]
    procs = [subprocess.Popen(s.command(), stderr=subprocess.PIPE, text=True) for s in servers]
    try:
        with psycopg.connect(pg_url) as conn:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                alive = conn.execute("SELECT count(*) FROM owners").fetchone() if _has(conn, "owners") else (0,)
                if alive and alive[0] == 3:
                    break
                time.sleep(0.1)
            versions = conn.execute("SELECT component, version FROM schema_versions ORDER BY component").fetchall()
        assert [c for c, _ in versions] == ["jobs", "library"]  # one row each: nobody migrated twice
        assert all(p.poll() is None for p in procs), [p.stderr.read() if p.stderr else "" for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    assert all(p.returncode == 0 for p in procs)


def test_a_schema_newer_than_the_server_knows_is_refused(pg_url: str) -> None:
    with ServerProcess(pg_url):
        pass  # creates the schema
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'jobs'")
    result, elapsed = serve("--db", pg_url)
    _refused(result, elapsed, "jobs schema", "version 99", "newer than this reelscan understands")


def _has(conn: psycopg.Connection[tuple[object, ...]], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])

"""`reelscan serve`: parse flags, configure logging, run the server until SIGTERM/SIGINT, exit cleanly."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys
from collections.abc import Sequence

from reelscan.service.config import ConfigError, Settings, add_serve_arguments, settings_from_args
from reelscan.service.telemetry.logs import configure_logging
from reelscan.service.version import VersionAction

log = logging.getLogger("reelscan.service")

EXIT_CONFIG_ERROR = 2
EXIT_START_FAILED = 1


def build_parser(prog: str = "reelscan serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the reelscan gRPC server. Every flag can also be set with a REELSCAN_* environment variable.",
    )
    parser.add_argument("--version", action=VersionAction)
    add_serve_arguments(parser)
    return parser


async def _check_db_path(settings: Settings) -> None:
    """Fails fast, with the path in the message, when the database cannot be created or opened."""

    def check() -> None:
        parent = settings.db_path.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        # No busy wait: a file another process is writing is a database that opens; whether this server may use it
        # is the lock's to say (sqlite_lock.py), which names the other server instead of "database is locked".
        conn = sqlite3.connect(settings.db_path, timeout=0)
        try:
            conn.execute("PRAGMA user_version").fetchone()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
        finally:
            conn.close()

    try:
        await asyncio.to_thread(check)
    except (OSError, sqlite3.Error) as error:
        raise ConfigError(f"cannot open database --db {settings.db_path}: {error}") from error


async def serve(settings: Settings) -> None:
    # Imported here so `reelscan --help` and client commands do not pay for loading the server.
    from reelscan.service.pg.database import DatabaseError
    from reelscan.service.server import ReelscanServer
    from reelscan.service.sqlite_lock import DatabaseInUse

    if not settings.db_url:
        await _check_db_path(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        server = await ReelscanServer.start(settings)
    except DatabaseError as error:  # PostgreSQL unreachable, refused, missing, or its schema too new
        raise ConfigError(str(error)) from error
    except DatabaseInUse as error:  # another server holds this SQLite file (before the RuntimeError below)
        raise ConfigError(str(error)) from error
    except RuntimeError as error:  # grpc raises RuntimeError when it cannot bind
        raise ConfigError(f"cannot listen on {settings.listen}: {error}") from error
    except (OSError, ValueError) as error:  # unreadable TLS or token files, empty token
        raise ConfigError(str(error)) from error
    try:
        waiter = asyncio.create_task(server.wait_for_termination())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down (grace period %.1fs)", settings.grace_period_s)
    finally:
        await server.stop()
        for task in (waiter, stopper):
            task.cancel()
    log.info("stopped")


def main(argv: Sequence[str] | None = None, prog: str = "reelscan serve") -> int:
    parser = build_parser(prog)
    ns = parser.parse_args(argv)
    try:
        settings = settings_from_args(ns)
    except ConfigError as error:
        parser.error(str(error))  # exits 2 with usage
    configure_logging(settings.log_level, settings.log_format, sys.stderr)
    try:
        asyncio.run(serve(settings))
    except ConfigError as error:
        print(f"reelscan serve: error: {error}", file=sys.stderr)
        return EXIT_START_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`reelscan scan PATH`: start a scan and follow it with a live progress bar; Ctrl-C cancels it."""

from __future__ import annotations

import argparse
import asyncio
import os

from reelscan.client import format as fmt
from reelscan.client.commands.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Output,
    UsageError,
    add_connection_arguments,
    add_json_argument,
    async_client,
    err,
    exit_code_for,
    positive_float,
)
from reelscan.client.commands.follow import (
    CancelOnInterrupt,
    add_progress_arguments,
    follow,
    report_outcome,
    still_running_hint,
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="scan a directory into the library, with live progress",
        description=(
            "Start a scan of PATH (a directory on the server's machine; a relative path is made absolute here) and "
            "follow it with a live progress bar, then print the result and the scan errors. Ctrl-C cancels the "
            "job on the server and waits for it to end CANCELLED (a second Ctrl-C stops waiting). Exit codes: 0 "
            "succeeded (also when some files could not be probed: the summary counts them), 1 failed (or the "
            "server refused), 2 usage error, 3 cancelled, 4 timed out, 130 "
            "interrupted (Ctrl-C while the job goes on)."
        ),
    )
    parser.add_argument("path", metavar="PATH", help="directory to scan")
    parser.add_argument("--no-recursive", action="store_true", help="scan only PATH itself, not sub-directories")
    parser.add_argument("--force", action="store_true", help="probe every file again, even unchanged ones")
    parser.add_argument(
        "--extensions", metavar="LIST", help="comma-separated file extensions to scan [default: the server's list]"
    )
    parser.add_argument("--follow-symlinks", action="store_true", help="follow symbolic links (within allowed roots)")
    parser.add_argument(
        "--timeout", metavar="S", type=positive_float, help="the job's time limit in seconds [default: the server's]"
    )
    parser.add_argument(
        "--sharding",
        choices=("auto", "always", "never"),
        help="split a big scan into shards that every replica helps to probe: auto (past the server's "
        "--shard-threshold), always, or never [default: auto]",
    )
    parser.add_argument(
        "--detach", action="store_true", help="print the job id (or the job, with --json) and return at once"
    )
    add_json_argument(parser)
    add_progress_arguments(parser)
    add_connection_arguments(parser)
    parser.set_defaults(handler=run)


def check_path(text: str, what: str = "PATH") -> str:
    """The absolute form of a directory argument; UsageError for an empty one or one the server cannot take."""
    if not text.strip():
        raise UsageError(f"{what} is empty: give a directory (`.` for the current one)")
    path = os.path.abspath(os.path.expanduser(text))
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{what} {path} is not valid UTF-8: the server takes UTF-8 paths only; scan a directory above it"
        ) from None
    return path


def run(ns: argparse.Namespace) -> int:
    ns.path = check_path(ns.path)
    ns.started_job_id = None
    ns.interrupt = None
    try:
        return asyncio.run(_scan(ns))
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Ctrl-C on a scan someone else started, or a second Ctrl-C while ours was being cancelled.
        if ns.started_job_id:
            cancelling = ns.interrupt is not None and ns.interrupt.requested.is_set()
            err(still_running_hint(ns.started_job_id, ns.server, cancel_requested=cancelling))
        return EXIT_INTERRUPTED


async def _scan(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    path: str = ns.path
    extensions = [e.strip() for e in ns.extensions.split(",") if e.strip()] if ns.extensions else None
    async with async_client(ns) as client:
        await client.wait_for_server(ns.connect_timeout)
        # Installed before StartScan so a Ctrl-C during it still cancels the job once we know its id.
        with CancelOnInterrupt() as interrupt:
            ns.interrupt = interrupt
            started = await client.start_scan(
                path,
                recursive=not ns.no_recursive,
                force=ns.force,
                extensions=extensions,
                follow_symlinks=ns.follow_symlinks,
                timeout=ns.timeout,
                sharding=ns.sharding,
            )
            job = started.job
            ns.started_job_id = job.id
            if started.existing:
                # Someone else's scan of this root: Ctrl-C stops following it but does not cancel it.
                interrupt.cancel_job = False
            if ns.json:
                out.json({"event": "started", "job": fmt.to_dict(job), "existing": started.existing})
            elif ns.detach:
                out.line(job.id)  # alone on its line, for JOB=$(reelscan scan DIR --detach)
            else:
                again = " (a scan of it was already running: following that one; Ctrl-C stops following)"
                out.line(f"Scanning {job.scan.path or path} as job {job.id}{again if started.existing else ''}")
            if ns.detach:
                return EXIT_OK
            final = await follow(client, job.id, out, interval=ns.progress_interval, interrupt=interrupt)
            ns.started_job_id = None  # it ended: nothing to pick up after a late Ctrl-C
        await report_outcome(client, final, out)
        return exit_code_for(final.state)

"""`reelscan jobs list|get|watch|cancel|delete`."""

from __future__ import annotations

import argparse
import asyncio
import collections
from collections.abc import Iterator, Sequence

from reelscan.client import format as fmt
from reelscan.client.commands.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Output,
    add_connection_arguments,
    add_json_argument,
    async_client,
    err,
    exit_code_for,
    positive_float,
    positive_int,
    resolve_job_id,
    sync_client,
)
from reelscan.client.commands.follow import (
    add_progress_arguments,
    follow,
    job_title,
    report_outcome,
    still_running_hint,
)
from reelscan.client.errors import FailedPreconditionError
from reelscan.client.rpc import is_terminal
from reelscan.v1 import job_pb2

JOB_ID_HELP = "a job id, or any unique prefix of at least 6 characters of one"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = subparsers.add_parser("jobs", help="list, inspect, watch, cancel and delete jobs")
    commands = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)

    p = commands.add_parser("list", help="list jobs, newest first")
    p.add_argument(
        "--state",
        action="append",
        type=_state,
        metavar="STATE",
        help=f"only jobs in this state (repeatable): {', '.join(fmt.STATE_CHOICES)}",
    )
    p.add_argument("--limit", type=positive_int, default=20, help="show at most N jobs, 0 for all [default 20]")
    p.add_argument(
        "--parent",
        metavar="JOB_ID",
        help="list the shards of this sharded scan (they are not in the default listing)",
    )
    p.add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="keep the list on screen, updated as jobs change (on a pipe: a line per changed job); Ctrl-C ends it",
    )
    p.add_argument(
        "--interval",
        metavar="S",
        type=positive_float,
        default=1.0,
        help="with --watch, look for changes every S seconds [default 1]",
    )
    _common(p, run_list)

    p = commands.add_parser("get", help="show one job")
    p.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    _common(p, run_get)

    p = commands.add_parser(
        "watch",
        help="follow a job's live progress until it ends",
        description="Exit code: 0 succeeded, 1 failed, 3 cancelled, 4 timed out. Ctrl-C stops watching (the job "
        "goes on) and exits 130.",
    )
    p.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    add_progress_arguments(p)
    _common(p, run_watch)

    p = commands.add_parser(
        "cancel",
        help="cancel a job and wait until it has stopped",
        description="Exits 0 once the job is no longer running: CANCELLED, or already finished before the cancel "
        "(it says how it ended; --json prints the job). Exits 1 if it is still running after --wait-timeout.",
    )
    p.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    p.add_argument("--no-wait", action="store_true", help="return once the server accepted the request")
    p.add_argument(
        "--wait-timeout", metavar="S", type=positive_float, default=60.0, help="wait at most S seconds [default 60]"
    )
    _common(p, run_cancel)

    p = commands.add_parser("delete", help="delete a finished job and its scan errors")
    p.add_argument("job_id", metavar="JOB_ID", help=JOB_ID_HELP)
    _common(p, run_delete)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_json_argument(parser)
    add_connection_arguments(parser)
    parser.set_defaults(handler=handler)


def _state(text: str) -> job_pb2.JobState:
    try:
        return fmt.parse_state(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r}; choose from {', '.join(fmt.STATE_CHOICES)}"
        ) from None


LIST_HEADERS = ("ID", "STATE", "DONE", "CREATED", "TOOK", "PATH", "RESULT")
# On a narrow terminal these columns go first (ids are never cut; paths wrap).
LIST_FOLD = ("PATH", "RESULT")
LIST_OPTIONAL = ("RESULT", "TOOK", "DONE", "CREATED")


def list_row(job: job_pb2.Job, *, tty: bool) -> list[str]:
    elapsed = fmt.job_elapsed(job)
    return [
        job.id,
        fmt.state_label(job.state),
        f"{job.progress * 100:.0f}%",
        fmt.local_time_short(job.create_time, tty=tty),
        fmt.short_duration(elapsed) if elapsed is not None else "-",
        job.scan.path if job.HasField("scan") else "-",
        f"{job.result.discovered} found, {job.result.failed} failed",
    ]


def run_list(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    with sync_client(ns) as client:
        parent = resolve_job_id(client, ns.parent) if ns.parent else ""
        if ns.watch:
            from reelscan.client.commands.watch_list import watch_jobs  # it uses this module's table layout

            return watch_jobs(
                client, out, states=ns.state, limit=ns.limit or None, interval=ns.interval, parent_id=parent
            )
        jobs: Iterator[job_pb2.Job] = client.list_jobs(states=ns.state, limit=ns.limit or None, parent_id=parent)
        if ns.json:
            for job in jobs:
                out.json(job)
        else:
            rows = (list_row(job, tty=out.tty) for job in jobs)
            out.table(LIST_HEADERS, rows, fold=LIST_FOLD, optional=LIST_OPTIONAL)
    return EXIT_OK


def describe(job: job_pb2.Job, *, tty: bool = True) -> list[tuple[str, str]]:
    elapsed = fmt.job_elapsed(job)
    detail = job.progress_detail
    pairs = [
        ("id", job.id),
        ("what", job_title(job)),
        ("state", fmt.state_label(job.state) + (" (cancel requested)" if job.cancel_requested else "")),
        ("progress", f"{job.progress * 100:.1f}%"),
    ]
    if not is_terminal(job.state):
        items = f"{detail.items_done}/{detail.items_total}" if detail.items_total else str(detail.items_done)
        pairs += [("stage", fmt.stage_label(detail.stage)), ("items", items)]
        if detail.current_item:
            pairs.append(("current", detail.current_item))
    pairs.append(("created", fmt.local_time(job.create_time, tty=tty)))
    if job.HasField("start_time"):
        pairs.append(("started", fmt.local_time(job.start_time, tty=tty)))
    if job.HasField("finish_time"):
        pairs.append(("finished", fmt.local_time(job.finish_time, tty=tty)))
    pairs += [
        ("took" if is_terminal(job.state) else "running for", fmt.short_duration(elapsed) if elapsed else "-"),
        ("result", fmt.result_summary(job.result)),
    ]
    if job.HasField("timeout"):
        pairs.append(("time limit", fmt.short_duration(job.timeout.ToNanoseconds() / 1e9)))
    if job.HasField("scan"):
        spec = job.scan
        pairs.append(
            ("options", f"recursive={spec.recursive} force={spec.force} follow_symlinks={spec.follow_symlinks}")
        )
        pairs.append(("extensions", ", ".join(spec.extensions) or "-"))
    if job.replica_address:
        pairs.append(("replica", job.replica_address))
    if job.parent_id:
        pairs.append(("shard of", job.parent_id))
    if job.HasField("error") and job.error.message:
        pairs.append(("error", job.error.message))
    return pairs


def shards_summary(shards: Sequence[job_pb2.Job]) -> str:
    """`15 (12 succeeded, 3 running on 2 replicas)`: a sharded scan's shards at a glance."""
    states = collections.Counter(fmt.state_label(s.state) for s in shards)
    running = {s.replica_address for s in shards if s.state == job_pb2.JOB_STATE_RUNNING and s.replica_address}
    text = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    if running:
        text += f"; running on {len(running)} replica{'s' if len(running) != 1 else ''}"
    return f"{len(shards)} ({text})"


def run_get(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    with sync_client(ns) as client:
        job = client.get_job(resolve_job_id(client, ns.job_id))
        # The shards line is for people; --json prints the Job alone (scripts list shards with --parent).
        shards = [] if ns.json or job.parent_id else list(client.list_jobs(parent_id=job.id))
    if ns.json:
        out.json(job)
    else:
        pairs = describe(job, tty=out.tty)
        if shards:
            pairs.append(("shards", shards_summary(shards) + f"; `reelscan jobs list --parent {job.id}`"))
        out.fields(pairs)
    return EXIT_OK


def run_watch(ns: argparse.Namespace) -> int:
    with sync_client(ns) as client:
        ns.job_id = resolve_job_id(client, ns.job_id)
    try:
        return asyncio.run(_watch(ns))
    except KeyboardInterrupt:
        err(still_running_hint(ns.job_id, ns.server))
        return EXIT_INTERRUPTED


async def _watch(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    async with async_client(ns) as client:
        final = await follow(client, ns.job_id, out, interval=ns.progress_interval)
        await report_outcome(client, final, out)
    return exit_code_for(final.state)


def run_cancel(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    already = False
    with sync_client(ns) as client:
        job_id = resolve_job_id(client, ns.job_id)
        try:
            job = client.cancel_job(job_id)
        except FailedPreconditionError:
            # It finished before the cancel arrived: nothing left to cancel, which is what was asked.
            job = client.get_job(job_id)
            if not is_terminal(job.state):
                raise
            already = job.state != job_pb2.JOB_STATE_CANCELLED
        if not ns.no_wait and not is_terminal(job.state):
            job = client.wait_job(job_id, timeout=ns.wait_timeout)
    if ns.json:
        out.json(job)
    elif already:
        out.line(f"job {job.id} had already {fmt.state_label(job.state)}; nothing to cancel")
    elif is_terminal(job.state):
        out.line(f"job {job.id} {fmt.state_label(job.state)}")
    else:
        out.line(f"job {job.id}: cancel requested, still {fmt.state_label(job.state)}")
    if is_terminal(job.state) or ns.no_wait:
        return EXIT_OK
    return exit_code_for(job.state)


def run_delete(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    with sync_client(ns) as client:
        job_id = resolve_job_id(client, ns.job_id)
        client.delete_job(job_id)
    if ns.json:
        out.json({"deleted": job_id})
    else:
        out.line(f"deleted job {job_id}")
    return EXIT_OK

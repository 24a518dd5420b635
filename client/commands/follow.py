"""Following a job to its end with live progress, cancelling it on Ctrl-C, and reporting how it ended.
Shared by `reelscan scan` and `reelscan jobs watch`."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
from types import TracebackType

from reelscan.client import format as fmt
from reelscan.client.async_client import AsyncReelscanClient
from reelscan.client.commands.common import Output
from reelscan.client.connection import DEFAULT_ADDRESS
from reelscan.client.errors import FailedPreconditionError, ReelscanError
from reelscan.client.progress import JsonLines, PlainLines, ProgressView, RichBar
from reelscan.v1 import job_pb2, library_pb2, scan_pb2

MAX_ERRORS_SHOWN = 20


def add_progress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress-interval",
        metavar="S",
        type=float,
        default=1.0,
        help="when stdout is not a terminal, print progress at most every S seconds [default %(default)s]",
    )


class CancelOnInterrupt:
    """Ctrl-C handling while following a job we started: the first SIGINT sets `requested` (the job gets
    cancelled and we keep following it to CANCELLED); a second one cancels the main task to stop waiting.
    With `cancel_job` false (a job someone else started), the first SIGINT just stops following."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.cancel_job = True
        self.count = 0
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()

    def __enter__(self) -> CancelOnInterrupt:
        self._loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._loop.remove_signal_handler(signal.SIGINT)

    def _on_sigint(self) -> None:
        self.count += 1
        if self.count == 1 and self.cancel_job:
            self.requested.set()
        elif self._main is not None:
            self._main.cancel()


def make_view(out: Output, interval: float) -> ProgressView:
    if out.json_mode:
        return JsonLines(out.stream, interval)
    if out.console is not None:
        return RichBar(out.console)
    return PlainLines(out.stream, interval)


def still_running_hint(job_id: str, server: str | None = None, *, cancel_requested: bool = False) -> str:
    """What Ctrl-C while following prints: the job goes on, and how to pick it up again."""
    where = f" --server {server}" if server and server != DEFAULT_ADDRESS else ""
    state = " (cancel requested)" if cancel_requested else ""
    return f"job still running{state}: reelscan jobs watch {job_id}{where}"


async def _cancel_when_asked(
    client: AsyncReelscanClient, job_id: str, interrupt: CancelOnInterrupt, view: ProgressView
) -> None:
    await interrupt.requested.wait()
    view.note(f"Cancelling job {job_id} (press Ctrl-C again to stop waiting)...")
    try:
        await client.cancel_job(job_id)
    except FailedPreconditionError:
        pass  # it finished first; the watch shows how
    except ReelscanError as error:
        view.note(f"could not cancel job {job_id}: {error}")


async def follow(
    client: AsyncReelscanClient,
    job_id: str,
    out: Output,
    *,
    interval: float,
    interrupt: CancelOnInterrupt | None = None,
) -> job_pb2.Job:
    """Shows the job's progress until it is terminal and returns its final snapshot.

    A lost connection is ridden out (with a note) only once the job has been seen: before its first update, the
    error is raised at once, so a wrong address or a dead server is reported instead of waited on.
    """
    view = make_view(out, interval)
    lost = False
    last: job_pb2.JobUpdate | None = None

    def on_disconnect(error: ReelscanError) -> None:
        nonlocal lost
        if last is None:
            raise error
        if not lost:
            view.note(f"connection lost ({error}); reconnecting to follow job {job_id}...")
            lost = True

    canceller = (
        asyncio.create_task(_cancel_when_asked(client, job_id, interrupt, view)) if interrupt is not None else None
    )
    view.start()
    try:
        async for update in client.watch_job(job_id, on_disconnect=on_disconnect):
            if lost:
                view.note("reconnected")
                lost = False
            view.update(update)
            last = update
    finally:
        view.stop()
        if canceller is not None:
            canceller.cancel()
    if last is not None and last.HasField("job"):
        return last.job
    return await client.get_job(job_id)


def nothing_found_hint(spec: scan_pb2.ScanSpec) -> str:
    """Why a scan can find nothing: which extensions it looked for, and where."""
    extensions = ", ".join(f".{e}" for e in spec.extensions) or "the server's default list"
    depth = "" if spec.recursive else " (this directory only: --no-recursive)"
    return f"no video files found{depth}: looked for {extensions}; pass --extensions LIST to look for others"


def job_title(job: job_pb2.Job) -> str:
    if job.HasField("scan"):
        return f"Scan of {job.scan.path}"
    return f"Job {job.id}"


def failed_list_command(job: job_pb2.Job) -> str:
    """The command that lists the broken files under the job's root."""
    prefix = f" --prefix {shlex.quote(job.scan.path)}" if job.HasField("scan") and job.scan.path else ""
    return f"reelscan videos list --failed{prefix}"


def known_broken_line(job: job_pb2.Job) -> str:
    """What a rescan that skipped known-broken files says about them (they are inside `unchanged`)."""
    count = job.result.unchanged_failed
    files = fmt.plural(count, "known-broken file")
    return f"{files} skipped (not probed again; --force retries them): {failed_list_command(job)}"


async def report_outcome(client: AsyncReelscanClient, job: job_pb2.Job, out: Output) -> None:
    """The result summary, the known-broken files a rescan skipped, and the scan's per-file errors. Broken files
    do not make a scan fail: one that succeeded exits 0 whatever they are (exit_code_for the job's state)."""
    errors: list[library_pb2.ScanError] = []
    if job.result.failed:
        limit = None if out.json_mode else MAX_ERRORS_SHOWN
        try:
            errors = [e async for e in client.list_scan_errors(job.id, limit=limit)]
        except ReelscanError as error:
            out.line(f"(could not list the scan errors: {error})")
    if out.json_mode:
        out.json({"event": "result", "job": fmt.to_dict(job), "scanErrors": [fmt.to_dict(e) for e in errors]})
        return
    elapsed = fmt.job_elapsed(job)
    took = f" in {fmt.short_duration(elapsed)}" if elapsed is not None else ""
    out.line(f"{job_title(job)} {fmt.state_label(job.state)}{took} (job {job.id})")
    out.line(f"  {fmt.result_summary(job.result)}")
    if job.result.discovered == 0 and job.state == job_pb2.JOB_STATE_SUCCEEDED and job.HasField("scan"):
        out.line(f"  {nothing_found_hint(job.scan)}")
    if job.HasField("error") and job.error.message:
        out.line(f"  error: {job.error.message}")
    if job.state == job_pb2.JOB_STATE_CANCELLED:
        out.line("  what was probed before the cancel is kept in the library")
    if job.result.unchanged_failed:
        out.line(f"  {known_broken_line(job)}", style="bold yellow")
    if errors:
        out.line(f"Scan errors ({job.result.failed}):", style="bold")
        for e in errors:
            out.line(f"  {e.path}: {fmt.error_kind_label(e.kind)}: {e.reason}")
        if job.result.failed > len(errors):
            out.line(f"  ... and {job.result.failed - len(errors)} more: reelscan errors {job.id}")

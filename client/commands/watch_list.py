"""`reelscan jobs list --watch`: the job list kept live, like `kubectl get -w`.

It polls ListJobs (one cheap call per interval; the server serves finished jobs from memory) rather than opening a
WatchJob stream per job, so it also sees jobs that are created while it runs. On a terminal the table is redrawn
in place; on a pipe (or with --json) every job that appeared or changed since the last poll is printed as one more
row (or JSON line), so `reelscan jobs list --watch | grep failed` works.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence

from rich.console import Group
from rich.live import Live
from rich.text import Text

from reelscan.client import format as fmt
from reelscan.client.commands import jobs as jobs_command
from reelscan.client.commands.common import EXIT_OK, Output, err, render_table
from reelscan.client.errors import UnavailableError
from reelscan.client.sync_client import ReelscanClient
from reelscan.v1 import job_pb2


class JobPoller:
    """One ListJobs listing per poll; remembers each job's seq to tell which rows changed."""

    def __init__(
        self,
        client: ReelscanClient,
        states: Sequence[job_pb2.JobState] | None,
        limit: int | None,
        parent_id: str = "",
    ) -> None:
        self._client = client
        self._states = states
        self._limit = limit
        self._parent_id = parent_id
        self._seen: dict[str, int] = {}

    def poll(self) -> tuple[list[job_pb2.Job], list[job_pb2.Job]]:
        """(every job listed now, newest first; those new or changed since the last poll, oldest first)."""
        jobs = list(self._client.list_jobs(states=self._states, limit=self._limit, parent_id=self._parent_id))
        changed = [job for job in reversed(jobs) if self._seen.get(job.id) != job.seq]
        self._seen = {job.id: job.seq for job in jobs}
        return jobs, changed


def watch_jobs(
    client: ReelscanClient,
    out: Output,
    *,
    states: Sequence[job_pb2.JobState] | None,
    limit: int | None,
    interval: float,
    parent_id: str = "",
) -> int:
    """Runs until Ctrl-C (KeyboardInterrupt, exit 130 from the caller). A lost connection is retried every
    interval, with one note when it goes and one when it is back. `parent_id`: that sharded scan's shards."""
    poller = JobPoller(client, states, limit, parent_id)
    if out.console is None or out.json_mode:
        return _watch_lines(poller, out, interval)
    return _watch_live(poller, out, interval)


def _poll_or_note(poller: JobPoller, lost: list[str]) -> tuple[list[job_pb2.Job], list[job_pb2.Job]] | None:
    try:
        result = poller.poll()
    except UnavailableError as error:
        if not lost:
            lost.append(str(error))
            err(f"connection lost ({error}); retrying...")
        return None
    if lost:
        lost.clear()
        err("reconnected")
    return result


def _watch_lines(poller: JobPoller, out: Output, interval: float) -> int:
    lost: list[str] = []
    if not out.json_mode:
        out.row(jobs_command.LIST_HEADERS)
    while True:
        polled = _poll_or_note(poller, lost)
        for job in polled[1] if polled else ():
            if out.json_mode:
                out.json(job)
            else:
                out.row(jobs_command.list_row(job, tty=False))
        time.sleep(interval)
    return EXIT_OK  # pragma: no cover - the loop ends by Ctrl-C


def _watch_live(poller: JobPoller, out: Output, interval: float) -> int:
    assert out.console is not None
    console = out.console
    lost: list[str] = []

    def frame(jobs: list[job_pb2.Job]) -> Group:
        cells = [[fmt.printable(c) for c in jobs_command.list_row(job, tty=True)] for job in jobs]
        table, _ = render_table(
            jobs_command.LIST_HEADERS,
            cells,
            console.width,
            fold=jobs_command.LIST_FOLD,
            optional=jobs_command.LIST_OPTIONAL,
        )
        now = datetime.datetime.now().astimezone()
        status = f"connection lost ({lost[0]}); retrying" if lost else f"updated {now:%H:%M:%S}"
        heading = Text(fmt.printable(f"{len(jobs)} jobs, newest first; {status}; Ctrl-C to stop"), style="dim")
        return Group(heading, table)

    jobs: list[job_pb2.Job] = []
    with Live(frame(jobs), console=console, auto_refresh=False, transient=False) as live:
        while True:
            polled = _poll_or_note(poller, lost)
            if polled is not None:
                jobs = polled[0]
            live.update(frame(jobs), refresh=True)
            time.sleep(interval)
    return EXIT_OK  # pragma: no cover - the loop ends by Ctrl-C

"""Live job progress for the CLI: a rich progress bar on a terminal, plain periodic lines in pipes and logs, or
JSON lines for scripts. The plain and JSON views never write escape codes."""

from __future__ import annotations

import os
import sys
import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TaskProgressColumn, TextColumn
from rich.table import Column

from reelscan.client import format as fmt
from reelscan.client.rpc import is_terminal
from reelscan.v1 import job_pb2

# The bar's resolution: progress is a fraction, rich wants a total.
_STEPS = 1000


class ProgressView(Protocol):
    def start(self) -> None: ...

    def update(self, update: job_pb2.JobUpdate) -> None: ...

    def note(self, text: str) -> None:
        """A message for the person watching (cancelling, reconnecting), kept apart from progress data."""
        ...

    def stop(self) -> None: ...


class RichBar:
    """A live bar: state, stage, bar, percent, done/total, rate, ETA and the current file."""

    def __init__(self, console: Console, label: str) -> None:
        self._console = console
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("[bold]{task.description}"),
            TextColumn("{task.fields[stage]}", table_column=Column(min_width=11, no_wrap=True)),
            BarColumn(bar_width=30),
            TaskProgressColumn(),
            TextColumn("{task.fields[items]}", table_column=Column(justify="right", no_wrap=True)),
            TextColumn("{task.fields[rate]}", table_column=Column(justify="right", no_wrap=True)),
            TextColumn("{task.fields[eta]}", table_column=Column(no_wrap=True)),
            TextColumn(
                "[dim]{task.fields[current]}",
                table_column=Column(no_wrap=True, overflow="ellipsis", min_width=10, ratio=1),
            ),
            console=console,
            refresh_per_second=10,
            # Keep the last frame on screen: it is the record of how the scan ended.
            transient=False,
        )
        self._task: TaskID = self._progress.add_task(
            label, total=None, stage="", items="", rate="", eta="", current="", start=False
        )

    def start(self) -> None:
        self._progress.start()

    def update(self, update: job_pb2.JobUpdate) -> None:
        detail = update.progress_detail
        discovering = detail.stage == job_pb2.JOB_STAGE_DISCOVERING and update.progress == 0
        if is_terminal(update.state):
            items = f"{update.result.discovered} files"
        elif detail.items_total:
            items = f"{detail.items_done}/{detail.items_total}"
        elif detail.items_done:
            items = f"{detail.items_done} found" if discovering else str(detail.items_done)
        else:
            items = ""
        terminal = is_terminal(update.state)
        self._progress.start_task(self._task)
        self._progress.update(
            self._task,
            # While the total is unknown the bar pulses rather than sit at 0%.
            total=None if discovering else _STEPS,
            completed=round(update.progress * _STEPS),
            description=fmt.state_label(update.state),
            stage="" if terminal else fmt.stage_label(detail.stage),
            items=items,
            rate=f"{detail.items_per_second:.1f}/s" if detail.items_per_second > 0 and not terminal else "",
            eta=f"ETA {fmt.clock(detail.eta.ToNanoseconds() / 1e9)}" if detail.HasField("eta") else "",
            current=os.path.basename(detail.current_item),
        )
        if terminal:
            self._progress.stop_task(self._task)

    def note(self, text: str) -> None:
        self._progress.console.print(text, highlight=False)

    def stop(self) -> None:
        self._progress.refresh()
        self._progress.stop()


class PlainLines:
    """One plain line per `interval` seconds, plus one at every change of state or stage and at the end."""

    def __init__(self, stream: TextIO, interval: float) -> None:
        self._stream = stream
        self._interval = interval
        self._last_print = float("-inf")
        self._last_key: tuple[int, int] | None = None
        self._pending: job_pb2.JobUpdate | None = None

    def start(self) -> None:
        pass

    def update(self, update: job_pb2.JobUpdate) -> None:
        key = (update.state, update.progress_detail.stage)
        now = time.monotonic()
        if key != self._last_key or is_terminal(update.state) or now - self._last_print >= self._interval:
            self._emit(update)
            self._last_key = key
            self._last_print = now

    def _emit(self, update: job_pb2.JobUpdate) -> None:
        print(fmt.progress_text(update), file=self._stream, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def stop(self) -> None:
        pass


class JsonLines(PlainLines):
    """Like PlainLines, but each progress line is {"event": "update", "update": <JobUpdate as proto3 JSON>}.
    Notes go to stderr so stdout stays pure JSON."""

    def _emit(self, update: job_pb2.JobUpdate) -> None:
        print(fmt.json_line({"event": "update", "update": fmt.update_dict(update)}), file=self._stream, flush=True)

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

"""Live job progress for the CLI: a one-line live display on a terminal, plain periodic lines in pipes and logs,
or JSON lines for scripts. The plain and JSON views never write escape codes.

The terminal line is laid out for the terminal's width at every refresh (`progress_line`): the bar, percent,
counts, rate and ETA are always there at 40 columns and more (in compact forms when space is short); the stage,
elapsed time and current file come in as room allows, and the file is shortened in the middle, keeping its folder
and extension. Every string from the server goes through fmt.printable first.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from reelscan.client import format as fmt
from reelscan.client.rpc import is_terminal
from reelscan.v1 import job_pb2

ELLIPSIS = "…"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# The bar's width: at least BAR_MIN (BAR_MIN_COMPACT when even compact figures barely fit), at most BAR_MAX.
BAR_MIN = 10
BAR_MIN_COMPACT = 4
BAR_MAX = 40
# A current file is shown only when it gets at least this many cells.
FILE_MIN = 12


class ProgressView(Protocol):
    def start(self) -> None: ...

    def update(self, update: job_pb2.JobUpdate) -> None: ...

    def note(self, text: str) -> None:
        """A message for the person watching (cancelling, reconnecting), kept apart from progress data."""
        ...

    def stop(self) -> None: ...


# Text pieces


def compact_count(n: int) -> str:
    """12345 -> 12.3k; small numbers as they are."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k" if n < 100_000 else f"{n // 1000}k"
    return f"{n / 1_000_000:.1f}M"


def rate_text(per_second: float, *, compact: bool = False) -> str:
    if compact and per_second >= 10_000:
        return f"{per_second / 1000:.0f}k/s"
    if per_second >= 100:
        return f"{per_second:.0f}/s"
    return f"{per_second:.1f}/s"


def compact_clock(seconds: float) -> str:
    """0:05, 12:34, then 1h02m, 2d03h: at most 6 cells."""
    seconds = max(0, round(seconds))
    if seconds < 3600:
        return fmt.clock(seconds)
    hours, rest = divmod(seconds, 3600)
    if hours < 24:
        return f"{hours}h{rest // 60:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def _cut_middle(text: str, width: int) -> str:
    """`text` in at most `width` cells, its middle replaced by an ellipsis."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    keep = width - 1
    head, tail = keep - keep // 2, keep // 2
    start = _take(text, head)
    end = _take(text[::-1], tail)[::-1]
    return start + ELLIPSIS + end


def _take(text: str, width: int) -> str:
    out, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)


def shorten_path(path: str, width: int) -> str:
    """A path in at most `width` cells, shortened in the middle but keeping the file's folder and extension:
    `/srv/media/Show/Season 1/The Long Name - S01E340 - Title.mkv` -> `…/Season 1/The Long…Title.mkv`."""
    if cell_len(path) <= width:
        return path
    folder_path, _, name = path.rpartition("/")
    folder = folder_path.rpartition("/")[2]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or cell_len(ext) > 8:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    lead = f"{ELLIPSIS}/" if folder and folder_path != folder else ""  # something came before the folder
    prefix = f"{lead}{folder}/" if folder else ""
    if cell_len(prefix + name) <= width:
        return prefix + name
    # Room for the name: at least 3 cells of stem around the ellipsis, plus the extension.
    name_min = 3 + cell_len(suffix)
    if folder and cell_len(prefix) + name_min > width:
        # The folder gives way too, down to a few cells of it.
        folder_room = max(2, width - name_min - cell_len(lead) - 1)
        prefix = f"{lead}{_cut_middle(folder, folder_room)}/"
        if cell_len(prefix) + name_min > width:
            prefix = ""
    room = width - cell_len(prefix)
    if room < name_min:
        return _cut_middle(prefix + name, width)
    return prefix + _cut_middle(stem, room - cell_len(suffix)) + suffix


def display_item(current_item: str, root: str) -> str:
    """The file being worked on, relative to the scan's root when it is under it, made printable."""
    item = current_item
    if root and item.startswith(root.rstrip("/") + "/"):
        item = item[len(root.rstrip("/")) + 1 :]
    return fmt.printable(item)


@dataclass(frozen=True, slots=True)
class LineState:
    """What one frame of the progress line shows (everything already printable)."""

    state: int
    stage: int
    progress: float
    items: str  # counts, full form
    items_compact: str
    rate: float
    eta_s: float | None
    elapsed_s: float | None
    current: str
    indeterminate: bool


def line_state(update: job_pb2.JobUpdate, elapsed_s: float | None) -> LineState:
    detail = update.progress_detail
    terminal = is_terminal(update.state)
    discovering = detail.stage == job_pb2.JOB_STAGE_DISCOVERING and update.progress == 0
    if terminal:
        items = items_compact = f"{update.result.discovered} files"
        if update.result.discovered >= 10_000:
            items_compact = f"{compact_count(update.result.discovered)} files"
    elif detail.items_total:
        items = f"{detail.items_done}/{detail.items_total}"
        items_compact = f"{compact_count(detail.items_done)}/{compact_count(detail.items_total)}"
    elif discovering:
        items, items_compact = f"{detail.items_done} found", f"{compact_count(detail.items_done)} found"
    else:
        items, items_compact = str(detail.items_done), compact_count(detail.items_done)
    root = update.job.scan.path if update.HasField("job") and update.job.HasField("scan") else ""
    return LineState(
        state=update.state,
        stage=detail.stage,
        progress=update.progress,
        items=items,
        items_compact=items_compact,
        rate=detail.items_per_second if not terminal else 0.0,
        eta_s=detail.eta.ToNanoseconds() / 1e9 if detail.HasField("eta") and not terminal else None,
        elapsed_s=elapsed_s,
        current="" if terminal else display_item(detail.current_item, root),
        indeterminate=discovering and not terminal,
    )


_MARK: dict[int, tuple[str, str]] = {
    job_pb2.JOB_STATE_SUCCEEDED: ("✓", "green"),
    job_pb2.JOB_STATE_FAILED: ("✗", "red"),
    job_pb2.JOB_STATE_TIMED_OUT: ("✗", "red"),
    job_pb2.JOB_STATE_CANCELLED: ("■", "yellow"),
}


def _bar(state: LineState, width: int, now: float) -> Text:
    bar = Text()
    if state.indeterminate:
        # A segment sweeping across while the total is unknown.
        segment = max(1, width // 4)
        start = int(now * 12) % (width + segment) - segment
        for i in range(width):
            bar.append("━", style="bar.pulse" if start <= i < start + segment else "bar.back")
        return bar
    filled = max(0.0, min(1.0, state.progress)) * width
    whole = int(filled)
    style = "bar.finished" if state.state == job_pb2.JOB_STATE_SUCCEEDED else "bar.complete"
    bar.append("━" * whole, style=style)
    if whole < width:
        if filled - whole >= 0.5:
            bar.append("╸", style=style)
            whole += 1
        bar.append("━" * (width - whole), style="bar.back")
    return bar


def progress_line(state: LineState, width: int, now: float | None = None) -> Text:
    """One frame of the live line, in at most `width` cells (see the module docstring for what is kept)."""
    now = time.monotonic() if now is None else now
    terminal = is_terminal(state.state)  # type: ignore[arg-type]
    pct = f"{state.progress * 100:3.0f}%"
    full_eta = f"ETA {fmt.clock(state.eta_s)}" if state.eta_s is not None else ""

    def figures(compact: bool) -> list[tuple[str, str]]:
        items = state.items_compact if compact else state.items
        rate = rate_text(state.rate, compact=compact) if state.rate > 0 else ""
        eta = f"ETA {compact_clock(state.eta_s)}" if compact and state.eta_s is not None else full_eta
        return [(t, s) for t, s in ((pct, "progress.percentage"), (items, ""), (rate, "dim"), (eta, "cyan")) if t]

    def cells(pieces: list[tuple[str, str]]) -> int:
        return sum(cell_len(t) for t, _ in pieces) + len(pieces)  # each with the space before it

    core = figures(False)
    bar_min = BAR_MIN
    if cells(core) + bar_min > width:
        core, bar_min = figures(True), BAR_MIN_COMPACT
    free = width - cells(core) - bar_min

    # Optional pieces, most useful first, each only if it still fits beside a minimal bar.
    if terminal:
        mark, mark_style = _MARK.get(state.state, ("•", ""))
    else:
        mark, mark_style = SPINNER[int(now * 10) % len(SPINNER)], "green"
    label = fmt.state_label(state.state)
    if state.state == job_pb2.JOB_STATE_RUNNING and state.stage not in (
        job_pb2.JOB_STAGE_UNSPECIFIED,
        job_pb2.JOB_STAGE_DONE,
    ):
        label = fmt.stage_label(state.stage)
    elapsed = ""
    if state.elapsed_s is not None:
        elapsed = f"in {fmt.clock(state.elapsed_s)}" if terminal else f"elapsed {fmt.clock(state.elapsed_s)}"
    before: list[tuple[str, str]] = []
    after: list[tuple[str, str]] = []
    for text, style, where in ((label, "bold", before), (elapsed, "dim", after), (mark, mark_style, before)):
        if text and cell_len(text) + 1 <= free:
            where.append((text, style))
            free -= cell_len(text) + 1
    if before and before[-1][0] == mark:  # the mark goes first
        before.insert(0, before.pop())

    current = ""
    if state.current and free - 1 >= FILE_MIN:
        # The file comes first; past twice FILE_MIN the bar takes a third of what is left (and grows again
        # when the file is shorter than its share).
        bar_extra = min(BAR_MAX - bar_min, max(0, (free - 1 - 2 * FILE_MIN) // 3))
        room = free - 1 - bar_extra
        current = shorten_path(state.current, room)
        bar_extra = min(BAR_MAX - bar_min, free - 1 - cell_len(current))
        free -= cell_len(current) + 1
    else:
        bar_extra = min(BAR_MAX - bar_min, free)
    bar_width = bar_min + max(0, bar_extra)

    line = Text(no_wrap=True, overflow="crop", end="")
    for text, style in before:
        line.append(text, style=style)
        line.append(" ")
    line.append_text(_bar(state, bar_width, now))
    for text, style in [*core, *after]:
        line.append(" ")
        line.append(text, style=style)
    if current:
        line.append(" ")
        line.append(current, style="dim")
    return line


class _LiveLine:
    """The renderable a rich Live redraws: the latest update, laid out for the width of each refresh."""

    def __init__(self) -> None:
        self.update: job_pb2.JobUpdate | None = None
        self._received = time.monotonic()

    def set(self, update: job_pb2.JobUpdate) -> None:
        self.update = update
        self._received = time.monotonic()

    def elapsed(self, now: float) -> float | None:
        update = self.update
        if update is None or not update.HasField("job") or not update.job.HasField("start_time"):
            return None
        job = update.job
        start = job.start_time.ToNanoseconds()
        if is_terminal(update.state) and job.HasField("finish_time"):
            return max(0.0, (job.finish_time.ToNanoseconds() - start) / 1e9)
        # Server time of the update, plus local time since it arrived: no clock skew between the two machines.
        at = update.update_time.ToNanoseconds() if update.HasField("update_time") else job.update_time.ToNanoseconds()
        return max(0.0, (at - start) / 1e9 + (now - self._received))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.update is None:
            return
        now = time.monotonic()
        yield progress_line(line_state(self.update, self.elapsed(now)), options.max_width, now)


class RichBar:
    """The live line on a terminal. Drawn from the first update on (never for a job not seen yet); the last
    frame stays on screen as the record of how the job ended."""

    def __init__(self, console: Console) -> None:
        self._line = _LiveLine()
        self._live = Live(self._line, console=console, refresh_per_second=10, transient=False, auto_refresh=True)
        self._started = False

    def start(self) -> None:
        pass  # the first update starts the display

    def update(self, update: job_pb2.JobUpdate) -> None:
        self._line.set(update)
        if not self._started:
            self._live.start()
            self._started = True
        self._live.refresh()

    def note(self, text: str) -> None:
        self._live.console.print(Text(fmt.printable(text)))

    def stop(self) -> None:
        if self._started:
            self._live.refresh()
            self._live.stop()
            self._started = False


class PlainLines:
    """One plain line per `interval` seconds, plus one at every change of state or stage and at the end."""

    def __init__(self, stream: TextIO, interval: float) -> None:
        self._stream = stream
        self._interval = interval
        self._last_print = float("-inf")
        self._last_key: tuple[int, int] | None = None

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
        print(fmt.printable(fmt.progress_text(update)), file=self._stream, flush=True)

    def note(self, text: str) -> None:
        print(fmt.printable(text), file=self._stream, flush=True)

    def stop(self) -> None:
        pass


class JsonLines(PlainLines):
    """Like PlainLines, but each progress line is {"event": "update", "update": <JobUpdate as proto3 JSON>}.
    Notes go to stderr so stdout stays pure JSON."""

    def _emit(self, update: job_pb2.JobUpdate) -> None:
        print(fmt.json_line({"event": "update", "update": fmt.update_dict(update)}), file=self._stream, flush=True)

    def note(self, text: str) -> None:
        print(fmt.printable(text), file=sys.stderr, flush=True)

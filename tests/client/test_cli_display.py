"""How the CLI turns data into text, without a server: escaping (fmt.printable, fmt.json_line), the progress
line's layout at 40/80/200 columns, path shortening, local times under non-UTC zones, durations, addresses, job id
prefixes and table columns. The end-to-end tests (test_cli_terminal.py, test_cli_messages.py) run the same code
through a real terminal and a real server."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from reelscan.client import format as fmt
from reelscan.client.commands import common
from reelscan.client.connection import normalize_address
from reelscan.client.progress import LineState, line_state, progress_line, shorten_path
from reelscan.v1 import job_pb2, scan_pb2

# name -> what the screen must show for it
ESCAPES = {
    "bad\x1b]0;PWNED\x07title.mp4": "bad\\x1b]0;PWNED\\x07title.mp4",
    "line\nbreak\ttab\rcr\x08bs\x00nul\x7fdel.mp4": "line\\x0abreak\\x09tab\\x0dcr\\x08bs\\x00nul\\x7fdel.mp4",
    "c1\x9b31mcsi\x85nel.mp4": "c1\\u009b31mcsi\\u0085nel.mp4",
    "evil\u202egpj.mp4": "evil\\u202egpj.mp4",
    "\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u2028\u2029": (
        "\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c\\u2028\\u2029"
    ),
    "raw\udcffbyte\udc80.mp4": "raw\\xffbyte\\x80.mp4",  # a local non-UTF-8 name, as Python decodes it
}
UNTOUCHED = [
    "Movie 1 [eng] [x265] (2019).mp4",
    "[red]broken[reverse].mp4",
    ":smile: [bold]x[/bold] [link=http://x]y[/link].mp4",
    "café 日本語 ‍👩‍👩‍👧 .mp4",
    "server-escaped raw\\xffbyte and a\\\\backslash.mp4",
]


@pytest.mark.parametrize("name", list(ESCAPES))
def test_printable_escapes_controls_bidi_and_surrogates(name: str) -> None:
    shown = fmt.printable(name)
    assert shown == ESCAPES[name]
    assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\ud800-\udfff]", shown)
    shown.encode("utf-8")  # writable to any UTF-8 terminal


@pytest.mark.parametrize("name", UNTOUCHED)
def test_printable_leaves_markup_and_ordinary_unicode_alone(name: str) -> None:
    assert fmt.printable(name) == name


def test_json_lines_keep_the_exact_value_but_no_raw_unsafe_character() -> None:
    names = [*ESCAPES, *UNTOUCHED]
    line = fmt.json_line({"paths": names})
    assert json.loads(line) == {"paths": names}
    assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\ud800-\udfff]", line)
    assert "日本語" in line  # still UTF-8, not \u-escaped wholesale


def test_output_on_a_pipe_escapes_every_cell_and_line(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "out.txt")
    with open(path, "w", encoding="utf-8") as stream:
        out = common.Output(stream)
        out.line("bad\x1b[2Jname")
        out.table(("PATH", "REASON"), [["a\tb\nc[red]", "why\x07"]])
        out.fields([("path", "x\u202ey")])
    with open(path, encoding="utf-8") as written:
        text = written.read()
    assert text.splitlines() == [
        "bad\\x1b[2Jname",
        "PATH\tREASON",
        "a\\x09b\\x0ac[red]\twhy\\x07",
        "path: x\\u202ey",
    ]


def update_for(
    progress: float, done: int, total: int, item: str, *, rate: float = 35.2, eta_s: int = 5
) -> job_pb2.JobUpdate:
    update = job_pb2.JobUpdate(
        job_id="j",
        seq=3,
        state=job_pb2.JOB_STATE_RUNNING,
        progress=progress,
        progress_detail=job_pb2.JobProgress(
            stage=job_pb2.JOB_STAGE_PROBING,
            items_done=done,
            items_total=total,
            current_item=item,
            items_per_second=rate,
            eta=duration_pb2.Duration(seconds=eta_s),
        ),
    )
    update.job.scan.path = "/srv/media"
    return update


LONG_EPISODE = "/srv/media/Show/Season 1/The Extremely Long Name Of A Show - S01E340 - The Title Of It.mkv"


def assert_line_intact(text: str, width: int, counts: str, rate: str, eta: str) -> None:
    assert len(text) <= width, (width, text)
    assert re.search(r"━{4,}", text), text  # the bar
    assert re.search(r"\b40%", text), text
    assert counts in text and rate in text and eta in text, text


@pytest.mark.parametrize("width", [40, 41, 50, 60, 80, 120, 200])
def test_progress_line_keeps_bar_percent_counts_rate_and_eta_at_every_width(width: int) -> None:
    state = line_state(update_for(0.4, 120, 300, LONG_EPISODE), elapsed_s=3)
    line = progress_line(state, width, now=0).plain
    assert_line_intact(line, width, "120/300", "35.2/s", "ETA 0:05")
    if width >= 80:
        assert "elapsed 0:03" in line and "probing" in line
        assert line.endswith(".mkv")  # the current file, shortened but with its extension


@pytest.mark.parametrize("width", [40, 80, 200])
def test_huge_counts_use_compact_figures_but_keep_every_piece(width: int) -> None:
    state = line_state(update_for(0.4, 123_456, 300_000, LONG_EPISODE, rate=12_345.6, eta_s=3725), elapsed_s=8000)
    line = progress_line(state, width, now=0).plain
    assert len(line) <= width
    assert re.search(r"━{3,}", line) and "40%" in line and "ETA" in line and "/s" in line
    assert ("123456/300000" in line) or ("123k/300k" in line)


def test_the_current_file_is_shortened_in_the_middle_keeping_folder_and_extension() -> None:
    state = line_state(update_for(0.4, 120, 300, LONG_EPISODE), elapsed_s=3)
    line = progress_line(state, 120, now=0).plain
    current = line.split("elapsed 0:03 ", 1)[1]
    assert current.startswith("…/Season 1/The Extremely") and current.endswith("Of It.mkv"), current
    assert "…" in current[3:]
    # At 200 columns it fits whole, relative to the scan's root.
    assert (
        "Show/Season 1/The Extremely Long Name Of A Show - S01E340 - The Title Of It.mkv"
        in progress_line(state, 200, now=0).plain
    )


def test_names_in_the_progress_line_are_escaped_and_not_markup() -> None:
    for name, shown in [
        ("/srv/media/[red]broken[reverse].mp4", "[red]broken[reverse].mp4"),
        ("/srv/media/bad\x1b]0;PWNED\x07.mp4", "bad\\x1b]0;PWNED\\x07.mp4"),
        ("/srv/media/x\u202etxt.mp4", "x\\u202etxt.mp4"),
    ]:
        line = progress_line(line_state(update_for(0.4, 1, 3, name), elapsed_s=1), 200, now=0)
        assert line.plain.endswith(shown)
        assert not line.spans or all("red" not in str(span.style) for span in line.spans)


@pytest.mark.parametrize(
    ("path", "width", "expected"),
    [
        (LONG_EPISODE, 200, LONG_EPISODE),
        ("Season 1/The Extremely Long Name Of A Show - S01E340.mkv", 30, "Season 1/The Extr… S01E340.mkv"),
        ("/a/b/Season 1/ep-0001-some-very-long-title.mp4", 28, "…/Season 1/ep-000…-title.mp4"),
    ],
)
def test_shorten_path(path: str, width: int, expected: str) -> None:
    assert shorten_path(path, width) == expected


@pytest.mark.parametrize("width", range(6, 90, 7))
def test_shortened_paths_fit_and_keep_the_extension(width: int) -> None:
    short = shorten_path(LONG_EPISODE, width)
    assert len(short) <= width
    if width >= 12:
        assert short.endswith(".mkv")
    if width >= 30:
        assert "Season 1/" in short


def test_a_finished_job_line_shows_how_long_it_took() -> None:
    state = LineState(job_pb2.JOB_STATE_SUCCEEDED, 5, 1.0, "300 files", "300 files", 0, None, 72, "", False)
    line = progress_line(state, 80, now=0).plain
    assert line.startswith("✓ succeeded ━") and "100% 300 files in 1:12" in line


@pytest.fixture(params=["America/New_York", "Asia/Kolkata"])
def zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_times_are_local_with_their_zone_on_a_terminal_and_iso_8601_elsewhere(zone: str) -> None:
    # 2026-07-01 12:00:00 UTC: New York is on EDT (-04:00), Kolkata on IST (+05:30).
    ts = timestamp_pb2.Timestamp(seconds=int(datetime.datetime(2026, 7, 1, 12, tzinfo=datetime.UTC).timestamp()))
    local = datetime.datetime(2026, 7, 1, 12, tzinfo=datetime.UTC).astimezone(ZoneInfo(zone))
    assert fmt.local_time(ts) == f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"
    assert fmt.local_time(ts, tty=False) == local.isoformat()
    assert {"America/New_York": "2026-07-01 08:00:00 EDT", "Asia/Kolkata": "2026-07-01 17:30:00 IST"}[zone] == (
        fmt.local_time(ts)
    )
    assert fmt.local_time(ts, tty=False).endswith({"America/New_York": "-04:00", "Asia/Kolkata": "+05:30"}[zone])


def test_durations_and_sizes_in_human_units() -> None:
    assert [fmt.short_duration(s) for s in (0.42, 12.34, 245, 7400, 3 * 86400 + 4 * 3600)] == [
        "0.42s",
        "12.3s",
        "4m 05s",
        "2h 03m",
        "3d 04h",
    ]
    assert [fmt.size(n) for n in (512, 4_800, 12_345_678, 3 * 10**12)] == ["512 B", "4.8 kB", "12.3 MB", "3.0 TB"]


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("localhost", "localhost:50051"),
        ("127.0.0.1", "127.0.0.1:50051"),
        ("127.0.0.1:7000", "127.0.0.1:7000"),
        ("::1", "[::1]:50051"),
        ("[::1]", "[::1]:50051"),
        ("[::1]:7000", "[::1]:7000"),
        ("unix:/run/reelscan.sock", "unix:/run/reelscan.sock"),
        ("dns:///reelscan.internal:7000", "dns:///reelscan.internal:7000"),
    ],
)
def test_a_bare_host_means_port_50051(given: str, used: str) -> None:
    assert normalize_address(given) == used


@pytest.mark.parametrize("bad", ["", "host:abc", "host:", "host:0", "host:70000"])
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_address(bad)


def test_settings_errors_name_the_flag_or_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    def ns(**kwargs: object) -> argparse.Namespace:
        base = {"server": None, "token": None, "tls_ca": None, "rpc_timeout": None, "connect_timeout": None}
        return argparse.Namespace(**{**base, **kwargs})

    monkeypatch.setenv("REELSCAN_SERVER", "db.internal:http")
    with pytest.raises(common.UsageError, match=r"^REELSCAN_SERVER='db.internal:http': .*port"):
        common.resolve_settings(ns())
    with pytest.raises(common.UsageError, match=r"^--server='x:y'"):
        common.resolve_settings(ns(server="x:y"))
    monkeypatch.setenv("REELSCAN_SERVER", "db.internal")
    monkeypatch.setenv("REELSCAN_RPC_TIMEOUT", "soon")
    with pytest.raises(common.UsageError, match=r"^REELSCAN_RPC_TIMEOUT='soon': not a number"):
        common.resolve_settings(ns())
    monkeypatch.delenv("REELSCAN_RPC_TIMEOUT")
    resolved = ns()
    common.resolve_settings(resolved)
    assert resolved.server == "db.internal:50051" and resolved.rpc_timeout == 30.0


def job(job_id: str, state: job_pb2.JobState = job_pb2.JOB_STATE_SUCCEEDED) -> job_pb2.Job:
    return job_pb2.Job(id=job_id, state=state, scan=scan_pb2.ScanSpec(path=f"/srv/{job_id[:4]}"))


JOBS = [job("3f2a9c" + "0" * 26), job("3f2a9c" + "1" * 26), job("7b7b7b" + "2" * 26, job_pb2.JOB_STATE_RUNNING)]


def test_a_unique_prefix_resolves_to_the_full_id() -> None:
    assert common.match_job_prefix("7b7b7b", JOBS) == JOBS[2].id
    assert common.match_job_prefix("3F2A9C1", JOBS) == JOBS[1].id  # hex prefixes are case-insensitive


def test_an_ambiguous_prefix_lists_the_matches() -> None:
    with pytest.raises(common.UsageError) as raised:
        common.match_job_prefix("3f2a9c", JOBS)
    message = str(raised.value)
    assert "matches 2 jobs" in message
    assert JOBS[0].id in message and JOBS[1].id in message and JOBS[2].id not in message


def test_a_too_short_prefix_is_a_usage_error() -> None:
    with pytest.raises(common.UsageError, match="at least 6 characters"):
        common.match_job_prefix("3f2a9", JOBS)


def test_no_match_hands_the_text_to_the_server() -> None:
    assert common.match_job_prefix("no-such-job", JOBS) == "no-such-job"


def test_a_full_id_is_used_without_listing_jobs() -> None:
    class NoListing:
        def list_jobs(self, **_: object) -> Iterator[job_pb2.Job]:
            raise AssertionError("a full id must not be looked up")

    full = "3f2a9c" + "0" * 26
    assert common.resolve_job_id(NoListing(), full) == full  # type: ignore[arg-type]
    assert common.resolve_job_id(NoListing(), full.upper()) == full  # type: ignore[arg-type]


def test_tables_never_cut_ids_and_drop_optional_columns_first() -> None:
    headers = ("ID", "STATE", "CREATED", "PATH", "RESULT")
    rows = [["0123456789abcdef0123456789abcdef", "succeeded", "21:08:41 EST", "/srv/media/" + "x" * 60, "20 found"]]
    for width, expected in [(200, headers), (80, ("ID", "STATE", "CREATED", "PATH")), (40, ("ID", "STATE", "PATH"))]:
        keep, needed = common.fitting_columns(headers, rows, width, fold=("PATH",), optional=("RESULT", "CREATED"))
        assert tuple(headers[i] for i in keep) == expected
        assert needed >= 32

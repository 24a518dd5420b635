"""The CLI in real terminals against a real server, with file names chosen to break it: brackets and rich
markup, emoji codes, an OSC title-setting escape sequence, a bidi override, a 250-character name and bytes that
are not UTF-8. What the screen shows (tmux capture-pane) must be the escaped name; no escape sequence from a name
may reach the terminal (the raw bytes of a pseudo-terminal); the progress bar must stay whole at 40, 80 and 200
columns."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.conftest import Templates, cli_env, reelscan_cmd, run_cli
from tests.client.terminal import Tmux, foreign_escapes, run_in_pty
from tests.helpers.server import ServerProcess
from tests.media import copy_clip

LONG_NAME = "E" * 246 + ".mp4"  # 250 characters
# File name (bytes) -> what the server stores and sends (its library form) -> what the screen must show.
GOOD = {
    b"Movie 1 [eng] [x265] (2019).mp4": "Movie 1 [eng] [x265] (2019).mp4",
    b"[red]broken[reverse].mp4": "[red]broken[reverse].mp4",
    b":smile: [bold]face [link=x]y.mp4": ":smile: [bold]face [link=x]y.mp4",
    "x\u202etxt.mp4".encode(): "x\\u202etxt.mp4",
    LONG_NAME.encode(): LONG_NAME,
    b"raw\xffgood.mp4": "raw\\xffgood.mp4",
}
BROKEN = {
    b"bad\x1b]0;PWNED\x07title.mp4": "bad\\x1b]0;PWNED\\x07title.mp4",
    b"[red]broken-probe[reverse].mp4": "[red]broken-probe[reverse].mp4",
    "evil\u202egpj.mp4".encode(): "evil\\u202egpj.mp4",
    b"raw\xffbad.mp4": "raw\\xffbad.mp4",
    b"c1\xc2\x9b31mcsi.mp4": "c1\\u009b31mcsi.mp4",
}
FILLER = 300  # enough clips that a forced scan runs for a few seconds: time to look at the bar


@dataclass(frozen=True)
class Hostile:
    root: Path
    job_id: str


@pytest.fixture(scope="module")
def hostile(cli_server: ServerProcess, scan_root: Path, templates: Templates) -> Hostile:
    root = scan_root / "hostile"
    season = root / "Show" / "Season 1"
    season.mkdir(parents=True)
    for i in range(FILLER):
        copy_clip(templates.sd, season / f"The Extremely Long Name Of A Show - S01E{i:03d} - The Title Of It.mp4")
    broken = templates.broken.read_bytes()
    clip = templates.sd.read_bytes()
    for names, data in ((GOOD, clip), (BROKEN, broken)):
        for name in names:
            with open(os.fsencode(root) + b"/" + name, "wb") as f:
                f.write(data)
    result = run_cli("scan", str(root), "--json", server=cli_server, timeout=120)
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout.splitlines()[0])["job"]["id"]
    return Hostile(root, job_id)


def shown_paths(hostile: Hostile, names: dict[bytes, str]) -> list[str]:
    return [f"{hostile.root}/{shown}" for shown in names.values()]


def test_scan_errors_on_a_terminal_show_each_name_escaped_and_leave_the_terminal_alone(
    cli_server: ServerProcess, hostile: Hostile
) -> None:
    with Tmux(reelscan_cmd("errors", hostile.job_id, server=cli_server), width=400, env=cli_env()) as term:
        code, screen = term.wait_exit()
        title = term.title()
    assert code == 0, screen
    lines = screen.splitlines()
    for path in shown_paths(hostile, BROKEN):
        assert any(line.startswith(path + " ") for line in lines), f"{path!r} not shown as is:\n{screen}"
    assert "PWNED" not in title  # the OSC 0 sequence never reached the terminal
    assert "probe failed" in screen


def test_videos_list_on_a_terminal_shows_brackets_markup_and_escapes_literally(
    cli_server: ServerProcess, hostile: Hostile
) -> None:
    command = reelscan_cmd("videos", "list", "--prefix", str(hostile.root), "--limit", "0", server=cli_server)
    with Tmux(command, width=400, height=60, env=cli_env()) as term:
        code, screen = term.wait_exit()
    assert code == 0, screen
    for path in shown_paths(hostile, GOOD):
        assert re.search(rf"^\S+\s+{re.escape(path)}\s", screen, re.MULTILINE), f"{path!r} not shown:\n{screen}"
    assert "😄" not in screen  # :smile: is a name, not an emoji code


def test_no_escape_sequence_from_a_name_reaches_the_terminal(cli_server: ServerProcess, hostile: Hostile) -> None:
    commands = {
        "scan": reelscan_cmd("scan", str(hostile.root), "--force", server=cli_server),
        "errors": reelscan_cmd("errors", hostile.job_id, server=cli_server),
        "list": reelscan_cmd("videos", "list", "--prefix", str(hostile.root), "--limit", "0", server=cli_server),
        "get": reelscan_cmd("videos", "get", f"{hostile.root}/x\u202etxt.mp4", server=cli_server),
        "job": reelscan_cmd("jobs", "get", hostile.job_id, server=cli_server),
    }
    shown = {}
    for key, command in commands.items():
        code, raw = run_in_pty(command, env=cli_env(), columns=100)
        assert code == 0, raw[-3000:]
        assert foreign_escapes(raw) == [], (command, foreign_escapes(raw)[:10])
        assert b"\xff" not in raw  # an undecodable byte is shown as \xff, never written raw
        shown[key] = raw.decode()
    # What was written instead: the escaped names.
    assert "bad\\x1b]0;PWNED\\x07title.mp4" in shown["scan"] and "evil\\u202egpj.mp4" in shown["errors"]
    assert "x\\u202etxt.mp4" in shown["get"] and "raw\\xffgood.mp4" in shown["list"]


def test_plain_output_escapes_names_and_json_keeps_them_exact(cli_server: ServerProcess, hostile: Hostile) -> None:
    plain = run_cli("errors", hostile.job_id, server=cli_server)
    assert plain.returncode == 0, plain.stderr
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", plain.stdout)
    rows = [line.split("\t") for line in plain.stdout.splitlines()[1:]]
    assert sorted(row[0] for row in rows) == sorted(shown_paths(hostile, BROKEN))

    as_json = run_cli("errors", hostile.job_id, "--json", server=cli_server)
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]", as_json.stdout)  # as JSON \u escapes
    paths = sorted(json.loads(line)["path"] for line in as_json.stdout.splitlines())
    # The server's exact values: raw ESC/BEL, a real U+202E and U+009B, its \xNN form for a byte that is not UTF-8.
    expected = {
        "bad\x1b]0;PWNED\x07title.mp4",
        "[red]broken-probe[reverse].mp4",
        "evil\u202egpj.mp4",
        "raw\\xffbad.mp4",
        "c1\x9b31mcsi.mp4",
    }
    assert paths == sorted(f"{hostile.root}/{name}" for name in expected)

    scanned = run_cli("scan", str(hostile.root), "--force", "--progress-interval", "0.05", server=cli_server)
    assert scanned.returncode == 0, scanned.stderr
    assert "\x1b" not in scanned.stdout and "\x07" not in scanned.stdout and "\u202e" not in scanned.stdout
    assert f"{hostile.root}/bad\\x1b]0;PWNED\\x07title.mp4: probe failed" in scanned.stdout


BAR_LINE = re.compile(r"━")


def progress_rows(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if BAR_LINE.search(line) and re.search(r"\d+%", line)]


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_progress_bar_stays_whole_at_40_80_and_200_columns(
    cli_server: ServerProcess, hostile: Hostile, width: int
) -> None:
    command = reelscan_cmd("scan", str(hostile.root), "--force", server=cli_server)
    running = re.compile(r"━{3,}.*?\s(\d{1,2})% (\d+)/(\d+) [\d.]+/s ETA \d+:\d\d")
    with Tmux(command, width=width, env=cli_env()) as term:
        screen = term.wait_for(lambda s: any(running.search(row) for row in progress_rows(s)), timeout=60)
        row = next(row for row in progress_rows(screen) if running.search(row))
        code, final = term.wait_exit()
    assert code == 0, final
    assert len(row.rstrip()) <= width
    if width >= 80:
        assert re.search(r"probing .*elapsed \d+:\d\d", row), row
    if width >= 200:
        # The file being probed, relative to the root, shortened in the middle if need be, keeping its extension.
        assert re.search(r"(Show/Season 1/|…/Season 1/).*\.mp4$", row.rstrip()), row
    done = [r for r in progress_rows(final) if "100%" in r]
    assert done and "succeeded" in done[-1] and re.search(r"━ 100% \d+ files", done[-1]), final
    if width >= 80:
        assert re.search(r"\d+ files in \d+:\d\d", done[-1]), final  # how long it took


def test_bar_frames_in_raw_output_never_exceed_the_terminal_width(cli_server: ServerProcess, hostile: Hostile) -> None:
    # Rich redraws the line in place; every frame between cursor moves must fit in 40 columns (no wrapping, which
    # would leave broken bars behind on screen).
    code, raw = run_in_pty(
        reelscan_cmd("scan", str(hostile.root), "--force", server=cli_server), env=cli_env(), columns=40
    )
    assert code == 0
    unstyled = re.sub(rb"\x1b\[[0-9;]*m", b"", raw)  # colours; what is left of CSI moves the cursor
    frames = [f for f in re.split(rb"\x1b\[[0-9;?]*[A-Za-z]|\r|\n", unstyled) if "━".encode() in f]
    assert frames
    assert max(len(f.decode()) for f in frames) <= 40

"""Fixtures for the client tests: real clips (tests/media.py), one shared real server that probes slowly enough
to watch progress and cancel, and a helper that runs the `reelscan` console script against it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.server import ServerProcess
from tests.media import copy_clip, make_clip, make_random_bytes

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Each probe sleeps this long in its worker (hidden --probe-delay), so a scan of N files takes about
# N * PROBE_DELAY / PROBE_WORKERS seconds: long enough to see progress move and to cancel it mid-way.
PROBE_DELAY = 0.02
PROBE_WORKERS = 2


@dataclass(frozen=True)
class Templates:
    """Encoded once per session; libraries are byte copies (each one its own file to probe)."""

    sd: Path  # 64x48 H.264/AAC MP4
    hd: Path  # 1280x720 H.264 MP4
    broken: Path  # noise with a video extension: a per-file scan error


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    directory = tmp_path_factory.mktemp("templates")
    return Templates(
        sd=make_clip(directory / "sd.mp4", audio_language="eng").path,
        hd=make_clip(directory / "hd.mp4", width=1280, height=720, duration_s=0.4, audio_codec=None).path,
        broken=make_random_bytes(directory / "broken.mp4"),
    )


def make_library(
    directory: Path, templates: Templates, count: int, *, broken: int = 0, hd: Sequence[str] = ()
) -> list[Path]:
    """Fills `directory` with `count` SD clips, `broken` unprobeable files and HD clips named `hd`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [copy_clip(templates.sd, directory / f"clip-{i:04d}.mp4") for i in range(count)]
    files += [Path(shutil.copyfile(templates.broken, directory / f"broken-{i}.mp4")) for i in range(broken)]
    files += [copy_clip(templates.hd, directory / name) for name in hd]
    return files


@pytest.fixture(scope="session")
def scan_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the shared server may scan; each test takes its own sub-directory (see `library_dir`)."""
    return tmp_path_factory.mktemp("scan-root")


@pytest.fixture(scope="session")
def cli_server(tmp_path_factory: pytest.TempPathFactory, scan_root: Path) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("cli-db") / "reelscan.db"
    args = ["--probe-delay", str(PROBE_DELAY), "--probe-workers", str(PROBE_WORKERS)]
    with ServerProcess(db, allow_roots=[scan_root], extra_args=args) as server:
        yield server


@pytest.fixture
def library_dir(scan_root: Path) -> Path:
    """A fresh directory under the shared server's root, so scans of different tests never share a root (the
    server de-duplicates concurrent scans of one root) and every file in it is new to the library."""
    return Path(tempfile.mkdtemp(dir=scan_root, prefix="lib-"))


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELSCAN_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Rich honours these even without a terminal; the non-TTY tests must see what a pipe really gets.
    for key in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(key, None)
    env.update(extra or {})
    return env


def reelscan_cmd(*args: str, server: ServerProcess | None = None) -> list[str]:
    """The `reelscan` console script, as installed, with --server pointing at `server`."""
    cmd = [str(BIN / "reelscan"), *args]
    return [*cmd, "--server", server.address] if server is not None else cmd


def run_cli(
    *args: str, server: ServerProcess | None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        reelscan_cmd(*args, server=server),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
        stdin=subprocess.DEVNULL,
        check=False,
    )

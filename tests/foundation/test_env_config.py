"""REELSCAN_* environment variables as an operator meets them, through a real `python -m reelscan.service`: a bad
value is reported under the variable's name (not the flag argparse would name), and only when no flag overrides
it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.server import ServerProcess


def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REELSCAN_")}
    return subprocess.run(
        [sys.executable, "-m", "reelscan.service", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **env},
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REELSCAN_MAX_CONCURRENT_JOBS", "abc", "REELSCAN_MAX_CONCURRENT_JOBS: invalid int value 'abc'"),
        ("REELSCAN_MAX_QUEUED_JOBS", "1.5", "REELSCAN_MAX_QUEUED_JOBS: invalid int value '1.5'"),
        ("REELSCAN_MAX_MESSAGE_BYTES", "", "REELSCAN_MAX_MESSAGE_BYTES: invalid int value ''"),
        ("REELSCAN_JOB_TIMEOUT", "1h", "REELSCAN_JOB_TIMEOUT: invalid float value '1h'"),
        ("REELSCAN_LEASE_TTL", "ten", "REELSCAN_LEASE_TTL: invalid float value 'ten'"),
        ("REELSCAN_PROBER", "mediainfo", "REELSCAN_PROBER: invalid choice 'mediainfo' (choose from 'pyav', 'ffprobe')"),
        ("REELSCAN_LOG_LEVEL", "LOUD", "REELSCAN_LOG_LEVEL: --log-level: invalid level 'LOUD'"),
        ("REELSCAN_LOG_FORMAT", "xml", "REELSCAN_LOG_FORMAT: invalid choice 'xml' (choose from 'text', 'json')"),
        ("REELSCAN_METRICS_LISTEN", "9464", "REELSCAN_METRICS_LISTEN: --metrics-listen must be HOST:PORT"),
        ("REELSCAN_MAX_CONCURRENT_JOBS", "0", "REELSCAN_MAX_CONCURRENT_JOBS: --max-concurrent-jobs must be positive"),
        ("REELSCAN_LISTEN", "nowhere", "REELSCAN_LISTEN: --listen must be HOST:PORT, got 'nowhere'"),
        ("REELSCAN_DB", "mysql://db/x", "REELSCAN_DB: --db: unknown URL scheme 'mysql'"),
    ],
)
def test_a_bad_value_names_the_variable(tmp_path: Path, variable: str, value: str, message: str) -> None:
    env = {"REELSCAN_DB": str(tmp_path / "db.sqlite"), variable: value}
    result = serve(env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "usage:" in result.stderr and "Traceback" not in result.stderr
    assert "argument --" not in result.stderr  # argparse's wording, naming a flag the operator never typed


def test_a_flag_on_the_command_line_wins_over_a_bad_variable(tmp_path: Path) -> None:
    env = {"REELSCAN_MAX_CONCURRENT_JOBS": "abc", "REELSCAN_LOG_LEVEL": "debug"}  # level: any case, as before
    with ServerProcess(tmp_path / "db.sqlite", extra_args=["--max-concurrent-jobs", "3"], env=env) as server:
        assert server.proc is not None and server.proc.poll() is None
    assert " DEBUG " in server.log  # REELSCAN_LOG_LEVEL took effect
    # Without the flag, the same variable stops the start.
    result = serve("--db", str(tmp_path / "db.sqlite"), env={"REELSCAN_MAX_CONCURRENT_JOBS": "abc"})
    assert result.returncode == 2 and "REELSCAN_MAX_CONCURRENT_JOBS: invalid int value 'abc'" in result.stderr


def test_help_still_works_with_a_bad_variable() -> None:
    result = serve("--help", env={"REELSCAN_MAX_CONCURRENT_JOBS": "abc", "COLUMNS": "400"})  # one line per flag
    assert result.returncode == 0, result.stderr
    assert "REELSCAN_MAX_CONCURRENT_JOBS; default abc" in result.stdout

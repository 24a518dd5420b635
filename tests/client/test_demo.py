"""`make demo` (examples/demo.py) runs end to end: clips made with PyAV, a server, a scan, a listing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.client.conftest import REPO, cli_env


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--clips", "16", "--fast", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert len(list((tmp_path / "clips").iterdir())) == 16
    assert "$ reelscan scan" in out and "succeeded" in out
    assert "discovered 16" in out and "failed 2" in out  # the demo's two broken files are reported
    assert "holiday-2023" in out  # the video listing and the search
    assert "Server stopped" in out

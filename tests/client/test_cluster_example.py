"""`make cluster` (examples/cluster.py): a throwaway PostgreSQL and three replicas that share it, for a newcomer."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from reelscan.client import ReelscanClient, is_terminal
from tests.client.conftest import REPO, cli_env
from tests.helpers.postgres import find_bin_dir, free_port
from tests.media import make_clip

REPLICA = re.compile(r"replica (\d): (127\.0\.0\.1:\d+) \(pid (\d+)\)")


@pytest.mark.skipif(find_bin_dir() is None, reason="PostgreSQL server binaries (pg_ctl, initdb) not found")
def test_cluster_starts_three_replicas_that_share_jobs(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        make_clip(media / f"clip{i}.mp4")
    # three ports each free on its own: BASE, BASE+1, BASE+2 can collide with another test's ephemeral port
    chosen: set[int] = set()
    while len(chosen) < 3:
        chosen.add(free_port())
    ports = ",".join(map(str, sorted(chosen)))
    pg_dir = Path(tempfile.mkdtemp(prefix="reelscan-cluster-"))
    pg_dir.chmod(0o755)  # initdb runs as the postgres user when we are root: it must reach its directory
    command = [
        sys.executable, str(REPO / "examples" / "cluster.py"), "--dir", str(pg_dir / "pg"),
        "--ports", ports, "--pg-port", str(free_port()), "--allow-root", str(media),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
    assert proc.stdout is not None
    replicas: list[str] = []
    output: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while len(replicas) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if match := REPLICA.search(line):
                replicas.append(match.group(2))
        assert len(replicas) == 3, "".join(output)
        with ReelscanClient(replicas[1], timeout=30) as second, ReelscanClient(replicas[2], timeout=30) as third:
            job = second.scan_and_wait(str(media))
            assert is_terminal(job.state) and job.result.new == 3
            seen_elsewhere = third.get_job(job.id)  # any replica serves any job
            assert seen_elsewhere.state == job.state and seen_elsewhere.result.new == 3
            assert seen_elsewhere.replica_address in replicas
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        shutil.rmtree(pg_dir, ignore_errors=True)
    assert proc.returncode == 0, "".join(output) + rest
    assert "stopped" in rest

"""The CLI and sharded scans: `reelscan scan --sharding`, `reelscan jobs list --parent`, shards in `jobs get`.

The shared CLI server (SQLite, one server) runs sharded scans on its own slots, the same code path replicas run.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.client.conftest import Templates, make_library, run_cli
from tests.helpers.server import ServerProcess


def test_a_sharded_scan_from_the_cli_lists_and_describes_its_shards(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 6, broken=1)
    scanned = run_cli("scan", str(library_dir), "--sharding", "always", "--json", server=cli_server)
    assert scanned.returncode == 0, scanned.stderr
    events = [json.loads(line) for line in scanned.stdout.splitlines()]
    final = events[-1]["job"]
    parent = final["id"]
    assert final["state"] == "JOB_STATE_SUCCEEDED"
    assert int(final["result"]["new"]) == 6 and int(final["result"]["failed"]) == 1  # int64: JSON strings

    listed = run_cli("jobs", "list", "--parent", parent, "--json", server=cli_server)
    assert listed.returncode == 0, listed.stderr
    shards = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(shards) == 2 and all(s["parentId"] == parent for s in shards), shards
    assert sorted(s["id"] for s in shards) == [f"{parent}-001", f"{parent}-002"]
    top = run_cli("jobs", "list", "--limit", "0", "--json", server=cli_server)
    top_ids = {json.loads(line)["id"] for line in top.stdout.splitlines()}
    assert parent in top_ids and not top_ids & {s["id"] for s in shards}

    described = run_cli("jobs", "get", parent[:10], server=cli_server)  # a prefix of the parent's id
    assert described.returncode == 0, described.stderr
    assert "2 (2 succeeded)" in described.stdout and f"jobs list --parent {parent}" in described.stdout
    shard = run_cli("jobs", "get", shards[0]["id"], server=cli_server)  # a shard's full id: no lookup needed
    assert shard.returncode == 0 and parent in shard.stdout and "shard of" in shard.stdout, shard.stdout
    errors = run_cli("errors", parent, server=cli_server)
    assert errors.returncode == 0 and "broken-0.mp4" in errors.stdout, errors.stdout

    refused = run_cli("jobs", "delete", shards[0]["id"], server=cli_server)
    assert refused.returncode == 1 and parent in refused.stderr, refused.stderr
    bad = run_cli("scan", str(library_dir), "--sharding", "sometimes", server=cli_server)
    assert bad.returncode == 2 and "sharding" in bad.stderr

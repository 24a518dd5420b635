"""Runs every command of the README's "Use it" section against a real server, so the
documentation cannot drift from what works.

The page's `reelscan serve ... &` line starts the server (on a free port instead of 50051); then each ```sh block
runs in bash with `set -euo pipefail` and each ```python block in Python, in page order, with the documented
address and /srv/media replaced by the live ones. A block passes when it exits 0.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.conftest import BIN, REPO, Templates, cli_env, make_library
from tests.helpers.server import ServerProcess

DOC = REPO / "README.md"
SECTION_START = "<!-- use-it:start"
SECTION_END = "<!-- use-it:end -->"
DOC_ADDRESS = "127.0.0.1:50051"
DOC_MEDIA = "/srv/media"
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int

    @property
    def is_server(self) -> bool:
        return self.code.strip().startswith("reelscan serve ")


def doc_blocks() -> list[Block]:
    readme = DOC.read_text()
    start, end = readme.index(SECTION_START), readme.index(SECTION_END)
    # Keep line numbers relative to README.md so failures point at the right line.
    text = "\n" * readme.count("\n", 0, start) + readme[start:end]
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in BLOCK.finditer(text)]


BLOCKS = doc_blocks()
SERVER_BLOCK = next(b for b in BLOCKS if b.is_server)
RUNNABLE = [b for b in BLOCKS if not b.is_server]


class DocServer(ServerProcess):
    """The server exactly as the page starts it, except for the port, database and media paths."""

    def __init__(self, command: list[str], **kwargs: object) -> None:
        super().__init__(Path("unused"), **kwargs)  # type: ignore[arg-type]
        self._command = command

    def command(self) -> list[str]:
        return self._command


@dataclass
class DocEnv:
    server: ServerProcess
    media: Path
    workdir: Path

    def substitute(self, code: str) -> str:
        code = code.replace(DOC_ADDRESS, self.server.address).replace(DOC_MEDIA, str(self.media))
        return code.replace("cd examples/node", f"cd {shlex.quote(str(REPO / 'examples' / 'node'))}")


@pytest.fixture(scope="module")
def doc_env(tmp_path_factory: pytest.TempPathFactory, templates: Templates) -> Iterator[DocEnv]:
    media = tmp_path_factory.mktemp("srv-media")
    # Enough files that a forced scan runs for a couple of seconds, so the cancel commands catch it running.
    make_library(media, templates, 400, broken=1, hd=["holiday-2023.mp4"])
    shutil.copyfile(templates.broken, media / "truncated.mp4")  # the broken file the page shows with `videos get`
    workdir = tmp_path_factory.mktemp("doc-cwd")
    line = SERVER_BLOCK.code.strip().removesuffix("&").strip()
    line = line.replace(DOC_ADDRESS, "127.0.0.1:0").replace(DOC_MEDIA, str(media))
    line = line.replace("./var/reelscan.db", str(workdir / "var" / "reelscan.db"))
    command = shlex.split(line)
    assert command[:2] == ["reelscan", "serve"]
    command[0] = str(BIN / "reelscan")
    # Slow probing down (hidden flag, via its env variable so the documented command stays as written).
    env = {"REELSCAN_PROBE_DELAY": "0.01", "REELSCAN_PROBE_WORKERS": "2"}
    with DocServer([*command, "--grace-period", "2"], env=env) as server:
        yield DocEnv(server, media, workdir)


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"{b.language}-line{b.line}" for b in RUNNABLE])
def test_documented_commands_work(block: Block, doc_env: DocEnv) -> None:
    code = doc_env.substitute(block.code)
    if block.language == "sh":
        if re.search(r"^\s*(cd .*&& )?(npm|node) ", code, re.MULTILINE) and shutil.which("node") is None:
            pytest.skip("node is not installed")
        cmd = ["bash", "-c", "set -euo pipefail\n" + code]
    else:
        cmd = [sys.executable, "-c", code]
    result = subprocess.run(
        cmd,
        cwd=doc_env.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        # Commands without --server use the default address, which stands for the test server's.
        env=cli_env({"REELSCAN_SERVER": doc_env.server.address}),
        check=False,
    )
    assert result.returncode == 0, f"README.md line {block.line}:\n{code}\n--- stdout\n{result.stdout}\n" + (
        f"--- stderr\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr


def test_the_page_covers_every_rpc_with_grpcurl_and_buf_curl() -> None:
    from reelscan.client.rpc import UNARY_METHODS, WATCH_JOB

    text = DOC.read_text()
    for method in (*UNARY_METHODS, WATCH_JOB):
        name = f"{method.service}/{method.name}"
        assert re.search(rf"^grpcurl .*{re.escape(name)}$", text, re.MULTILINE), f"no grpcurl line for {name}"
        assert re.search(rf"^buf curl .*/{re.escape(name)}$", text, re.MULTILINE), f"no buf curl line for {name}"

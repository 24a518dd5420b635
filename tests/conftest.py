"""Shared fixtures: a real server on a free port, and channels/stubs to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs


@pytest.fixture
def media_root(tmp_path: Path) -> Path:
    """An empty directory the server is allowed to scan."""
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
def server(tmp_path: Path, media_root: Path) -> Iterator[ServerProcess]:
    """A real server process on a free port, allowed to scan `media_root`, with its own SQLite file."""
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[media_root]) as proc:
        yield proc


@pytest.fixture
async def channel(server: ServerProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as chan:
        yield chan


@pytest.fixture
def stubs(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(channel)

"""The blocking client is generated from the asyncio one (client/gen_sync.py), so their retry, paging, wait and
watch loops exist once. These tests fail when the committed sync_client.py is not what the generator makes, and
pin the rewrite rules the generator relies on."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from reelscan.client import AsyncReelscanClient, ReelscanClient, gen_sync


def test_committed_sync_client_is_what_the_generator_makes() -> None:
    assert gen_sync.generate() == gen_sync.TARGET.read_text(), (
        "client/sync_client.py is stale: run `python -m reelscan.client.gen_sync` and commit"
    )


def test_check_mode_exits_1_and_shows_the_diff_when_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = gen_sync.TARGET.read_text().replace("self._sleep(backoff.next())", "time.sleep(1)", 1)
    target = tmp_path / "sync_client.py"
    target.write_text(stale)
    monkeypatch.setattr(gen_sync, "TARGET", target)
    assert gen_sync.main(["--check"]) == 1
    target.write_text(gen_sync.generate())
    assert gen_sync.main(["--check"]) == 0


def test_the_command_line_check_passes_on_the_committed_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reelscan.client.gen_sync", "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_both_clients_have_the_same_public_methods_and_signatures() -> None:
    def public(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_")
        }

    assert public(AsyncReelscanClient) == public(ReelscanClient)
    assert "wait_for_server" in public(ReelscanClient)


def test_directives_drop_async_only_blocks_and_swap_sync_lines() -> None:
    source = '''"""doc"""
import asyncio  # unasync: async-only


class AsyncReelscanClient:
    async def run(self, f):
        result = f()  # unasync: sync=f()
        if inspect.isawaitable(result):  # unasync: async-only
            await result
        async for x in self.items():
            await asyncio.sleep(x)
'''
    out = gen_sync.transform(source, strict=False)
    assert "class ReelscanClient:" in out and "    def run(self, f):" in out
    assert "        f()\n" in out
    assert "isawaitable" not in out and "await" not in out and "import asyncio" not in out
    assert "        for x in self.items():\n            time.sleep(x)" in out


def test_a_leftover_async_construct_is_refused() -> None:
    with pytest.raises(ValueError, match="still has 'asyncio'"):
        gen_sync.transform('"""doc"""\nx = asyncio.get_running_loop()\n', strict=False)

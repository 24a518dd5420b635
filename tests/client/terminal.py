"""Running the CLI in real terminals: tmux (what the screen shows, via capture-pane) and a bare pseudo-terminal
(the raw bytes a program wrote, to check that no escape sequence from data got through)."""

from __future__ import annotations

import fcntl
import itertools
import os
import pty
import re
import select
import shlex
import shutil
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence

import pytest

_ids = itertools.count()

# What a program that draws with rich legitimately writes: CSI sequences (colours, cursor moves, erase) and the
# DEC private modes (cursor hide/show). Anything else starting with ESC did not come from rich.
RICH_SEQUENCE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def foreign_escapes(raw: bytes) -> list[bytes]:
    """Escape sequences and control bytes in `raw` that a rich display does not produce."""
    rest = RICH_SEQUENCE.sub(b"", raw)
    found = [m.group() for m in re.finditer(rb"\x1b.{0,12}", rest, re.DOTALL)]
    found += [m.group() for m in re.finditer(rb"[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]", rest)]
    text = rest.decode("utf-8", "surrogateescape")
    # C1 controls, bidi controls, and bytes that are not UTF-8 (surrogate escapes after decoding).
    unsafe = re.finditer("[\x80-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\udc80-\udcff]", text)
    found += [m.group().encode("utf-8", "surrogateescape") for m in unsafe]
    return found


def require_tmux() -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (Debian package tmux)")
    return tmux


class Tmux:
    """One tmux server of our own (its own socket), with one window of a fixed size running one command."""

    def __init__(self, command: Sequence[str], *, width: int, height: int = 40, env: dict[str, str]) -> None:
        self.tmux = require_tmux()
        self.socket = f"reelscan-test-{os.getpid()}-{next(_ids)}"
        self.width = width
        self.env = {**env, "COLUMNS": str(width), "LINES": str(height)}
        self.env.pop("TMUX", None)
        script = f'{shlex.join(command)}; echo "[exit $?]"; sleep 600'
        self._tmux("-f", "/dev/null", "new-session", "-d", "-x", str(width), "-y", str(height), "bash", "-c", script)
        self._tmux("set-option", "-g", "history-limit", "5000")

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            [self.tmux, "-L", self.socket, *args], capture_output=True, text=True, env=self.env, check=True, timeout=30
        )
        return result.stdout

    def screen(self) -> str:
        """What the pane shows, with its scroll-back."""
        return self._tmux("capture-pane", "-p", "-S", "-5000")

    def title(self) -> str:
        return self._tmux("display-message", "-p", "#{pane_title}").strip()

    def send_keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60, every: float = 0.05) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"screen did not show what was expected within {timeout}s:\n{screen}")
            time.sleep(every)

    def wait_exit(self, timeout: float = 60) -> tuple[int, str]:
        screen = self.wait_for(lambda s: re.search(r"\[exit \d+\]", s) is not None, timeout)
        code = re.findall(r"\[exit (\d+)\]", screen)[-1]
        return int(code), screen

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True, env=self.env, check=False)

    def __enter__(self) -> Tmux:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_pty(
    command: Sequence[str], *, env: dict[str, str], columns: int = 80, rows: int = 40, timeout: float = 90
) -> tuple[int, bytes]:
    """Runs `command` on a fresh pseudo-terminal of the given size; returns (exit code, every byte it wrote)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        list(command),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**env, "COLUMNS": str(columns), "LINES": str(rows), "TERM": "xterm-256color"},
        close_fds=True,
    )
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                raise AssertionError(f"{command} still running after {timeout}s: {b''.join(chunks)[-2000:]!r}")
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the program closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(controller)
    return proc.wait(30), b"".join(chunks)

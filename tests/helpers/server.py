"""A real reelscan server in a subprocess, on a free port, for end-to-end tests.

Runs `python -m reelscan.service` exactly as an operator would (flags, env, signals), and reads the address it
actually bound from its log line. Its stderr is collected by a thread so a chatty server never blocks on a full pipe.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

LISTENING = re.compile(r"reelscan listening on (\S+):(\d+)")
METRICS = re.compile(r"metrics=(http://\S+?/metrics)|\"metrics\": \"(http://\S+?/metrics)\"")


class ServerProcess:
    """Starts and stops one server process; `restart()` reuses the same port and database."""

    def __init__(
        self,
        db_path: Path | str,
        *,
        allow_roots: Sequence[Path] = (),
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.db_path = db_path
        self.allow_roots = list(allow_roots)
        self.extra_args = list(extra_args)
        self.env = env
        self.host = host
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.log_lines: list[str] = []
        self._bound = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "reelscan.service",
            "--listen",
            f"{self.host}:{self.port}",
            "--db",
            str(self.db_path),
        ]
        for root in self.allow_roots:
            cmd += ["--allow-root", str(root)]
        return [*cmd, "--grace-period", "2", *self.extra_args]

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {**os.environ, **(self.env or {})}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._bound.clear()
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self._reader = threading.Thread(target=self._read_log, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._bound.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start within {timeout}s:\n{self.log}")
        self.wait_healthy(deadline - time.monotonic())
        return self

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log_lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
                self._bound.set()

    def wait_healthy(self, timeout: float = 10.0) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            stub.Check(health_pb2.HealthCheckRequest(), timeout=max(timeout, 1.0), wait_for_ready=True)

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    @property
    def metrics_url(self) -> str:
        """http://HOST:PORT/metrics of a server started with --metrics-listen, from its start-up line."""
        for line in self.log_lines:
            match = METRICS.search(line)
            if match:
                return match.group(1) or match.group(2)
        raise AssertionError(f"no metrics address in the log:\n{self.log}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(timeout=2)

    def restart(self, *, kill: bool = False) -> ServerProcess:
        """Stops (or kills) and starts again on the same port with the same database."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()

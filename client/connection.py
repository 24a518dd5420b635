"""How the clients reach the server: address, TLS, per-call metadata, deadlines and channel options."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

DEFAULT_PORT = 50051
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
# How long `wait_for_server` (and so every CLI command) waits for a connection before calling the server
# unreachable.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "reelscan-client/0.1"

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS for the channel. No root certificates means the system's trust store; a key and certificate chain
    together present a client certificate (mutual TLS)."""

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    # Verify the server's certificate against this name instead of the address's host (testing, IP addresses).
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.private_key is None) != (self.certificate_chain is None):
            raise ValueError("a client certificate needs both private_key and certificate_chain")

    @classmethod
    def from_files(
        cls,
        ca: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        server_name: str | None = None,
    ) -> TlsOptions:
        """Reads PEM files (a CA bundle; a client certificate chain and its key for mTLS)."""

        def read(path: str | os.PathLike[str] | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(read(ca), read(key), read(cert), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Everything both clients need to open a channel and decorate each call."""

    address: str = DEFAULT_ADDRESS
    tls: TlsOptions | None = None
    token: str | None = None
    metadata: Metadata = ()
    # Deadline of every unary call, in seconds; None means no deadline. Streams (WatchJob) never get one: they
    # live as long as the job, and a dead connection is noticed by keepalive instead.
    timeout: float | None = DEFAULT_TIMEOUT_S
    channel_options: tuple[tuple[str, Any], ...] = field(default=())

    def call_metadata(self) -> Metadata:
        token = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        return (*token, *self.metadata)

    def grpc_options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.primary_user_agent", USER_AGENT),
            # gRPC's own reconnect backoff starts at 1 s and grows to 120 s; while it runs, calls fail fast with
            # UNAVAILABLE. Keep it short so a watch resumes within a couple of seconds of a server restart.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 5_000),
            # Ping an idle connection every 30 s (the server accepts pings every 10 s) so a long watch on a dead
            # connection fails with UNAVAILABLE, and is resumed, instead of hanging forever.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if self.tls is not None and self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        options.extend(self.channel_options)
        return options


# gRPC target schemes (unix:, dns:///, ipv4:, ...): passed through as they are.
_SCHEME = re.compile(r"^(unix|unix-abstract|dns|ipv4|ipv6|vsock|xds|google-c2p):", re.IGNORECASE)


def normalize_address(address: str) -> str:
    """HOST:PORT as given; a bare HOST (or IPv6 address) gets the default port 50051 (gRPC itself would use 443).

    Targets with a scheme (`unix:/run/reelscan.sock`, `dns:///host:port`, ...) are left alone. Raises ValueError
    for an empty address or a port that is not a number.
    """
    address = address.strip()
    if not address:
        raise ValueError("the server address is empty")
    if _SCHEME.match(address):
        return address
    if address.startswith("["):  # [v6]:port or [v6]
        host, sep, port = address.partition("]")
        if not port:
            return f"{address}:{DEFAULT_PORT}" if sep else address
        return _checked(address, port.removeprefix(":"))
    if address.count(":") > 1:  # a bare IPv6 address
        return f"[{address}]:{DEFAULT_PORT}"
    host, sep, port = address.partition(":")
    if not sep:
        return f"{host}:{DEFAULT_PORT}"
    if not host:
        raise ValueError("no host before the port")
    return _checked(address, port)


def _checked(address: str, port: str) -> str:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the port must be a number from 1 to 65535, not {port!r}")
    return address


_SETTLED = frozenset(
    {grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN}
)


def sync_wait_ready(channel: grpc.Channel, timeout: float) -> grpc.ChannelConnectivity:
    """Starts connecting and waits up to `timeout` s until the channel is READY or has failed (TRANSIENT_FAILURE:
    refused, reset, bad handshake); returns the state it is in then (still CONNECTING: nobody answered)."""
    changed = threading.Event()
    latest = [grpc.ChannelConnectivity.IDLE]

    def on_change(state: grpc.ChannelConnectivity) -> None:
        latest[0] = state
        if state in _SETTLED:
            changed.set()

    channel.subscribe(on_change, try_to_connect=True)
    try:
        changed.wait(timeout)
        return latest[0]
    finally:
        channel.unsubscribe(on_change)


async def aio_wait_ready(channel: grpc.aio.Channel, timeout: float) -> grpc.ChannelConnectivity:  # noqa: ASYNC109
    """The asyncio twin of sync_wait_ready."""
    deadline = time.monotonic() + timeout
    state: grpc.ChannelConnectivity = channel.get_state(try_to_connect=True)
    while state not in _SETTLED:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except TimeoutError:
            break
        state = channel.get_state(try_to_connect=True)
    return state


def sync_channel(options: ConnectionOptions) -> grpc.Channel:
    if options.tls is None:
        return grpc.insecure_channel(options.address, options=options.grpc_options())
    return grpc.secure_channel(options.address, options.tls.credentials(), options=options.grpc_options())


def aio_channel(options: ConnectionOptions) -> grpc.aio.Channel:
    if options.tls is None:
        return grpc.aio.insecure_channel(options.address, options=options.grpc_options())
    return grpc.aio.secure_channel(options.address, options.tls.credentials(), options=options.grpc_options())


def make_options(
    address: str,
    *,
    tls: TlsOptions | bool | None,
    token: str | None,
    metadata: Sequence[tuple[str, str]],
    timeout: float | None,
    channel_options: Sequence[tuple[str, Any]],
) -> ConnectionOptions:
    """Normalises the constructor arguments both clients share (`tls=True` means TLS with the system roots)."""
    if tls is True:
        tls = TlsOptions()
    elif tls is False:
        tls = None
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive or None, got {timeout}")
    try:
        address = normalize_address(address)
    except ValueError as error:
        raise ValueError(f"server address {address!r}: {error}") from None
    return ConnectionOptions(
        address=address,
        tls=tls,
        token=token,
        metadata=tuple((k.lower(), v) for k, v in metadata),
        timeout=timeout,
        channel_options=tuple(channel_options),
    )

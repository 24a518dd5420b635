"""Server configuration: command-line flags and REELSCAN_* environment variables -> one frozen Settings.

Every flag has an environment variable named REELSCAN_<FLAG_IN_UPPER_SNAKE_CASE>; a flag given on the command
line wins over the environment. Repeatable flags (--allow-root) take os.pathsep-separated lists from the env.
Values from the environment are parsed here, not by argparse, so that a bad one is reported under the variable's
name (`REELSCAN_MAX_CONCURRENT_JOBS: invalid int value 'abc'`), and only when no flag overrides it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelscan.service.telemetry.logs import parse_log_levels

# What real libraries hold (matched case-insensitively: camcorders write .MTS): MP4/QuickTime and phones' 3GP,
# Matroska, AVI/DivX, WebM/Ogg, MPEG program and transport streams (DVD .vob, AVCHD .mts/.m2ts), Windows Media,
# Flash, RealMedia, MXF, and raw H.264/HEVC elementary streams.
DEFAULT_EXTENSIONS = (
    "mp4",
    "mkv",
    "mov",
    "avi",
    "webm",
    "m4v",
    "mpg",
    "mpeg",
    "ts",
    "m2ts",
    "wmv",
    "flv",
    "mts",
    "m2t",
    "3gp",
    "3g2",
    "mxf",
    "vob",
    "ogv",
    "divx",
    "f4v",
    "rm",
    "rmvb",
    "asf",
    "mk3d",
    "hevc",
    "h265",
    "h264",
)
ENV_PREFIX = "REELSCAN_"


class ConfigError(ValueError):
    """A setting is invalid; the message is shown to the operator as is."""


@dataclass(frozen=True, slots=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    db_path: Path = Path("./var/reelscan.db")  # SQLite (one server), unless db_url is set
    db_url: str = ""  # postgresql://... (several replicas); the password never appears in messages
    db_password_file: Path | None = None
    lease_ttl_s: float = 10.0  # how long a silent replica keeps its jobs before others recover them
    allow_roots: tuple[Path, ...] = ()
    max_concurrent_jobs: int = 2
    max_queued_jobs: int = 100
    max_watchers: int = 10_000
    job_timeout_s: float = 3600.0
    probe_timeout_s: float = 10.0
    probe_workers: int = max(1, os.cpu_count() or 1)
    # Most files in flight per worker (threads in the worker): PyAV releases the GIL while FFmpeg reads, so on slow
    # storage (network mounts) several probes per core overlap their waits. A worker starts with one thread and
    # adds more only while its probes are blocked on storage (probe_worker._grow).
    probe_concurrency: int = 8
    prober: str = "pyav"  # or "ffprobe"
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    # A scan with at least this many files to probe is split into shards of about shard_size files, which every
    # replica on the database helps to probe (StartScanRequest.sharding forces or forbids it).
    shard_threshold: int = 5000
    shard_size: int = 2000
    job_retention_s: float = 7 * 24 * 3600.0
    grace_period_s: float = 10.0
    max_message_bytes: int = 4 * 1024 * 1024
    log_level: str = "INFO"  # LEVEL[,LOGGER=LEVEL...] (telemetry/logs.py)
    log_format: str = "text"  # or "json"
    metrics_listen: str = ""  # HOST:PORT serving Prometheus /metrics; off when empty
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_token_file: Path | None = None
    # Testing and benchmarking hooks (hidden from --help): every probe sleeps this long in its worker, and with
    # fault injection on, files whose names contain "reelscan-hang" / "reelscan-crash" hang or kill their worker.
    probe_delay_s: float = 0.0
    fault_injection: bool = False
    # Off only in tests that fake file-system failures in the server process (monkeypatched os.scandir): the probe
    # workers list directories for the walk by default, out of the server's reach.
    walk_in_workers: bool = True

    @property
    def database(self) -> str:
        """The database as an operator would name it (a URL without its password)."""
        if not self.db_url:
            return str(self.db_path)
        scheme, _, rest = self.db_url.partition("://")
        rest, question, query = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        if at and ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        # libpq also takes the password as a query parameter (?password=...): mask it there too.
        params = [
            f"{key}=***" if key.strip().lower() == "password" else f"{key}{eq}{value}"
            for key, eq, value in (item.partition("=") for item in query.split("&") if item)
        ]
        return f"{scheme}://{userinfo}{at}{hostpart}" + (question + "&".join(params) if params else "")

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def is_loopback(self) -> bool:
        host = self.host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


@dataclass(frozen=True, slots=True)
class _FromEnv:
    """A flag's default taken from its environment variable: its value, or why the text is not one. argparse
    neither converts nor checks a default that is not a string, so settings_from_args unwraps it (and reports
    `error` under the variable's name) unless the flag was given."""

    name: str
    raw: str
    value: object = None
    error: str = ""

    def __str__(self) -> str:  # what --help shows as the default
        return self.raw


def _from_env(
    env: Mapping[str, str], flag: str, fallback: object, kind: Any = None, choices: Sequence[str] = ()
) -> object:
    name = _env_name(flag)
    raw = env.get(name)
    if raw is None:
        return fallback
    if kind is not None:
        try:
            return _FromEnv(name, raw, kind(raw.strip()))
        except ValueError:
            return _FromEnv(name, raw, error=f"invalid {kind.__name__} value {raw!r}")
    if choices:
        # Case does not matter here (it never did for these variables); the flag itself takes the exact choice.
        match = next((c for c in choices if c.lower() == raw.strip().lower()), None)
        if match is None:
            listed = ", ".join(repr(c) for c in choices)
            return _FromEnv(name, raw, error=f"invalid choice {raw!r} (choose from {listed})")
        return _FromEnv(name, raw, match)
    return _FromEnv(name, raw, raw)


def add_serve_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    """Adds every server flag to `parser`, with defaults taken from REELSCAN_* variables in `env`."""
    env = os.environ if env is None else env
    d = Settings()

    def add(flag: str, help_text: str, fallback: object, **kwargs: Any) -> None:
        parser.add_argument(
            flag,
            default=_from_env(env, flag, fallback, kwargs.get("type"), kwargs.get("choices", ())),
            help=f"{help_text} [env {_env_name(flag)}; default %(default)s]",
            **kwargs,
        )

    add("--listen", "address to serve on, HOST:PORT (port 0 picks a free one)", d.listen, metavar="HOST:PORT")
    add(
        "--db",
        "SQLite database file (created if missing; one server per file), or a postgresql://USER@HOST:PORT/DB URL "
        "(several replicas share it)",
        str(d.db_path),
        metavar="PATH|URL",
    )
    add(
        "--db-password-file",
        "file holding the PostgreSQL password (else the URL's, PGPASSWORD or ~/.pgpass)",
        None,
        metavar="PATH",
    )
    add(
        "--lease-ttl",
        "seconds a replica's job lease lasts without a heartbeat; then other replicas recover its jobs",
        d.lease_ttl_s,
        type=float,
        metavar="S",
    )
    env_roots = env.get(_env_name("--allow-root"))
    parser.add_argument(
        "--allow-root",
        action="append",
        metavar="DIR",
        default=None,
        help=(
            "directory that scans may read (repeatable). Required when --listen is not a loopback address; on "
            f"loopback with none, any absolute path may be scanned [env {_env_name('--allow-root')}, "
            f"{os.pathsep!r}-separated; default {env_roots or 'none'}]"
        ),
    )
    parser.set_defaults(_env_allow_roots=env_roots)
    add("--max-concurrent-jobs", "jobs that run at the same time", d.max_concurrent_jobs, type=int, metavar="N")
    add(
        "--max-queued-jobs", "pending jobs accepted before RESOURCE_EXHAUSTED", d.max_queued_jobs, type=int, metavar="N"
    )
    add("--max-watchers", "open WatchJob streams before RESOURCE_EXHAUSTED", d.max_watchers, type=int, metavar="N")
    add(
        "--job-timeout",
        "default job time limit in seconds, from when it starts running",
        d.job_timeout_s,
        type=float,
        metavar="S",
    )
    add("--probe-timeout", "time limit for probing one file, in seconds", d.probe_timeout_s, type=float, metavar="S")
    add("--probe-workers", "probe worker processes", d.probe_workers, type=int, metavar="N")
    add(
        "--probe-concurrency",
        "most files probed at once in each worker (threads, added only while probes wait on slow storage)",
        d.probe_concurrency,
        type=int,
        metavar="N",
    )
    add(
        "--prober",
        "probe backend: pyav (in worker processes) or ffprobe (subprocess)",
        d.prober,
        choices=("pyav", "ffprobe"),
    )
    add("--extensions", "comma-separated video file extensions", ",".join(d.extensions), metavar="LIST")
    add(
        "--shard-threshold",
        "scans with at least this many files to probe are split into shards that every replica helps with",
        d.shard_threshold,
        type=int,
        metavar="N",
    )
    add("--shard-size", "files to probe per shard of a sharded scan (about)", d.shard_size, type=int, metavar="N")
    add(
        "--job-retention",
        "seconds to keep finished jobs before pruning them",
        d.job_retention_s,
        type=float,
        metavar="S",
    )
    add("--grace-period", "seconds to let RPCs finish on SIGTERM/SIGINT", d.grace_period_s, type=float, metavar="S")
    add("--max-message-bytes", "largest request or response message", d.max_message_bytes, type=int, metavar="N")
    add(
        "--log-level",
        "logging level, LEVEL[,LOGGER=LEVEL...]: LEVEL (DEBUG, INFO, WARNING, ERROR) is reelscan's; loggers outside "
        "reelscan stay at WARNING or above unless named, e.g. DEBUG,aiosqlite=DEBUG",
        d.log_level,
        metavar="SPEC",
    )
    add("--log-format", "log line format: text, or json (one object per line)", d.log_format, choices=("text", "json"))
    add(
        "--metrics-listen",
        "serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks a free one); off when not given",
        None,
        metavar="HOST:PORT",
    )
    add("--tls-cert", "PEM server certificate chain (enables TLS, with --tls-key)", None, metavar="PATH")
    add("--tls-key", "PEM server private key", None, metavar="PATH")
    add(
        "--tls-client-ca",
        "PEM CA bundle; when set, clients must present a certificate it signed (mTLS)",
        None,
        metavar="PATH",
    )
    add("--auth-token-file", "file holding a bearer token every RPC but health must carry", None, metavar="PATH")
    parser.add_argument(
        "--probe-delay", type=float, default=_from_env(env, "--probe-delay", 0.0, float), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--fault-injection",
        action="store_true",
        default=env.get(_env_name("--fault-injection"), "") not in ("", "0", "false"),
        help=argparse.SUPPRESS,
    )


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")


def settings_from_args(ns: argparse.Namespace) -> Settings:
    """Builds and validates Settings from parsed arguments; raises ConfigError with a readable message, naming
    the environment variable when a value came from one."""
    ns = argparse.Namespace(**vars(ns))  # the caller's namespace is left as it was
    from_env: dict[str, str] = {}  # flag -> the variable its value came from
    for dest, value in sorted(vars(ns).items()):
        if isinstance(value, _FromEnv):
            if value.error:
                raise ConfigError(f"{value.name}: {value.error}")
            setattr(ns, dest, value.value)
            from_env["--" + dest.replace("_", "-")] = value.name
    if not ns.allow_root and ns._env_allow_roots:
        from_env["--allow-root"] = _env_name("--allow-root")

    def named(flag: str) -> str:
        """How a message names a setting: the flag, after the variable when the value came from the env."""
        return f"{from_env[flag]}: {flag}" if flag in from_env else flag

    roots_raw: Sequence[str] = ns.allow_root or [r for r in (ns._env_allow_roots or "").split(os.pathsep) if r]
    roots = []
    for raw in roots_raw:
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = path.absolute()
        roots.append(Path(os.path.realpath(path)))
    exts = tuple(dict.fromkeys(e.strip().lower().lstrip(".") for e in str(ns.extensions).split(",") if e.strip()))
    if not exts:
        raise ConfigError(f"{named('--extensions')} must name at least one extension")
    if ":" not in str(ns.listen):
        raise ConfigError(f"{named('--listen')} must be HOST:PORT, got {ns.listen!r}")

    def opt_path(value: object) -> Path | None:
        return Path(str(value)) if value not in (None, "") else None

    db = str(ns.db)
    db_url = ""
    if "://" in db:
        scheme = db.split("://", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                f"{named('--db')}: unknown URL scheme {scheme!r}; use a SQLite file path or a postgresql:// URL"
            )
        db_url = db
    elif not db:
        raise ConfigError(f"{named('--db')} must name a SQLite file or a postgresql:// URL")
    try:
        log_level = ",".join(part.strip() for part in str(ns.log_level).split(",") if part.strip())
        parse_log_levels(log_level)
    except ValueError as error:
        raise ConfigError(f"{named('--log-level')}: {error}") from error
    metrics_listen = str(ns.metrics_listen or "")
    if metrics_listen and (":" not in metrics_listen or not metrics_listen.rsplit(":", 1)[1].isdigit()):
        raise ConfigError(f"{named('--metrics-listen')} must be HOST:PORT, got {metrics_listen!r}")
    password_file = opt_path(ns.db_password_file)
    if password_file is not None and not db_url:
        raise ConfigError("--db-password-file is for a postgresql:// --db")

    settings = Settings(
        listen=str(ns.listen),
        db_path=Path(db) if not db_url else Path(Settings().db_path),
        db_url=db_url,
        db_password_file=password_file,
        lease_ttl_s=float(ns.lease_ttl),
        allow_roots=tuple(roots),
        max_concurrent_jobs=int(ns.max_concurrent_jobs),
        max_queued_jobs=int(ns.max_queued_jobs),
        max_watchers=int(ns.max_watchers),
        job_timeout_s=float(ns.job_timeout),
        probe_timeout_s=float(ns.probe_timeout),
        probe_workers=int(ns.probe_workers),
        probe_concurrency=int(ns.probe_concurrency),
        prober=str(ns.prober),
        extensions=exts,
        shard_threshold=int(ns.shard_threshold),
        shard_size=int(ns.shard_size),
        job_retention_s=float(ns.job_retention),
        grace_period_s=float(ns.grace_period),
        max_message_bytes=int(ns.max_message_bytes),
        log_level=log_level or "INFO",
        log_format=str(ns.log_format),
        metrics_listen=metrics_listen,
        tls_cert=opt_path(ns.tls_cert),
        tls_key=opt_path(ns.tls_key),
        tls_client_ca=opt_path(ns.tls_client_ca),
        auth_token_file=opt_path(ns.auth_token_file),
        probe_delay_s=float(ns.probe_delay),
        fault_injection=bool(ns.fault_injection),
    )
    for name, value in (
        ("--max-concurrent-jobs", settings.max_concurrent_jobs),
        ("--max-queued-jobs", settings.max_queued_jobs),
        ("--max-watchers", settings.max_watchers),
        ("--job-timeout", settings.job_timeout_s),
        ("--probe-timeout", settings.probe_timeout_s),
        ("--probe-workers", settings.probe_workers),
        ("--probe-concurrency", settings.probe_concurrency),
        ("--job-retention", settings.job_retention_s),
        ("--max-message-bytes", settings.max_message_bytes),
        ("--lease-ttl", settings.lease_ttl_s),
        ("--shard-threshold", settings.shard_threshold),
        ("--shard-size", settings.shard_size),
    ):
        _positive(named(name), value)
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    for root in settings.allow_roots:
        if not root.is_dir():
            raise ConfigError(f"{named('--allow-root')} {root} is not an existing directory")
    if not settings.allow_roots and not settings.is_loopback:
        raise ConfigError(
            f"refusing to listen on non-loopback address {settings.listen} with no --allow-root: "
            "any client could scan any directory. Pass --allow-root DIR (repeatable) or REELSCAN_ALLOW_ROOT."
        )
    return settings

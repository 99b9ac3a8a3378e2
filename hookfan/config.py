"""Settings: one frozen, typed object built once from flags and ``HOOKFAN_*`` variables.

Every flag ``--some-flag`` also reads ``HOOKFAN_SOME_FLAG``; a flag given on the command line wins.
The flags are declared here, in :class:`Flag` tables with their parsers;
:mod:`hookfan.clickflags` makes them Click options. A value that does not parse is an error
that names the flag (:class:`SettingsError` from :func:`build`, Click's usage error on the
command line), so the user reads one line that says what to fix.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ENV_PREFIX = "HOOKFAN_"


class SettingsError(ValueError):
    """A flag or environment value is invalid; the message names the flag and the fix."""


@contextmanager
def listening(flag: str, addr: tuple[str, int]) -> Iterator[None]:
    """Around binding ``addr`` (given with ``--flag``): an OSError becomes a SettingsError
    that names the flag and the fix."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SettingsError(f"--{flag} {addr[0]}:{addr[1]}: cannot listen there ({reason}); "
                            "choose a free address, or stop what holds it") from None


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds for a duration as Go's ``time.ParseDuration`` writes it (no sign): ``750ms``,
    ``10s``, ``1.5s``, ``15m``, ``1h30m``, ``24h``, or ``0``; raise ValueError otherwise."""
    text = text.strip()
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r} (write it like 750ms, 10s, 1h30m or 24h)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """The shortest form :func:`parse_duration` reads back: ``750ms``, ``10s``, ``1h30m``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms" if seconds else "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{v:g}{u}" for v, u in parts if v)


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"invalid boolean {text!r} (write true or false)")


def parse_addr(text: str) -> tuple[str, int]:
    """``:8080`` -> ("0.0.0.0", 8080); ``127.0.0.1:80`` -> ("127.0.0.1", 80)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid address {text!r} (write HOST:PORT or :PORT)")
    return (host.strip("[]") or "0.0.0.0", int(port))


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text!r}")
    return value


def parse_count(text: str) -> int:
    """A non-negative integer; 0 turns the limit it sets off."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"must be 0 (off) or a positive integer, got {text!r}")
    return value


def parse_redis_url(text: str) -> str:
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"invalid Redis URL {mask_url(text)!r} (use redis://, rediss:// or unix://)")
    return text


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """``s1:26379,s2:26379`` -> (("s1", 26379), ("s2", 26379)); every entry needs a host."""
    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError(f"invalid Sentinel address {item!r} (write HOST:PORT[,HOST:PORT...])")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError("no Sentinel address given (write HOST:PORT[,HOST:PORT...])")
    return tuple(out)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse_aliases(text: str) -> tuple[tuple[str, str], ...]:
    """``name=host:port,other=host:port`` -> pairs; used by the dev stack to point services home."""
    pairs = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, target = item.partition("=")
        if not sep or not name or not target:
            raise ValueError(f"invalid alias {item!r} (write NAME=HOST:PORT)")
        pairs.append((name, target))
    return tuple(pairs)


@dataclass(frozen=True)
class RedisSettings:
    url: str = "redis://localhost:6379/0"
    """Where requests, deliveries, the schedule and the route table live."""
    password_file: str | None = None
    """A file holding the Redis password (a mounted Kubernetes Secret); overrides the URL's."""
    tls_ca_file: str | None = None
    """``rediss://`` only: CA bundle (PEM) that signed the server's certificate; default: the
    system's CAs. The server's certificate is always verified."""
    tls_cert_file: str | None = None
    """``rediss://`` only: client certificate (PEM), for a Redis with ``tls-auth-clients yes``."""
    tls_key_file: str | None = None
    """``rediss://`` only: the client certificate's private key (PEM)."""
    sentinel: tuple[tuple[str, int], ...] = ()
    """Sentinels to ask where the primary is; then the URL's host and port are not used (its
    database, password and scheme are). Empty: connect to the URL's host."""
    sentinel_master: str | None = None
    """The name the Sentinels monitor the primary under (``sentinel monitor NAME ...``)."""
    verify_key_file: str | None = None
    """Operator and app: a file holding the key that seals ``spec.verify``'s signing secrets
    in Redis (:mod:`hookfan.signatures`), so that of all Redis clients only the operator and
    the app can read them. Without it the operator writes them in clear (with a warning)."""
    allow_unsafe: bool = False
    """App and worker: run even when Redis's ``appendonly``, ``appendfsync`` or
    ``maxmemory-policy`` break "202 means durable" (see :mod:`hookfan.durability`). For
    development only."""

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    def where(self) -> str:
        """Where Redis is, for messages: the URL without its password, or the Sentinels and
        the primary's name."""
        if not self.sentinel:
            return mask_url(self.url)
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinel)
        return f"primary {self.sentinel_master!r} through Sentinel {hosts}"

    def client_url(self) -> str:
        """The URL with the password from ``password_file`` filled in, if one is set. The
        password is percent-encoded, so any character a Secret holds survives; redis-py and
        kombu decode it. The result holds the password: never print it, use :func:`mask_url`."""
        if not self.password_file:
            return self.url
        with open(self.password_file, encoding="utf-8") as fh:
            password = quote(fh.read().strip(), safe="")
        parts = urlsplit(self.url)
        hostname = parts.hostname or ""
        if ":" in hostname:
            hostname = f"[{hostname}]"
        host = hostname + (f":{parts.port}" if parts.port else "")
        netloc = f"{parts.username or ''}:{password}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def verify_key(self) -> bytes | None:
        """The sealing key from ``verify_key_file`` (None without one). Raises SettingsError
        naming the flag when the file cannot be read or is empty."""
        if not self.verify_key_file:
            return None
        from hookfan.signatures import derive_key
        try:
            with open(self.verify_key_file, "rb") as fh:
                material = fh.read()
        except OSError as exc:
            raise SettingsError(f"--verify-key-file {self.verify_key_file}: cannot be read "
                                f"({exc.strerror or type(exc).__name__}): mount the key "
                                "Secret there, or drop the flag") from None
        if not material.strip():
            raise SettingsError(f"--verify-key-file {self.verify_key_file} is empty: put a "
                                "random key of at least 32 characters in it")
        return derive_key(material)

    def ssl_options(self) -> dict[str, str]:
        """redis-py's TLS keyword arguments (``ssl_ca_certs``, ``ssl_certfile``,
        ``ssl_keyfile``) for the files given; empty for a plain ``redis://`` URL."""
        if not self.tls:
            return {}
        given = {"ssl_ca_certs": self.tls_ca_file, "ssl_certfile": self.tls_cert_file,
                 "ssl_keyfile": self.tls_key_file}
        return {k: v for k, v in given.items() if v}


@dataclass(frozen=True)
class IntakeSettings:
    http_addr: tuple[str, int] = ("0.0.0.0", 8080)
    """Where the app listens for webhooks."""
    workers: int = 2
    """gunicorn worker processes."""
    threads: int = 16
    """Request threads per worker process (gunicorn's threaded worker). Concurrent requests
    in one process share their Redis round trips (group commit)."""
    max_answer_waits: int = 8
    """Requests of one worker process that may wait at once for their backends' first
    answers (Receivers with an AwaitAll ``responseType``; each holds a request thread for up
    to the Receiver's ``timeout``); beyond it such a request is answered 503 with Retry-After
    before anything is stored. 0: every such request gets that 503."""
    max_pending: int = 0
    """Answer 503 while more copies than this are pending (ready, in flight or retrying)
    across all backends: shed load before Redis is full. 0: off."""
    max_pending_per_host: int = 100_000
    """Answer 503 to a host whose copies held in Redis (pending and dead letters) would go
    past this; other hosts are unaffected. 0: no cap."""
    max_stored_bytes_per_host: int = 100_000_000
    """Answer 503 to a host whose requests held in Redis (bodies and metadata, each request
    once however many copies) would go past this many bytes. 0: no cap."""
    min_replicas_ack: int = 0
    """Replicas that must acknowledge a request's write (Redis ``WAIT``) before it is answered
    202; fewer within :attr:`replica_ack_timeout`: 503 with Retry-After. 0: off."""
    replica_ack_timeout: float = 1.0
    """How long a write waits for :attr:`min_replicas_ack` replicas."""
    body_size_limit: int = 10_000_000
    """Largest accepted body in bytes; larger ones get 413 (the original silently truncated)."""
    max_header_bytes: int = 65536
    """Largest total of a request's header lines (``name: value`` plus CRLF each); larger
    ones get 431 and nothing is stored."""
    trusted_proxies: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                        "127.0.0.0/8", "fc00::/7", "::1/128")
    """Peers (CIDRs) whose ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` reach backends as
    sent (an ingress in the pod network); from any other peer hookfan writes its own."""
    proxy_read_timeout: float = 10.0
    """How long a client may take to send its request."""
    proxy_write_timeout: float = 10.0
    """How long a client may take to read the answer."""
    dedupe_headers: tuple[str, ...] = ()
    """Provider delivery-id headers (first present wins); a repeat of one within
    ``dedupe_window`` for the same host gets the first request's 202 and no new copies.
    Empty: de-duplication off."""
    dedupe_window: float = 86400.0
    """How long a provider delivery id is remembered."""


@dataclass(frozen=True)
class DeliverySettings:
    delivery_timeout: float = 10.0
    """Bound on one whole delivery attempt: connect, send, wait and read the answer together.
    The claim lease and Celery's hard time limit derive from it (:attr:`lease`)."""
    min_retry_delay: float = 0.75
    """First retry delay; later ones grow exponentially, with jitter."""
    max_retry_delay: float = 900.0
    """Cap on any retry delay, Retry-After included."""
    max_retry_age: float = 86400.0
    """A copy still undelivered this long after acceptance is dead-lettered."""
    concurrency: int = 4
    """Celery prefork children per worker: backends whose batches run at once (each batch
    sends up to ``backend_concurrency`` copies at once)."""
    task_events: bool = False
    """Send Celery task events (Flower's live task view). Off by default as in Celery: they
    cost the worker's main process over a third of its busy time, and Flower turns them on
    by itself within about 5 s of starting (its ``--enable-events``)."""
    backend_concurrency: int = 4
    """Attempts in flight to one backend URL at any instant, across all workers and
    processes; more copies wait in the backend's ready queue. 0: no cap."""
    batch: int = 64
    """Copies one ``hookfan.deliver`` task claims at once from its backend's ready queue."""
    dead_letter_retention: float = 14 * 86400.0
    """Workers delete dead letters older than this (and each body no other copy needs).
    0: keep them until purged (with ``noeviction`` they then fill Redis and stop the intake)."""
    auto_pause_after: float = 0.0
    """Pause a backend that has had no delivery for this long while its copies failed
    (``hookfan backends resume`` undoes it). 0: never."""

    @property
    def lease(self) -> float:
        """How long a claimed copy is held: its attempt starts within the lease minus one
        attempt deadline, so it ends before the lease does; past it the copy counts as a
        failed attempt (``LeaseExpired``)."""
        return 2 * self.delivery_timeout + 5

    @property
    def hold(self) -> float:
        """How long a task owns its backend without renewing (each batch renews it)."""
        return self.lease + 5

    @property
    def task_budget(self) -> float:
        """A task claims no new batch after this long, so other work gets the process."""
        return self.lease

    @property
    def task_time_limit(self) -> int:
        """Celery's hard time limit: the budget plus one whole batch, plus a margin."""
        return int(self.task_budget + self.lease + 10)


@dataclass(frozen=True)
class OperatorSettings:
    routes_dir: str | None = None
    """Read RequestClones from YAML files here instead of the Kubernetes API."""
    service_aliases: tuple[tuple[str, str], ...] = ()
    """File source only: serviceName=HOST:PORT overrides, for running outside a cluster."""
    poll_interval: float = 0.5
    """How often the file source looks for changed files."""
    host_policy: str = "namespace"
    """``namespace``: a host belongs to the namespace of its oldest RequestClone; ``shared``:
    RequestClones in any namespace fan out together."""
    kubeconfig: str | None = None
    """Kubeconfig file; without it, in-cluster config (or ``KUBECONFIG``)."""
    insecure_kubeconfig_exec: bool = False
    """Allow a kubeconfig whose user runs an exec credential plugin."""
    insecure_kubeconfig_tls: bool = False
    """Allow a kubeconfig that turns TLS verification off."""
    watch_all_namespaces: bool = True
    """Watch every namespace; false: only the operator's own."""
    watch_label_selector: str = ""
    """Only RequestClones matching this label selector."""
    kube_api_qps: float = 20.0
    """Sustained Kubernetes API calls per second."""
    kube_api_burst: int = 30
    """Burst of Kubernetes API calls above the QPS."""
    concurrent: int = 4
    """Status writes in parallel."""
    resync_period: float = 300.0
    """Re-list everything this often, whatever the watches said."""
    enable_leader_election: bool = False
    """Replicas elect a leader through a coordination.k8s.io Lease; only it writes."""
    leader_election_lease_duration: float = 35.0
    """How long a standby waits on an unrenewed Lease before taking over."""
    leader_election_renew_deadline: float = 30.0
    """A leader that has not renewed for this long stops writing."""
    leader_election_retry_period: float = 5.0
    """How often to try to acquire or renew the Lease."""
    leader_election_release_on_cancel: bool = True
    """Release the Lease on shutdown so a standby takes over at once."""
    leader_election_id: str = "hookfan-operator"
    """Name of the Lease, in the operator's own namespace."""
    graceful_shutdown_timeout: float = 10.0
    """Bound on shutdown after SIGTERM."""
    status_interval: float = 30.0
    """How often the leader writes delivery figures into RequestClone status (and rescans
    the backlog, at least every 5 s, for the backlog gauges)."""
    receiver_cross_namespace: bool = True
    """Whether a Receiver's namespaceSelector may reach namespaces other than its own (the
    Go controller's behaviour); false keeps tenants apart (docs/security.md)."""
    receiver_path_key: str = ""
    """File source only: the HMAC key of the webhook path derived for a Receiver whose file
    sets no ``status.webhookPath``. Empty: anyone who knows namespace/name can compute it."""


@dataclass(frozen=True)
class OtelSettings:
    endpoint: str | None = None
    """OTLP/gRPC collector (``host:port``); unset: no tracing. Needs the ``otel`` extra."""
    insecure: bool = False
    """Plaintext gRPC instead of TLS."""
    service_name: str = "hookfan"
    """``service.name`` of every span."""
    tls_client_cert_path: str | None = None
    """Client certificate (PEM) for a collector that authenticates clients."""
    tls_client_key_path: str | None = None
    """Its private key (PEM)."""
    tls_root_ca_path: str | None = None
    """CA bundle (PEM) to verify the collector; default: the system's."""


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    encoding: str = "json"


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    operator: OperatorSettings = field(default_factory=OperatorSettings)
    log: LogSettings = field(default_factory=LogSettings)
    otel: OtelSettings = field(default_factory=OtelSettings)
    metrics_addr: tuple[str, int] | None = None
    health_addr: tuple[str, int] | None = None


@dataclass(frozen=True)
class Flag:
    name: str
    target: str
    """``group.field`` (or a top-level field) in :class:`Settings`."""
    parse: Callable[[str], Any]
    help: str
    hidden: bool = False
    """Accepted but left out of ``--help`` (a removed flag kept only to say so)."""

    @property
    def boolean(self) -> bool:
        """A switch: ``--x`` / ``--no-x`` (and the older ``--x true|false``)."""
        return self.parse is parse_bool

    def default(self, settings: Settings | None = None) -> Any:
        """The value this flag's setting has in ``settings`` (default: the defaults)."""
        value: Any = settings or Settings()
        for part in self.target.split("."):
            value = getattr(value, part)
        return value

    def shown_default(self) -> str | None:
        """The default as a user would write it (``750ms``, ``:8080``), None for "unset"."""
        value = self.default()
        if value is None or value == "" or value == ():
            return None
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float) and self.parse not in (parse_duration, _retention):
            return f"{value:g}"
        if self.parse is parse_duration:
            return format_duration(value)
        if self.parse is _retention:
            return f"{value / 86400:g}d" if value % 86400 == 0 else format_duration(value)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
            return f"{'' if value[0] == '0.0.0.0' else value[0]}:{value[1]}"
        if isinstance(value, tuple):
            return ",".join(value)
        return str(value)


def _level(text: str) -> str:
    if text not in ("trace", "debug", "info", "error"):
        raise ValueError(f"invalid level {text!r} (use trace, debug, info or error)")
    return text


def _encoding(text: str) -> str:
    if text not in ("json", "console"):
        raise ValueError(f"invalid encoding {text!r} (use json or console)")
    return text


def _host_policy(text: str) -> str:
    if text not in ("namespace", "shared"):
        raise ValueError(f"invalid host policy {text!r} (use namespace or shared)")
    return text


def _removed_lease(text: str) -> int:
    raise ValueError("removed: the claim lease now derives from --delivery-timeout "
                     "(2 x timeout + 5 s, see docs/design.md); drop this flag")


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"must be a positive number, got {text!r}")
    return value


def parse_names(text: str) -> tuple[str, ...]:
    """``X-GitHub-Delivery, webhook-id`` -> ("X-GitHub-Delivery", "webhook-id"); empty: ()."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def parse_cidrs(text: str) -> tuple[str, ...]:
    """``10.0.0.0/8, fd00::/8`` -> the networks as written (checked); empty: none."""
    import ipaddress
    nets = parse_names(text)
    for net in nets:
        ipaddress.ip_network(net, strict=False)  # ValueError names the bad one
    return nets


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more, got {text!r}")
    return value


def _opt_addr(text: str) -> tuple[str, int] | None:
    return None if text in ("", "0", "off") else parse_addr(text)


COMMON = (
    Flag("redis-url", "redis.url", parse_redis_url,
         "Redis URL (redis://, rediss://); with --redis-sentinel its host:port are not used"),
    Flag("redis-password-file", "redis.password_file", str, "file holding the Redis password"),
    Flag("redis-sentinel", "redis.sentinel", parse_sentinels,
         "find the primary through these Sentinels; --redis-url then gives only the "
         "database, password and TLS"),
    Flag("redis-sentinel-master", "redis.sentinel_master", str,
         "name the Sentinels monitor the primary under (with --redis-sentinel)"),
    Flag("redis-tls-ca-file", "redis.tls_ca_file", str, "CA bundle for a rediss:// server"),
    Flag("redis-tls-cert-file", "redis.tls_cert_file", str, "client certificate for rediss://"),
    Flag("redis-tls-key-file", "redis.tls_key_file", str, "client key for rediss://"),
    Flag("log-level", "log.level", _level, "trace, debug, info or error"),
    Flag("log-encoding", "log.encoding", _encoding, "json or console"),
)
INTAKE = (
    Flag("http-addr", "intake.http_addr", parse_addr, "listen address for webhooks"),
    Flag("workers", "intake.workers", parse_positive_int, "gunicorn worker processes"),
    Flag("threads", "intake.threads", parse_positive_int, "request threads per worker"),
    Flag("max-answer-waits", "intake.max_answer_waits", parse_count,
         "requests per worker process that may wait for their Receiver's answers (else 503)"),
    Flag("max-pending", "intake.max_pending", parse_count,
         "503 while more copies than this are pending (0: off)"),
    Flag("max-pending-per-host", "intake.max_pending_per_host", parse_count,
         "503 to a host once it holds this many copies, pending and dead letters (0: off)"),
    Flag("max-stored-bytes-per-host", "intake.max_stored_bytes_per_host", parse_count,
         "503 to a host once its stored requests take this many bytes (0: off)"),
    Flag("min-replicas-ack", "intake.min_replicas_ack", parse_count,
         "replicas that must acknowledge a write before its 202 (Redis WAIT; 0: off)"),
    Flag("replica-ack-timeout", "intake.replica_ack_timeout", parse_duration,
         "how long a write waits for --min-replicas-ack replicas (then 503)"),
    Flag("body-size-limit", "intake.body_size_limit", parse_positive_int, "max body bytes"),
    Flag("max-header-bytes", "intake.max_header_bytes", parse_positive_int,
         "largest total of header lines in bytes (431 past it)"),
    Flag("trusted-proxies", "intake.trusted_proxies", parse_cidrs,
         "CIDRs whose X-Forwarded-Proto/-Host are kept, comma-separated"),
    Flag("proxy-read-timeout", "intake.proxy_read_timeout", parse_duration, "request read bound"),
    Flag("proxy-write-timeout", "intake.proxy_write_timeout", parse_duration, "answer write bound"),
    Flag("dedupe-headers", "intake.dedupe_headers", parse_names,
         "provider delivery-id headers to de-duplicate on, comma-separated (empty: off)"),
    Flag("dedupe-window", "intake.dedupe_window", parse_duration, "how long ids are remembered"),
)
DELIVERY = (
    Flag("delivery-timeout", "delivery.delivery_timeout", parse_duration, "bound per attempt"),
    Flag("min-retry-delay", "delivery.min_retry_delay", parse_duration, "first retry delay"),
    Flag("max-retry-delay", "delivery.max_retry_delay", parse_duration, "retry delay cap"),
    Flag("max-retry-age", "delivery.max_retry_age", parse_duration, "dead-letter after"),
    Flag("concurrency", "delivery.concurrency", parse_positive_int, "parallel attempts"),
    Flag("lease", "delivery.batch", _removed_lease, "removed: derived from --delivery-timeout",
         hidden=True),
    Flag("delivery-batch", "delivery.batch", parse_positive_int,
         "copies a delivery task claims at once"),
    Flag("backend-concurrency", "delivery.backend_concurrency", _non_negative_int,
         "attempts in flight per backend across workers (0: no cap)"),
    Flag("task-events", "delivery.task_events", parse_bool,
         "send Celery task events for Flower from the start"),
)
VERIFY_KEY = (
    Flag("verify-key-file", "redis.verify_key_file", str,
         "key file sealing spec.verify's secrets in Redis (operator and app: the same file)"),
)
UNSAFE_REDIS = (
    Flag("allow-unsafe-redis", "redis.allow_unsafe", parse_bool,
         "serve although Redis settings break durable 202s (development only)"),
)


def _retention(text: str) -> float:
    from hookfan.deadletters import parse_period
    return 0.0 if text.strip() in ("0", "off") else parse_period(text)


RETENTION = (
    Flag("dead-letter-retention", "delivery.dead_letter_retention", _retention,
         "delete dead letters older than this, e.g. 14d or 36h (0: keep until purged)"),
)
def _off_or_duration(text: str) -> float:
    return 0.0 if text.strip() in ("0", "off") else parse_duration(text)


PAUSING = (
    Flag("auto-pause-after", "delivery.auto_pause_after", _off_or_duration,
         "pause a backend with no delivery for this long while failing (0: never)"),
)
OPERATOR = (
    Flag("routes-dir", "operator.routes_dir", str, "directory of RequestClone YAML files"),
    Flag("service-alias", "operator.service_aliases", parse_aliases, "NAME=HOST:PORT,..."),
    Flag("poll-interval", "operator.poll_interval", parse_duration, "file source poll interval"),
    Flag("host-policy", "operator.host_policy", _host_policy, "namespace or shared"),
    Flag("receiver-cross-namespace", "operator.receiver_cross_namespace", parse_bool,
         "false: a Receiver's namespaceSelector reaches only its own namespace"),
    Flag("receiver-path-key", "operator.receiver_path_key", str,
         "file source: HMAC key for Receiver paths not set in the file"),
    Flag("kubeconfig", "operator.kubeconfig", str, "kubeconfig file (default: in-cluster)"),
    Flag("insecure-kubeconfig-exec", "operator.insecure_kubeconfig_exec", parse_bool,
         "allow exec credential plugins"),
    Flag("insecure-kubeconfig-tls", "operator.insecure_kubeconfig_tls", parse_bool,
         "allow TLS verification off"),
    Flag("watch-all-namespaces", "operator.watch_all_namespaces", parse_bool,
         "false: only the operator's namespace"),
    Flag("watch-label-selector", "operator.watch_label_selector", str, "RequestClone selector"),
    Flag("kube-api-qps", "operator.kube_api_qps", _positive_float, "API calls per second"),
    Flag("kube-api-burst", "operator.kube_api_burst", parse_positive_int, "API call burst"),
    Flag("concurrent", "operator.concurrent", parse_positive_int, "parallel status writes"),
    Flag("resync-period", "operator.resync_period", parse_duration, "full re-list interval"),
    Flag("enable-leader-election", "operator.enable_leader_election", parse_bool,
         "elect a leader through a Lease"),
    Flag("leader-election-lease-duration", "operator.leader_election_lease_duration",
         parse_duration, "Lease duration"),
    Flag("leader-election-renew-deadline", "operator.leader_election_renew_deadline",
         parse_duration, "leader renew deadline"),
    Flag("leader-election-retry-period", "operator.leader_election_retry_period",
         parse_duration, "acquire/renew interval"),
    Flag("leader-election-release-on-cancel", "operator.leader_election_release_on_cancel",
         parse_bool, "release the Lease on shutdown"),
    Flag("leader-election-id", "operator.leader_election_id", str, "Lease name"),
    Flag("status-interval", "operator.status_interval", parse_duration,
         "delivery figures in RequestClone status every"),
)
SERVING = (
    Flag("metrics-addr", "metrics_addr", _opt_addr, "Prometheus metrics address"),
    Flag("health-addr", "health_addr", _opt_addr, "health probe address"),
    Flag("otel-endpoint", "otel.endpoint", str, "OTLP/gRPC collector HOST:PORT (needs [otel])"),
    Flag("otel-insecure", "otel.insecure", parse_bool, "plaintext gRPC to the collector"),
    Flag("otel-service-name", "otel.service_name", str, "service.name of spans"),
    Flag("otel-tls-client-cert-path", "otel.tls_client_cert_path", str, "client cert (PEM)"),
    Flag("otel-tls-client-key-path", "otel.tls_client_key_path", str, "client key (PEM)"),
    Flag("otel-tls-root-ca-path", "otel.tls_root_ca_path", str, "collector CA (PEM)"),
    # Shared by app, worker and operator (all take SERVING); the field stays where it was.
    Flag("graceful-shutdown-timeout", "operator.graceful_shutdown_timeout", parse_duration,
         "shutdown bound after SIGTERM"),
)


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.upper().replace("-", "_")


def build(flags: Iterable[Flag], given: Mapping[str, str | None],
          environ: Mapping[str, str] | None = None, base: Settings | None = None) -> Settings:
    """Settings from flag values as written (``given``), falling back to ``HOOKFAN_*`` in
    ``environ`` then defaults. SettingsError names the flag (and variable) of a bad value."""
    environ = os.environ if environ is None else environ
    values: dict[Flag, Any] = {}
    for f in flags:
        raw = given.get(f.name)
        source = f"--{f.name}"
        if raw is None and env_name(f.name) in environ:
            raw, source = environ[env_name(f.name)], f"{env_name(f.name)} (--{f.name})"
        if raw is None:
            continue
        try:
            values[f] = f.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: {exc}") from None
    return assemble(values, base)


def assemble(values: Mapping[Flag, Any], base: Settings | None = None) -> Settings:
    """``base`` (default: the defaults) with each flag's parsed value in its setting, checked
    as a whole (SettingsError names the flags that disagree)."""
    groups: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for f, value in values.items():
        group, _, name = f.target.rpartition(".")
        (groups.setdefault(group, {}) if group else top)[name] = value
    settings = base or Settings()
    changes = {g: dataclasses.replace(getattr(settings, g), **v) for g, v in groups.items()}
    settings = dataclasses.replace(settings, **changes, **top)
    _check(settings)
    return settings


def _check_redis(r: RedisSettings) -> None:
    files = {"--redis-tls-ca-file": r.tls_ca_file, "--redis-tls-cert-file": r.tls_cert_file,
             "--redis-tls-key-file": r.tls_key_file, "--redis-password-file": r.password_file}
    given = [flag for flag, path in files.items() if path and "tls" in flag]
    if given and not r.tls:
        raise SettingsError(f"{given[0]} needs a rediss:// --redis-url (TLS); the URL given "
                            f"is {mask_url(r.url)!r}")
    if bool(r.sentinel) != bool(r.sentinel_master):
        one, missing = (("--redis-sentinel", "--redis-sentinel-master") if r.sentinel
                        else ("--redis-sentinel-master", "--redis-sentinel"))
        raise SettingsError(f"{missing} is missing: {one} needs it (give both or neither)")
    if r.sentinel and urlsplit(r.url).scheme == "unix":
        raise SettingsError("--redis-sentinel needs a redis:// or rediss:// --redis-url (it "
                            "gives the database, password and TLS), not unix://")
    if bool(r.tls_cert_file) != bool(r.tls_key_file):
        raise SettingsError("--redis-tls-cert-file and --redis-tls-key-file go together: "
                            "give both or neither")
    for flag, path in files.items():
        if path and not os.path.isfile(path):
            raise SettingsError(f"{flag}: no such file {path!r}")


MAX_REPLICA_ACK_TIMEOUT = 1.5
"""Longest --replica-ack-timeout: the write, the wait and the answer fit in a sender's 2 s."""


def _check(s: Settings) -> None:
    _check_redis(s.redis)
    if not 0 < s.intake.replica_ack_timeout <= MAX_REPLICA_ACK_TIMEOUT:
        raise SettingsError(f"--replica-ack-timeout must be more than 0 and at most "
                            f"{MAX_REPLICA_ACK_TIMEOUT:g}s: a sender gets its answer within 2 s")
    i = s.intake
    largest = i.body_size_limit + i.max_header_bytes
    if 0 < i.max_stored_bytes_per_host < largest:
        raise SettingsError(f"--max-stored-bytes-per-host {i.max_stored_bytes_per_host} is "
                            f"below --body-size-limit + --max-header-bytes ({largest}): the "
                            "largest request allowed could never be stored; raise it, or "
                            "give 0 for no cap")
    d = s.delivery
    if d.min_retry_delay > d.max_retry_delay:
        raise SettingsError("--min-retry-delay must not exceed --max-retry-delay")
    o = s.operator
    if not (o.leader_election_retry_period < o.leader_election_renew_deadline
            < o.leader_election_lease_duration):
        raise SettingsError("--leader-election-retry-period < --leader-election-renew-deadline "
                            "< --leader-election-lease-duration must hold")

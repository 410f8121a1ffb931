"""How every Agentbus service starts, reports health and stops.

`python -m agentbus.<service>` builds a `Service` and hands it to `main()`, which
- reads settings (a bad value is one clear line, exit code 2),
- binds the HTTP port first if the service has one (a port in use fails before anything else),
- checks NATS is reachable (an unreachable URL fails fast instead of retrying for ever),
- provisions streams, buckets and the service's durable consumers from the contracts,
- starts the FastStream broker, registers a NATS micro service (`$SRV.PING/INFO/STATS` plus the
  `health` endpoint on `agentbus.v1.health.<service>`),
- runs until SIGTERM/SIGINT, then stops the micro service, drains the broker (in-flight handlers
  finish and ack/nak within `shutdown_timeout_s`) and flushes traces.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import nats
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from nats.aio.client import Client as NatsClient
from nats.micro import add_service
from nats.micro.request import Request as MicroRequest
from nats.micro.service import Service as MicroService
from prometheus_client import CollectorRegistry

from agentbus.contracts import ServiceHealth, ServiceName
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import CONSUMERS, DOCUMENTS, ConsumerSpec

from .broker import make_broker
from .consuming import ONE_AT_A_TIME, Fetch, Rejects, Subscribe, durable_subscriber
from .health import EngineProbes, HealthCheck, probe_nats, timed
from .logs import setup_logging
from .metrics import QueueLag
from .ops_http import OpsServer
from .provisioning import provision
from .replies import Handler, OnError, Req, replier
from .settings import ConfigError, Settings, load, nats_auth
from .traces import setup_tracing, shutdown_tracing

log = logging.getLogger("agentbus.service")

Hook = Callable[[], Awaitable[None]]
S = TypeVar("S", bound=Settings)


class StartupError(RuntimeError):
    """A problem that stops a service from starting. The message is one line."""


@dataclass
class HttpServer:
    """An ASGI app served next to the broker (the gateway's API)."""

    app: Any
    host: str
    port: int


@dataclass
class Service:
    name: ServiceName
    version: str
    settings: Settings
    broker: NatsBroker
    registry: CollectorRegistry
    probes: EngineProbes
    rejects: Rejects
    checks: dict[str, HealthCheck] = field(default_factory=dict)
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    http: HttpServer | None = None
    description: str = ""
    _micro: MicroService | None = field(default=None, init=False, repr=False)
    _ops: OpsServer | None = field(default=None, init=False, repr=False)
    _lag: QueueLag | None = field(default=None, init=False, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    # Set once this instance consumes and answers: another replica's health reply says nothing
    # about this one.
    ready: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def connection(self) -> NatsClient:
        return self.broker.connection

    def consumer(
        self,
        spec: ConsumerSpec,
        *,
        title: str,
        description: str = "",
        fetch: Fetch = ONE_AT_A_TIME,
        decoder: Callable[..., Any] | None = None,
    ) -> Subscribe:
        """Subscribe the decorated handler to this service's durable pull consumer `spec`."""
        return durable_subscriber(
            self.broker,
            self.name,
            spec,
            title=title,
            description=description,
            fetch=fetch,
            decoder=decoder,
        )

    def replier(
        self,
        subject: str,
        request: type[Req],
        *,
        title: str,
        description: str,
        on_error: OnError,
    ) -> Callable[[Handler[Req]], Handler[Req]]:
        """Answer requests on `subject` (queue group: this service) with the decorated typed
        handler; see `replies` for what the wrapper does."""
        return replier(
            self.broker,
            self.rejects,
            subject,
            request,
            queue=self.name,
            title=title,
            description=description,
            on_error=on_error,
        )

    def asyncapi(self) -> AsyncAPI:
        """The AsyncAPI document of this service, generated from its broker's handlers."""
        return AsyncAPI(
            self.broker,
            title=f"agentbus-{self.name}",
            version=self.version,
            description=self.description or None,
        )

    async def health(self) -> ServiceHealth:
        """This instance's health: its NATS connection plus every engine it depends on."""
        timeout = self.settings.health_timeout_s
        names = ["nats", *self.checks]
        results = await asyncio.gather(
            timed(lambda: probe_nats(self.connection), timeout),
            *(check() for check in self.checks.values()),
        )
        checks = dict(zip(names, results, strict=True))
        return ServiceHealth(
            service=self.name,
            version=self.version,
            instance=self.settings.instance,
            ok=all(c.ok for c in checks.values()),
            checks=checks,
        )

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        sock = _bind(self.http.host, self.http.port) if self.http else None
        await _check_nats(self.settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.broker.connect()
        try:
            await provision(
                self.connection.jetstream(),
                self.name,
                replicas=self.settings.nats_replicas,
                bucket_max_bytes={DOCUMENTS.name: self.settings.documents_max_bytes},
            )
            for hook in self.on_startup:
                await hook()
            await self.broker.start()
            # Queue lag of the durable consumers this service binds, for /metrics.
            self._lag = QueueLag(
                self.registry,
                self.connection.jetstream(),
                [c for c in CONSUMERS if c.service == self.name],
            )
            self._lag.start()
            self._micro = await add_service(
                self.connection,
                name=f"agentbus-{self.name}",
                version=self.version,
                description=self.description or f"Agentbus {self.name} service",
                metadata={"platform": "agentbus", "instance": self.settings.instance},
            )
            await self._micro.add_endpoint(
                name="health", subject=s.health(self.name), handler=self._answer_health
            )
            # The gateway too: its metrics can then leave the public port (public_metrics).
            if self.settings.ops_port:
                self._ops = OpsServer(self.name, self.health, self.registry)
                await self._ops.start(_bind(self.settings.ops_host, self.settings.ops_port))
            # Subscriptions go to the server asynchronously: one round trip makes sure it has
            # them all, so a request sent the moment we say ready finds its responder (a test
            # saw "no responders" right after ready under load).
            await self.connection.flush(timeout=10)
            log.info(
                "service ready",
                extra={"nats": self.settings.nats_url, "version": self.version},
            )
            self.ready.set()
            if self.http is not None and sock is not None:
                await self._serve_http(self.http, sock)
            else:
                await self._stopping.wait()
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _serve_http(self, http: HttpServer, sock: socket.socket) -> None:
        import uvicorn

        config = uvicorn.Config(
            http.app,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(self.settings.shutdown_timeout_s),
            # Client addresses (rate limits) come from X-Forwarded-For only via these proxies.
            proxy_headers=True,
            forwarded_allow_ips=self.settings.forwarded_allow_ips,
        )
        server = uvicorn.Server(config)

        async def stop_when_asked() -> None:
            await self._stopping.wait()
            server.should_exit = True

        watcher = asyncio.create_task(stop_when_asked())
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()

    async def _answer_health(self, request: MicroRequest) -> None:
        health = await self.health()
        await request.respond(health.model_dump_json().encode())

    async def _shutdown(self) -> None:
        log.info("service stopping")
        if self._lag is not None:
            await self._lag.stop()
        if self._ops is not None:
            await self._ops.stop()
        if self._micro is not None:
            with contextlib.suppress(Exception):
                await self._micro.stop()
        for hook in self.on_shutdown:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        # Drains subscriptions: in-flight handlers finish (ack or nak) before the connection closes.
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.probes.close()
        log.info("service stopped")


def _bind(host: str, port: int) -> socket.socket:
    """Bind the HTTP port before anything else so a busy port fails fast and clearly."""
    # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets
    # whose proto says TCP. Without it, Nagle held each response's body until the client's
    # delayed ACK of its headers: +40 ms on every keep-alive request (issue 18).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def connect_once(settings: Settings, timeout: float | None = None) -> NatsClient:
    """One bounded connection attempt, so a wrong URL or refused login is an error, not a hang.

    nats-py keeps retrying a refused first connection whatever its reconnect options say, so the
    attempt is bounded here, and the error it reports to its callback is kept for the message.
    """
    budget = timeout or settings.nats_connect_timeout_s
    seen: list[Exception] = []

    async def _remember(exc: Exception) -> None:
        seen.append(exc)

    try:
        return await asyncio.wait_for(
            nats.connect(
                servers=settings.nats_servers,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=budget,
                error_cb=_remember,
                **nats_auth(settings),
            ),
            budget + 1.0,
        )
    except Exception as exc:
        cause = seen[0] if seen else exc
        reason = str(cause) or type(cause).__name__
        if isinstance(cause, OSError) and cause.strerror:
            reason = cause.strerror
        if isinstance(exc, TimeoutError) and not seen:
            reason = f"no answer within {budget:g}s"
        raise StartupError(f"cannot reach NATS at {settings.nats_url}: {reason}") from None


async def _check_nats(settings: Settings) -> None:
    nc = await connect_once(settings)
    await nc.close()


def fail(service: str, message: str) -> NoReturn:
    print(f"agentbus-{service}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def main(
    name: ServiceName, version: str, settings_cls: type[S], build: Callable[[S], Service]
) -> None:
    """Entry point of `python -m agentbus.<name>`."""
    try:
        settings = load(settings_cls)
    except ConfigError as exc:
        fail(name, str(exc))
    setup_logging(name, settings.log_level, settings.log_format)
    try:
        settings.traces_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(name, f"data dir {settings.data_dir} is not writable: {exc.strerror}")
    # Tracing first: the broker's telemetry middleware and the HTTP instrumentation use it.
    setup_tracing(name, version, settings.traces_dir, settings.instance)
    try:
        service = build(settings)
    except StartupError as exc:
        fail(name, str(exc))
    try:
        asyncio.run(service.run())
    except StartupError as exc:
        fail(name, str(exc))
    finally:
        shutdown_tracing()


def new_service(
    name: ServiceName,
    version: str,
    settings: Settings,
    *,
    description: str = "",
) -> Service:
    """A service with its broker (telemetry + metrics installed) and its metrics registry."""
    registry = CollectorRegistry()
    broker = make_broker(name, settings, registry)
    return Service(
        name=name,
        version=version,
        settings=settings,
        broker=broker,
        registry=registry,
        probes=EngineProbes(settings),
        rejects=Rejects(name, registry),
        description=description,
    )

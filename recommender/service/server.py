"""The recommender process: wires stores, engine, model and profiles into a gRPC server with
health checking, reflection and Prometheus metrics, and shuts down cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.engine import open_engine
from recommender.errors import ServiceSetupError
from recommender.profiles import read_item_fields
from recommender.service.feeds import FeedService
from recommender.service.profile_cache import ProfileCache
from recommender.service.servicer import RecommenderServicer, TokenInterceptor
from recommender.settings import Settings
from recommender.stores.events import EventStream
from recommender.stores.feed_pages import FeedPageStore
from recommender.stores.popular import PopularStore
from recommender.stores.profiles import ProfileStore
from recommender.stores.segments import RedisSegmentStore
from recommender.stores.sessions import SessionStore

__all__ = ["RunningServer", "start_server", "serve"]

_log = logging.getLogger("hotfeed.server")
_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recommender"].full_name


def _load_scorer(settings: Settings):
    path = settings.model.checkpoint
    if not path.exists():
        _log.warning("no session model at %s: rerank and session vectors are off (train one: hotfeed train)", path)
        return None
    from recommender.model.serving import SessionScorer

    scorer = SessionScorer.load(path, device=settings.model.device)
    _log.info("session model %s loaded on %s", scorer.version, scorer.device)
    return scorer


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    feeds: FeedService
    profiles: ProfileCache
    health: health.HealthServicer

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, let running ones finish for ``grace_s``, then release everything."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        self.profiles.stop()
        self.feeds.engine.close()


def start_server(settings: Settings, *, port: int | None = None) -> RunningServer:
    """Build and start the gRPC server; return it with its bound port.

    Raises ServiceSetupError when the port cannot be bound.
    """
    fields = read_item_fields(settings.paths.mappings_dir)
    profiles = ProfileCache(ProfileStore(settings.redis, fields=fields), fields=fields,
                            poll_ms=settings.server.profile_poll_ms)
    profiles.start()
    sessions = SessionStore(settings.redis, max_items=settings.server.session_max_items,
                            ttl_s=settings.server.session_ttl_s)
    feeds = FeedService(
        settings,
        engine=open_engine(settings),
        profiles=profiles,
        segments=RedisSegmentStore(settings.redis),
        sessions=sessions,
        pages=FeedPageStore(settings.redis, ttl_s=settings.server.feed_ttl_s),
        popular=PopularStore(settings.redis),
        scorer=_load_scorer(settings),
    )
    feeds.warm_fallback()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.server.workers, thread_name_prefix="rpc"),
        interceptors=[TokenInterceptor(settings.server.service_token)],
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    servicer = RecommenderServicer(feeds, EventStream(settings.redis), sessions,
                                   max_events=settings.server.max_events_per_call)
    pb_grpc.add_RecommenderServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((_SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    address = f"{settings.server.host}:{settings.server.port if port is None else port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        profiles.stop()
        raise ServiceSetupError(f"cannot listen on {address}: port in use? set HOTFEED_SERVER_PORT")
    server.start()
    for name in ("", _SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _log.info("recommender listening on %s:%d (engine %s, index %s)", settings.server.host, bound,
              settings.engine.url, settings.engine.index_alias)
    return RunningServer(server, bound, feeds, profiles, health_servicer)


def serve(settings: Settings) -> int:
    """Run the server until SIGINT/SIGTERM; return the exit status."""
    if settings.server.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.server.metrics_port, addr=settings.server.host)
        _log.info("metrics on http://%s:%d/metrics", settings.server.host, settings.server.metrics_port)
    running = start_server(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"hotfeed recommender serving on {settings.server.host}:{running.port}; Ctrl-C stops", flush=True)
    stop.wait()
    _log.info("shutting down: finishing calls in flight")
    running.stop()
    print("hotfeed recommender stopped", flush=True)
    return 0

"""The recommender process: wires stores, engine, model and profiles into a gRPC server with
health checking, reflection and Prometheus metrics, and shuts down cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import gc
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
from recommender.errors import ConfigError, HotfeedError, ServiceSetupError
from recommender.profiles import read_item_fields
from recommender.redact import redact_url
from recommender.service import metrics
from recommender.service.feeds import FeedService
from recommender.service.model_watcher import ModelWatcher, failure_reason, load_serving_scorer, record_serving_model
from recommender.service.profile_cache import ProfileCache
from recommender.service.servicer import RecommenderServicer, TokenInterceptor
from recommender.settings import DEV_CURSOR_SECRET, Settings
from recommender.stores import ServingStores, open_stores
from recommender.stores.experiment_counts import ExperimentCounter
from recommender.stores.experiments import ExperimentStore
from recommender.stores.profiles import ProfileStore
from recommender.stores.published_models import PublishedModel, PublishedModelStore

__all__ = ["RunningServer", "start_server", "serve"]

_log = logging.getLogger("hotfeed.server")
_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recommender"].full_name


def _load_scorer(settings: Settings):
    path = settings.model.checkpoint
    if path is None:
        _log.info("HOTFEED_MODEL_CHECKPOINT=none: serving without the session model (engine order, no session vectors)")
        return None
    if not path.exists():
        if "checkpoint" in settings.model.model_fields_set:
            raise ConfigError(
                f"HOTFEED_MODEL_CHECKPOINT={str(path)!r} does not exist; train one there "
                f"(`hotfeed train --events FILE --out {path}`) or set HOTFEED_MODEL_CHECKPOINT=none "
                f"to serve without the session model"
            )
        _log.warning("no session model at %s: rerank and session vectors are off (train one: hotfeed train)", path)
        return None
    import torch

    from recommender.model.serving import SessionScorer

    if settings.model.serving_threads:
        torch.set_num_threads(settings.model.serving_threads)
    scorer = SessionScorer.load(path, device=settings.model.device)
    _log.info("session model %s loaded on %s", scorer.version, scorer.runs_on)
    return scorer


def _load_start_scorer(settings: Settings, stores: ServingStores):
    """Return (scorer, version that failed) to start with: the published model when there is
    one and it passes its checks, else HOTFEED_MODEL_CHECKPOINT (see _load_scorer)."""
    if settings.model.checkpoint is None:
        _load_scorer(settings)  # logs that the model is off
        return None, None
    published: PublishedModel | None = None
    try:
        published = PublishedModelStore(settings.redis, client=stores.client).current()
    except HotfeedError as exc:  # Redis down or a malformed pointer: the watcher retries it
        _log.warning("published model not readable at start (%s); starting with HOTFEED_MODEL_CHECKPOINT", exc)
    if published is not None:
        try:
            scorer = load_serving_scorer(published.path, settings, expected_version=published.version)
        except Exception as exc:  # noqa: BLE001 - a bad publish must not keep the server from starting
            metrics.MODEL_SWAPS.labels(result="failed").inc()
            _log.error("published model %s cannot be served (%s); starting with HOTFEED_MODEL_CHECKPOINT=%s instead",
                       published.version, failure_reason(exc), settings.model.checkpoint)
            return _load_scorer(settings), published.version
        _log.info("session model %s (published %s) loaded on %s", scorer.version, published.path, scorer.runs_on)
        return scorer, None
    return _load_scorer(settings), None


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    feeds: FeedService
    profiles: ProfileCache
    health: health.HealthServicer
    stores: ServingStores
    model_watcher: ModelWatcher | None = None

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, let running ones finish for ``grace_s``, then release everything."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        if self.model_watcher is not None:
            self.model_watcher.stop()
        self.profiles.stop()
        if self.feeds.experiment_counts is not None:
            self.feeds.experiment_counts.stop()
        self.stores.close()
        self.feeds.engine.close()


def start_server(settings: Settings, *, port: int | None = None) -> RunningServer:
    """Build and start the gRPC server; return it with its bound port.

    Raises ServiceSetupError when the port cannot be bound.
    """
    if settings.server.cursor_secret == DEV_CURSOR_SECRET and not settings.server.dev_mode:
        raise ConfigError("HOTFEED_SERVER_CURSOR_SECRET is the public default, so anyone could forge page cursors; "
                          "set a long random value (or HOTFEED_DEV_MODE=1 on a development machine)")
    if settings.server.dev_mode:
        _log.warning("HOTFEED_DEV_MODE=1: insecure defaults allowed (default cursor secret, no service token)")
    fields = read_item_fields(settings.paths.mappings_dir)
    stores = open_stores(settings)
    profile_store = ProfileStore(settings.redis, fields=fields, client=stores.client)
    profiles = ProfileCache(profile_store, fields=fields, poll_ms=settings.server.profile_poll_ms,
                            experiments=ExperimentStore(settings.redis, profiles=profile_store))
    profiles.start()
    experiment_counts = ExperimentCounter(settings.redis, client=stores.client,
                                          flush_ms=settings.server.experiment_flush_ms)
    scorer, failed_version = _load_start_scorer(settings, stores)
    feeds = FeedService(
        settings,
        engine=open_engine(settings),
        profiles=profiles,
        segments=stores.segments,
        sessions=stores.sessions,
        pages=stores.pages,
        popular=stores.popular,
        scorer=scorer,
        experiment_counts=experiment_counts,
    )
    if scorer is not None:
        record_serving_model(scorer.version)
    feeds.warm_fallback()
    feeds.warm()
    # Everything loaded so far (model, vocabulary, clients, imported modules) lives as long as
    # the process; freezing it keeps Python's full collections from walking it again, which
    # otherwise stalled the request threads for 100-170 ms every few seconds under load.
    gc.collect()
    gc.freeze()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.server.workers, thread_name_prefix="rpc"),
        interceptors=[TokenInterceptor(settings.server.service_token)],
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    servicer = RecommenderServicer(feeds, stores.events, stores.sessions, preferences=stores.segments,
                                   max_events=settings.server.max_events_per_call)
    pb_grpc.add_RecommenderServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((_SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    address = f"{settings.server.host}:{settings.server.port if port is None else port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        profiles.stop()
        stores.close()
        raise ServiceSetupError(f"cannot listen on {address}: port in use? set HOTFEED_SERVER_PORT")
    server.start()
    experiment_counts.start()
    model_watcher = None
    if settings.model.checkpoint is not None:
        # HOTFEED_MODEL_CHECKPOINT=none switches the model off, published ones included.
        model_watcher = ModelWatcher(settings, feeds, stores.client, failed_version=failed_version)
        model_watcher.start()
    for name in ("", _SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _log.info("recommender listening on %s:%d (engine %s, index %s)", settings.server.host, bound,
              redact_url(settings.engine.url), settings.engine.index_alias)
    return RunningServer(server, bound, feeds, profiles, health_servicer, stores, model_watcher)


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

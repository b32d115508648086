"""Fixtures for integration tests: the real engines and Redis started by `hotfeed services up`.

A service that is not there fails the test with the command that starts it; nothing is
skipped for a missing service. Each test gets its own index names / key prefix and the
fixtures remove them afterwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from collections.abc import Iterator

import pandas as pd
import pytest

from recommender.engine import SearchEngine, open_engine
from recommender.errors import HotfeedError
from recommender.settings import EngineSettings, RedisSettings, Settings, load_settings
from recommender.stores import open_redis

_START_HINT = "start the local services with `hotfeed services up` (or `make services`)"


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings()


def _engine_settings(base: Settings, kind: str) -> Settings:
    port = base.services.opensearch_port if kind == "opensearch" else base.services.elasticsearch_port
    return base.model_copy(update={"engine": EngineSettings(kind=kind, url=f"http://127.0.0.1:{port}")})


@pytest.fixture(scope="session", params=["opensearch", "elasticsearch"])
def engine_settings(request, base_settings: Settings) -> Settings:
    """Settings pointing at one engine; every engine test runs on both engines."""
    return _engine_settings(base_settings, request.param)


@pytest.fixture(scope="session")
def opensearch_settings(base_settings: Settings) -> Settings:
    return _engine_settings(base_settings, "opensearch")


def _healthy_engine(settings: Settings) -> SearchEngine:
    engine = open_engine(settings)
    try:
        engine.health()
        engine.capabilities()
    except HotfeedError as exc:
        pytest.fail(f"{settings.engine.kind} at {settings.engine.url} is not reachable ({exc}); {_START_HINT}")
    return engine


@pytest.fixture(scope="session")
def engine(engine_settings: Settings) -> Iterator[SearchEngine]:
    eng = _healthy_engine(engine_settings)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def opensearch(opensearch_settings: Settings) -> Iterator[SearchEngine]:
    """The OpenSearch node (join + k-NN), for tests of the full query shape."""
    eng = _healthy_engine(opensearch_settings)
    if not eng.capabilities().join:
        pytest.fail("the local OpenSearch lacks the parent-join module; re-run `hotfeed services up`")
    yield eng
    eng.close()


@pytest.fixture
def join_engine(engine: SearchEngine) -> SearchEngine:
    """The engine, for tests that need the join field; skipped with the reason where it is absent."""
    caps = engine.capabilities()
    if not caps.join:
        pytest.skip(
            f"{caps.kind} {caps.version} lacks the parent-join module (the Elasticsearch integration-test "
            f"distribution ships without it); these tests run on OpenSearch and on a full Elasticsearch 8"
        )
    return engine


@pytest.fixture
def index_name(request) -> Iterator[callable]:
    """Return a factory of unique index names ``hftest-<test>-<n>``; all are deleted afterwards."""
    made: list[tuple[SearchEngine, str]] = []
    token = uuid.uuid4().hex[:8]

    def make(engine: SearchEngine, label: str = "idx") -> str:
        name = f"hftest-{token}-{label}-{len(made)}".lower()
        made.append((engine, name))
        return name

    yield make
    for eng, name in reversed(made):
        eng.delete_index(name)


@pytest.fixture
def redis_settings(base_settings: Settings) -> Iterator[RedisSettings]:
    """Redis settings with a unique key prefix; every key under it is deleted afterwards."""
    prefix = f"hftest:{uuid.uuid4().hex[:10]}:"
    settings = base_settings.redis.model_copy(update={"key_prefix": prefix})
    client = open_redis(settings)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means Redis is not usable
        pytest.fail(f"Redis at {settings.url} is not reachable ({exc}); {_START_HINT}")
    yield settings
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class ServiceStack:
    """A real recommender on a small synthetic index: gRPC target, settings, engine, market data."""

    target: str
    settings: Settings
    engine: SearchEngine
    market: object
    running: object


def _small_market():
    from indexer.rebuild import MarketplaceData
    from indexer.synth import generate_marketplace

    synth = generate_marketplace(n_items=400, n_users=200, days=3, seed=5, n_events=8000,
                                 end=pd.Timestamp.now(tz="UTC").floor("s"))
    return MarketplaceData(synth.items, synth.users, synth.events)


@pytest.fixture(scope="session")
def service_stack(opensearch_settings: Settings, tmp_path_factory) -> Iterator[ServiceStack]:
    """Index a small synthetic marketplace under a unique alias and Redis prefix, and start the
    real gRPC server in this process on a free port; everything is removed afterwards."""
    from recommender.service.server import start_server
    from recommender.settings import ModelSettings, ServerSettings
    from recommender.stores.cohort_maxima import CohortMaxima
    from recommender.stores.popular import PopularStore
    from indexer.rebuild import rebuild_index

    token = uuid.uuid4().hex[:8]
    redis = opensearch_settings.redis.model_copy(update={"key_prefix": f"hftest:{token}:"})
    settings = opensearch_settings.model_copy(
        update={
            "engine": opensearch_settings.engine.model_copy(update={"index_alias": f"hftest-{token}-svc"}),
            "redis": redis,
            "model": ModelSettings(checkpoint=None),
            # Generous deadline: the test machine is small and shared; deadline behaviour has its own test.
            "server": ServerSettings(port=0, engine_timeout_ms=5000, metrics_port=0, profile_poll_ms=100),
        }
    )
    engine = _healthy_engine(settings)
    market = _small_market()
    rebuild_index(engine, market, settings, popular=PopularStore(redis),
                  maxima=CohortMaxima(redis, half_life_h=settings.indexer.popularity_half_life_h), show_progress=False)
    running = start_server(settings, port=0)
    yield ServiceStack(f"127.0.0.1:{running.port}", settings, engine, market, running)
    running.stop(grace_s=1)
    engine.drop_items_alias(settings.engine.index_alias)
    client = open_redis(redis)
    keys = list(client.scan_iter(match=f"{redis.key_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    engine.close()


# Regions of the listings tests create in the service stack's shared index (one region each).
TEST_LISTING_REGION = "testland-"


@pytest.fixture
def retire_test_listings(service_stack: ServiceStack) -> Iterator[None]:
    """After the test, take the listings it created in the shared index out of every feed
    (status deleted), so tests that read feeds of the original market never meet them."""
    yield
    from recommender.engine import Doc

    alias = service_stack.settings.engine.index_alias
    service_stack.engine.refresh(alias)
    body = {"size": 1000, "query": {"bool": {"filter": [
        {"prefix": {"region": TEST_LISTING_REGION}}, {"term": {"status": "active"}}]}}}
    ids = [hit.id for hit in service_stack.engine.search(alias, body).hits]
    if ids:
        service_stack.engine.bulk_upsert(alias, [Doc(i, {"status": "deleted"}, partial=True) for i in ids])
        service_stack.engine.refresh(alias)


@pytest.fixture(scope="session")
def grpc_server(service_stack: ServiceStack) -> str:
    """The "host:port" of the real recommender started by ``service_stack``."""
    return service_stack.target

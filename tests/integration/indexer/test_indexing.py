"""Full rebuild, alias swap, rollback and the near-real-time path on the real OpenSearch and Redis."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from recommender.engine import SearchEngine
from recommender.settings import ModelSettings, Settings
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.events import EventStream
from recommender.stores.popular import PopularStore
from recommender.stores.segments import RedisSegmentStore
from indexer.incremental import GROUP, IncrementalIndexer
from indexer.rebuild import MarketplaceData, data_time, index_status, rebuild_index, rollback_index
from indexer.synth import generate_marketplace


@pytest.fixture(scope="module")
def market() -> MarketplaceData:
    synth = generate_marketplace(n_items=300, n_users=150, days=2, seed=11, n_events=6000)
    return MarketplaceData(synth.items, synth.users, synth.events)


@pytest.fixture
def settings(opensearch_settings: Settings, redis_settings, tmp_path: Path):
    alias = f"hftest-{uuid.uuid4().hex[:8]}-items"
    yield opensearch_settings.model_copy(
        update={
            "engine": opensearch_settings.engine.model_copy(update={"index_alias": alias}),
            "redis": redis_settings,
            "model": ModelSettings(checkpoint=tmp_path / "no-model.pt"),
        }
    )


@pytest.fixture
def engine(opensearch: SearchEngine, settings: Settings):
    alias = settings.engine.index_alias
    yield opensearch
    opensearch.drop_items_alias(alias)


def _rebuild(engine, market, settings, **kw):
    return rebuild_index(
        engine, market, settings, popular=PopularStore(settings.redis),
        maxima=CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h),
        show_progress=False, **kw,
    )


def _indexer(engine, settings, **kw) -> IncrementalIndexer:
    return IncrementalIndexer(
        engine, EventStream(settings.redis), RedisSegmentStore(settings.redis),
        CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h), settings, **kw,
    )


def _child(engine, settings, item_id: str, cohort: str = "all") -> dict | None:
    engine.refresh(settings.engine.index_alias)
    return engine.get(settings.engine.index_alias, f"{item_id}|{cohort}", routing=item_id)


def _active_ids(engine, settings) -> set[str]:
    body = {"size": 1000, "query": {"bool": {"filter": [{"term": {"status": "active"}}, {"term": {"relation": "item"}}]}}}
    engine.refresh(settings.engine.index_alias)
    return {h.id for h in engine.search(settings.engine.index_alias, body).hits}


def _cold_active_item(engine, settings, market) -> str:
    """Return an active item with no popularity child in the 'all' cohort."""
    for item_id in market.items.loc[market.items["status"] == "active", "item_id"]:
        if _child(engine, settings, item_id) is None:
            return item_id
    pytest.fail("the synthetic market has no cold active item")


def test_full_rebuild_swaps_the_alias_and_counts_match(engine, settings, market):
    report = _rebuild(engine, market, settings)
    alias = settings.engine.index_alias
    assert engine.alias_targets(alias) == [report.index]
    assert report.parents == len(market.items) and report.children > len(market.items)
    assert engine.count(alias, {"term": {"relation": "item"}}) == len(market.items)
    assert engine.count(alias, {"term": {"relation": "popularity"}}) == report.children
    assert report.failures == []
    popular = PopularStore(settings.redis).read()
    assert len(popular) > 10
    active = set(market.items.loc[market.items["status"] == "active", "item_id"])
    assert set(popular) <= active


def test_a_second_rebuild_keeps_the_previous_index_for_rollback(engine, settings, market):
    first = _rebuild(engine, market, settings)
    later = data_time(market).replace(microsecond=0) + timedelta(minutes=5)
    second = _rebuild(engine, market, settings, now=later)
    alias = settings.engine.index_alias
    assert second.previous == [first.index]
    assert index_status(engine, alias)["kept"] == [first.index]
    assert rollback_index(engine, alias) == (second.index, first.index)
    assert engine.alias_targets(alias) == [first.index]


def test_an_incremental_event_is_visible_after_refresh(engine, settings, market):
    _rebuild(engine, market, settings)
    item = _cold_active_item(engine, settings, market)
    EventStream(settings.redis).append(
        [{"type": "purchase", "item_id": item, "session_id": "s-new", "platform": "ios"}] * 3
    )
    report = _indexer(engine, settings).run_until_idle()
    assert (report.read, report.acked, report.failed) == (3, 3, 0)
    child = _child(engine, settings, item)
    purchase = settings.indexer.event_weights["purchase"]
    assert child["decayed_weight"] == pytest.approx(3 * purchase, rel=0.01)
    assert _child(engine, settings, item, "platform:ios")["count_1h"] == 3
    query = {"query": {"has_child": {"type": "popularity", "query": {"term": {"cohort": "all"}}}}, "size": 1000}
    assert item in {h.id for h in engine.search(settings.engine.index_alias, query).hits}


def test_a_crash_between_consume_and_acknowledge_loses_no_event(engine, settings, market):
    _rebuild(engine, market, settings)
    item = _cold_active_item(engine, settings, market)
    stream = EventStream(settings.redis)
    stream.ensure_group(GROUP)
    stream.append([{"type": "like", "item_id": item, "user_id": "u-crash"}] * 2)
    # Consumer "a" takes the entries and dies before writing or acknowledging anything.
    taken = stream.read_new(GROUP, "a", count=10, block_ms=100)
    assert len(taken) == 2 and stream.backlog(GROUP)["pending"] == 2
    # Consumer "b" claims what "a" left pending.
    report = _indexer(engine, settings, consumer="b", claim_idle_ms=0).run_until_idle()
    assert report.acked == 2
    assert _child(engine, settings, item)["decayed_weight"] == pytest.approx(
        2 * settings.indexer.event_weights["like"], rel=0.01
    )
    assert stream.backlog(GROUP)["pending"] == 0


def test_a_restarted_consumer_replays_its_own_pending_entries(engine, settings, market):
    _rebuild(engine, market, settings)
    item = _cold_active_item(engine, settings, market)
    stream = EventStream(settings.redis)
    stream.ensure_group(GROUP)
    stream.append([{"type": "view", "item_id": item, "user_id": "u-restart"}])
    stream.read_new(GROUP, "same", count=10, block_ms=100)
    report = _indexer(engine, settings, consumer="same").run_until_idle()
    assert report.acked == 1 and _child(engine, settings, item) is not None


def test_malformed_events_land_in_the_dead_letter_stream_with_the_reason(engine, settings, market):
    _rebuild(engine, market, settings)
    stream = EventStream(settings.redis)
    stream.append(["{not json", json.dumps({"type": "view"}), json.dumps({"type": "view", "item_id": "no-such-item",
                                                                         "user_id": "u1"}),
                   json.dumps({"type": "status", "item_id": "no-such-item", "status": "sold"})])
    report = _indexer(engine, settings).run_until_idle()
    assert (report.read, report.dead, report.acked) == (4, 4, 4)
    reasons = [row["reason"] for row in stream.dead_letters()]
    assert reasons[0].startswith("malformed:")
    assert "item_id" in reasons[1]
    assert reasons[2:] == ["unknown item 'no-such-item'"] * 2
    assert stream.backlog(GROUP)["pending"] == 0


def test_a_sold_item_vanishes_from_search_after_its_status_event(engine, settings, market):
    _rebuild(engine, market, settings)
    item = market.items.loc[market.items["status"] == "active", "item_id"].iloc[0]
    assert item in _active_ids(engine, settings)
    EventStream(settings.redis).append([{"type": "status", "item_id": item, "status": "sold"}])
    assert _indexer(engine, settings).run_until_idle().status_updates == 1
    assert item not in _active_ids(engine, settings)


def test_an_event_whose_document_the_engine_refuses_dead_letters_alone(engine, settings, market):
    import numpy as np
    import pandas as pd

    _rebuild(engine, market, settings)
    # A viewer whose stored cohort makes a child id longer than the engine's 512-byte limit.
    store = RedisSegmentStore(settings.redis)
    version = store.start_version()
    store.write_user_segments(version, pd.DataFrame({"user_id": ["poison"], "cohorts": ["region:" + "x" * 600 + ",all"]}),
                              ttl_s=np.array([600]))
    store.publish_version(version)
    good_item, poison_item = sorted(_active_ids(engine, settings))[:2]
    stream = EventStream(settings.redis)
    stream.append([json.dumps({"type": "like", "item_id": good_item, "session_id": f"s{n}"}) for n in range(3)]
                  + [json.dumps({"type": "like", "item_id": poison_item, "user_id": "poison"})])
    before = (_child(engine, settings, good_item) or {}).get("updated_at", 0)
    report = _indexer(engine, settings).run_until_idle()
    assert (report.read, report.dead, report.acked, report.failed) == (4, 1, 4, 0)
    [dead] = stream.dead_letters()
    assert "refused popularity document" in dead["reason"] and "512" in dead["reason"] and "poison" in dead["e"]
    after = _child(engine, settings, good_item)
    assert after["updated_at"] > before and after["count_1h"] >= 3
    assert stream.backlog(GROUP)["pending"] == 0


def test_idle_consumers_with_nothing_pending_are_removed_and_busy_ones_kept(engine, settings, market):
    stream = EventStream(settings.redis)
    stream.ensure_group(GROUP)
    stream.read_new(GROUP, "ghost", count=10, block_ms=1)  # a consumer that read nothing and went away
    stream.append([{"type": "view", "item_id": "i-any", "user_id": "u-ghost"}])
    stream.read_new(GROUP, "crashed", count=10, block_ms=1)  # died holding one entry
    import time

    time.sleep(0.05)
    indexer = _indexer(engine, settings, consumer="live", consumer_idle_ms=10, claim_idle_ms=60_000)
    names = {c["name"] for c in stream.client.xinfo_consumers(stream.key, GROUP)}
    # The ghost is gone; the crashed consumer keeps its entry until someone claims it.
    assert "ghost" not in names and "crashed" in names
    assert stream.backlog(GROUP)["pending"] == 1
    assert indexer.prune_consumers() == []


def test_a_run_until_idle_drains_what_the_engine_refused_or_keeps_it_pending(engine, settings, market):
    from recommender.engine import open_engine

    _rebuild(engine, market, settings)
    item = _cold_active_item(engine, settings, market)
    stream = EventStream(settings.redis)
    stream.ensure_group(GROUP)
    stream.append([{"type": "like", "item_id": item, "user_id": "u-drain"}] * 3)
    # An engine nobody answers on: the writes fail, the drain replays them, then gives up and says so.
    down = settings.model_copy(update={"engine": settings.engine.model_copy(update={"url": "http://127.0.0.1:9",
                                                                                    "timeout_ms": 500})})
    dead_engine = open_engine(down)
    try:
        report = _indexer(dead_engine, down, consumer="drainer", drain_retries=1).run_until_idle()
    finally:
        dead_engine.close()
    assert report.acked == 0 and report.failed == 3
    assert stream.backlog(GROUP)["pending"] == 3  # nothing lost
    # With the engine back, the same consumer replays and acknowledges all three.
    report = _indexer(engine, settings, consumer="drainer").run_until_idle()
    assert report.acked == 3 and report.failed == 0 and stream.backlog(GROUP)["pending"] == 0
    assert _child(engine, settings, item)["decayed_weight"] == pytest.approx(
        3 * settings.indexer.event_weights["like"], rel=0.01)


def test_a_new_index_is_warmed_with_feed_queries_before_the_swap(engine, settings, market):
    from indexer.rebuild import data_time
    from indexer.warmup import warm_index

    report = _rebuild(engine, market, settings)
    assert "warm" in report.stage_seconds and list(report.stage_seconds).index("warm") < list(
        report.stage_seconds).index("swap")
    # The production query shape (default profile, kNN, per region) runs on the live OpenSearch index.
    regions = market.items["region"].dropna().astype(str).unique().tolist()
    assert warm_index(engine, report.index, settings, regions=regions, now=data_time(market), queries=6) == 6


def test_events_stay_pending_while_the_index_cannot_be_read_instead_of_dead_lettering(engine, settings):
    import urllib.request

    # An index whose only shard cannot start (as after an engine restart, until shards recover):
    # its documents cannot be looked up, which is not the same as "unknown item".
    stranded = f"hftest-{uuid.uuid4().hex[:8]}-stranded"
    body = {"settings": {"number_of_shards": 1, "number_of_replicas": 0,
                         "index.routing.allocation.require._name": "no-such-node"}}
    url = f"{settings.engine.url}/{stranded}"
    put = urllib.request.Request(f"{url}?wait_for_active_shards=0", method="PUT", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(put, timeout=30).close()
    try:
        recovering = settings.model_copy(update={"engine": settings.engine.model_copy(update={"index_alias": stranded})})
        stream = EventStream(settings.redis)
        stream.append([{"type": "like", "item_id": "i-known-later", "user_id": "u-wait"},
                       {"type": "status", "item_id": "i-known-later", "status": "sold"}])
        report = _indexer(engine, recovering, consumer="recovering", drain_retries=1).run_until_idle()
        assert report.dead == 0 and report.acked == 0 and report.failed == 2
        assert stream.dead_letters() == [] and stream.backlog(GROUP)["pending"] == 2  # kept for the replay
    finally:
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).close()

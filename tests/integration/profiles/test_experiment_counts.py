"""ExperimentCounter on real Redis: events count only for viewers exposed to the experiment,
the number of exposed viewers, a Redis outage between serving and flushing, and the exposed
sets deleted by the stop. Each test calls ``flush`` itself (no background thread)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count, islice

import pytest

from recommender.errors import InvalidRequest, StoreUnavailable
from recommender.experiments import Experiment, assign_variant
from recommender.profiles import read_item_fields
from recommender.settings import REPO_ROOT, RedisSettings
from recommender.stores import open_redis
from recommender.stores.experiment_counts import ExperimentCounter
from recommender.stores.experiments import ExperimentStore, exposed_key
from recommender.stores.profiles import ProfileStore
from tests.integration.tcp_proxy import TcpProxy

PROFILE_YAML = "name: summer\ncomponents:\n  - type: knn\n    weight: {weight}\n"


@pytest.fixture
def experiments(redis_settings: RedisSettings) -> Iterator[ExperimentStore]:
    profiles = ProfileStore(redis_settings, fields=read_item_fields(REPO_ROOT / "es_mappings"))
    yield ExperimentStore(redis_settings, profiles=profiles)
    profiles.client.close()


@pytest.fixture
def experiment(experiments: ExperimentStore) -> Experiment:
    """A running 50/50 experiment ``knn`` between two published versions of profile ``summer``."""
    versions = []
    for weight in (1.0, 2.0):
        draft = experiments.profiles.save_draft("summer", PROFILE_YAML.format(weight=weight), author="pm")
        experiments.profiles.publish("summer", draft.version, actor="pm", comment="for the test")
        versions.append(draft.version)
    return experiments.start("knn", "summer", [(versions[0], 50), (versions[1], 50)], actor="pm")


@pytest.fixture
def counter(redis_settings: RedisSettings) -> Iterator[ExperimentCounter]:
    c = ExperimentCounter(redis_settings)
    yield c
    c.client.close()


def _viewers(experiment: Experiment, version: str, n: int) -> list[str]:
    """Return ``n`` viewer ids that ``experiment`` assigns to variant ``version``."""
    candidates = (f"viewer-{k}" for k in count())
    return list(islice((v for v in candidates if assign_variant(experiment, v).version == version), n))


def test_only_the_events_of_viewers_served_the_experiment_count(experiments, experiment, counter) -> None:
    a, b = (v.version for v in experiment.variants)
    alice, bob, dan = _viewers(experiment, a, 3)
    (carol,) = _viewers(experiment, b, 1)
    counter.served("knn", a, alice, 4)
    counter.served("knn", a, alice, 4)  # the same viewer again: one exposed viewer
    counter.served("knn", b, carol, 4)
    # alice and carol were served (in this process, not flushed yet); bob and dan never were.
    counter.add_events([("knn", a, alice, "click"), ("knn", a, bob, "click"), ("knn", b, carol, "purchase"),
                        ("knn", a, dan, "click")])
    # dan is served after his click: it still does not count.
    counter.served("knn", a, dan, 4)
    counter.flush()
    counts = experiments.counts("knn")
    assert counts[a] == {"impressions": 12, "exposed_viewers": 2, "click": 1}
    assert counts[b] == {"impressions": 4, "exposed_viewers": 1, "purchase": 1}
    # Exposed and flushed: later events count, decided in Redis at the next flush.
    counter.add_events([("knn", a, dan, "click"), ("knn", a, alice, "like"), ("knn", a, bob, "click")])
    counter.flush()
    counts = experiments.counts("knn")
    assert (counts[a]["click"], counts[a]["like"], counts[a]["exposed_viewers"]) == (2, 1, 2)


def test_a_viewer_exposed_by_another_replica_counts_once_its_exposure_is_flushed(experiments, experiment,
                                                                                 redis_settings) -> None:
    a = experiment.variants[0].version
    (erin,) = _viewers(experiment, a, 1)
    serving, recording = ExperimentCounter(redis_settings), ExperimentCounter(redis_settings)
    try:
        serving.served("knn", a, erin, 3)
        serving.flush()
        recording.add_events([("knn", a, erin, "chat")])
        recording.flush()
    finally:
        serving.client.close()
        recording.client.close()
    assert experiments.counts("knn")[a] == {"impressions": 3, "exposed_viewers": 1, "chat": 1}


def test_counts_and_exposures_survive_a_redis_outage_between_serving_and_flushing(experiments, experiment,
                                                                                  redis_settings) -> None:
    a, b = (v.version for v in experiment.variants)
    alice, bob = _viewers(experiment, a, 2)
    proxy = TcpProxy(int(redis_settings.url.rsplit(":", 1)[1].split("/")[0]))
    proxied = redis_settings.model_copy(update={"url": f"redis://127.0.0.1:{proxy.port}/0", "timeout_ms": 500})
    counter = ExperimentCounter(proxied)
    try:
        counter.served("knn", a, alice, 5)
        proxy.cut()
        with pytest.raises(StoreUnavailable, match="writing experiment counts and exposures"):
            counter.flush()
        # During the outage: alice (exposed, not yet in Redis) clicks and so does bob (never served).
        counter.add_events([("knn", a, alice, "click"), ("knn", a, bob, "click")])
        with pytest.raises(StoreUnavailable):
            counter.flush()
        proxy.resume()
        counter.flush()
    finally:
        counter.client.close()
        proxy.stop()
    assert experiments.counts("knn") == {a: {"impressions": 5, "exposed_viewers": 1, "click": 1}}
    assert b not in experiments.counts("knn")


def test_stopping_deletes_the_exposed_sets_and_keeps_the_counts(experiments, experiment, counter,
                                                               redis_settings) -> None:
    a, b = (v.version for v in experiment.variants)
    (alice,) = _viewers(experiment, a, 1)
    (carol,) = _viewers(experiment, b, 1)
    counter.served("knn", a, alice, 2)
    counter.served("knn", b, carol, 2)
    counter.flush()
    client = open_redis(redis_settings)
    keys = [exposed_key(redis_settings.key_prefix, "knn", v) for v in (a, b)]
    try:
        assert client.exists(*keys) == 2
        experiments.stop("knn", actor="pm")
        assert client.exists(*keys) == 0
        # A replica still serving the stopped experiment until its next poll: the sets stay gone,
        # and its viewers' events no longer count.
        counter.served("knn", a, "late-viewer", 2)
        counter.flush()
        counter.add_events([("knn", a, alice, "click")])
        counter.flush()
        assert client.exists(*keys) == 0
    finally:
        client.close()
    counts = experiments.counts("knn")
    assert (counts[a]["exposed_viewers"], counts[b]["exposed_viewers"]) == (1, 1)
    assert "click" not in counts[a]


def test_an_event_type_that_is_not_counted_is_refused_and_nothing_is_counted(counter) -> None:
    with pytest.raises(InvalidRequest, match="event type 'view' is not counted in experiments"):
        counter.add_events([("knn", "v1", "alice", "click"), ("knn", "v1", "alice", "view")])
    counter.flush()
    assert counter.client.keys(f"{counter.settings.key_prefix}*") == []

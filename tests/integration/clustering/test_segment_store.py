"""SegmentStore on real Redis: atomic version flips, TTL expiry, defaults, declared preferences."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from recommender.errors import InvalidRequest, StoreUnavailable
from recommender.segments import DeclaredPreferences
from recommender.settings import RedisSettings
from recommender.stores.segments import RedisSegmentStore


def write_version(store, users: list[str], *, run: int, ttl_s: int = 600, cold: dict | None = None) -> str:
    version = store.start_version()
    frame = pd.DataFrame({
        "user_id": users,
        "cluster": str(run),
        "gender": "m" if run % 2 else "f",
        "cohorts": f"cluster:{run},all",
        "top_categories": f'["run{run}"]',
    })
    store.write_user_segments(version, frame, ttl_s=np.full(len(users), ttl_s), batch_users=7)
    store.write_clusters(version, centroids=np.ones((1, 4), dtype=np.float32) * run, summaries={0: {"size": 1}},
                         cold_clusters=cold or {"all": 0}, meta={"run": run}, ttl_s=ttl_s)
    return version


def test_version_flip_is_atomic_for_a_concurrent_reader(store):
    users = [f"u{i}" for i in range(40)]
    run_of_version: dict[str, int] = {}
    run_of_version[v := write_version(store, users, run=0)] = 0
    store.publish_version(v)
    stop = threading.Event()
    problems: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        last_run = -1
        while not stop.is_set():
            segs = store.segments_for_many(users)
            versions = {s.version for s in segs}
            clusters = {s.cluster for s in segs}
            if len(versions) != 1 or len(clusters) != 1 or not all(s.known for s in segs):
                problems.append(f"mixed read: versions={versions} clusters={clusters}")
                return
            run = run_of_version[segs[0].version]
            if clusters != {run} or run < last_run:
                problems.append(f"read run {run} with clusters {clusters} after run {last_run}")
                return
            last_run = run
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for run in range(1, 15):
            version = write_version(store, users, run=run)
            run_of_version[version] = run
            store.publish_version(version)
            # Deleting the old version while the reader runs must not matter either.
            store.delete_versions_except([version])
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not problems, problems[0]
    assert reads > 0
    assert store.segments_for("u3").cluster == 14


def test_publishing_an_unknown_version_is_rejected(store):
    with pytest.raises(InvalidRequest, match="never started"):
        store.publish_version("no-such-version")


def test_old_versions_are_deleted_but_the_published_one_stays(store, raw_redis, redis_settings):
    old = write_version(store, ["a", "b"], run=1)
    store.publish_version(old)
    new = write_version(store, ["a", "b"], run=2)
    assert store.publish_version(new) == old
    deleted = store.delete_versions_except([])
    assert deleted == 2 + 4  # two user hashes + centroids, clusters, cold, meta
    assert not list(raw_redis.scan_iter(match=f"{redis_settings.key_prefix}seg:{old}:*"))
    assert store.segments_for("a").version == new


def test_segment_hashes_expire_after_their_ttl(store, raw_redis):
    version = write_version(store, ["short"], run=1, ttl_s=1)
    store.publish_version(version)
    assert store.segments_for("short").known
    assert 0 < raw_redis.ttl(store.user_key(version, "short")) <= 1
    deadline = time.monotonic() + 5
    while store.segments_for("short").known and time.monotonic() < deadline:
        time.sleep(0.2)
    expired = store.segments_for("short", region="Seoul")
    assert not expired.known
    assert expired.cohorts == ("region:seoul", "all")


def test_anonymous_viewers_get_request_region_and_platform_then_all(store):
    seg = store.segments_for(None, region="Seoul Metro", platform="iOS")
    assert seg.cohorts == ("region:seoul_metro", "platform:ios", "all")
    assert not seg.known and seg.user_id is None and seg.disliked_categories == ()
    assert store.segments_for("").cohorts == ("all",)


def test_unknown_users_get_the_same_defaults_and_a_cold_start_cluster(store):
    store.publish_version(write_version(store, ["someone"], run=1, cold={"all": 4, "region:busan": 2,
                                                                         "platform:web": 3}))
    busan = store.segments_for("stranger", region="Busan", platform="web")
    assert busan.cohorts == ("region:busan", "platform:web", "all")
    assert (busan.cluster, busan.cluster_source, busan.known) == (2, "cold_start", False)
    assert store.segments_for("stranger", platform="web").cluster == 3
    assert store.segments_for("stranger").cluster == 4
    # A cold-start cluster gives a query vector, never a cohort.
    assert not any(c.startswith("cluster:") for c in busan.cohorts)


def test_before_the_first_run_everyone_gets_defaults(store):
    seg = store.segments_for("u1", platform="android")
    assert seg.cohorts == ("platform:android", "all") and seg.version is None and seg.cluster is None
    assert store.current_version() is None and store.cluster_summaries() == {} and store.centroid(0) is None


def test_declared_preferences_override_inferred_segments(store):
    store.publish_version(write_version(store, ["u1"], run=1))  # inferred: gender m, top category run1
    store.set_declared_preferences("u1", DeclaredPreferences(
        gender="f", age_band="25-34", liked_categories=["toys"], disliked_categories=["run1"]))
    seg = store.segments_for("u1")
    assert (seg.gender, seg.age_band, seg.declared) == ("f", "25-34", True)
    assert seg.cohorts[:3] == ("ga:f:25-34", "g:f", "age:25-34") and "g:m" not in seg.cohorts
    assert seg.cohorts[-2:] == ("cluster:1", "all")
    assert seg.top_categories == ("toys",)
    assert seg.disliked_categories == ("run1",)
    assert store.declared_preferences("u1").liked_categories == ("toys",)
    store.clear_declared_preferences("u1")
    back = store.segments_for("u1")
    assert (back.gender, back.declared, back.top_categories) == ("m", False, ("run1",))


def test_declared_preferences_apply_to_users_without_segments(store):
    store.set_declared_preferences("newbie", DeclaredPreferences(gender="m", disliked_categories=["knives"]))
    seg = store.segments_for("newbie", region="Seoul")
    assert seg.cohorts == ("g:m", "region:seoul", "all") and seg.disliked_categories == ("knives",)


def test_centroids_and_summaries_of_the_published_version(store):
    store.publish_version(write_version(store, ["a"], run=3))
    assert np.array_equal(store.centroid(0), np.full(4, 3.0, dtype=np.float32))
    assert store.cluster_summaries() == {0: {"size": 1}}
    assert store.version_meta()["run"] == "3"


def test_redis_down_raises_store_unavailable_with_the_fix():
    down = RedisSegmentStore(RedisSettings(url="redis://127.0.0.1:1/0", timeout_ms=200, key_prefix="x:"))
    with pytest.raises(StoreUnavailable, match="hotfeed services up"):
        down.segments_for("u1")


def test_non_ascii_user_ids_and_categories_round_trip(store):
    version = store.start_version()
    frame = pd.DataFrame({"user_id": ["사용자-1", "plain"], "top_categories": ['["의류/신발", "café"]', None],
                          "region": ["서울", None], "cohorts": ["region:서울,all", "all"]})
    assert store.write_user_segments(version, frame, ttl_s=np.array([60, 60])) == 2
    store.publish_version(version)
    seg = store.segments_for("사용자-1")
    assert seg.top_categories == ("의류/신발", "café") and seg.region == "서울"
    plain = store.segments_for("plain")
    assert plain.known and plain.top_categories == () and plain.region is None


def test_a_refused_write_raises_store_unavailable_and_the_store_keeps_working(store, raw_redis):
    version = store.start_version()
    raw_redis.set(store.user_key(version, "u5"), "not a hash")  # HSET on it gets WRONGTYPE
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in range(10)], "cohorts": "all"})
    with pytest.raises(StoreUnavailable, match="refused a segment write"):
        store.write_user_segments(version, frame, ttl_s=np.full(10, 60), batch_users=3)
    fresh = store.start_version()
    assert store.write_user_segments(fresh, frame, ttl_s=np.full(10, 60), batch_users=3) == 10
    store.publish_version(fresh)
    assert store.segments_for("u9").known


def test_known_users_without_a_cluster_get_the_cold_cluster_of_their_own_region(store):
    version = store.start_version()
    frame = pd.DataFrame({"user_id": ["quiet", "clustered"], "region": ["busan", "busan"],
                          "cluster": [None, "7"], "cohorts": ["region:busan,all", "cluster:7,region:busan,all"]})
    store.write_user_segments(version, frame, ttl_s=np.array([60, 60]))
    store.write_clusters(version, centroids=np.zeros((0, 0), dtype=np.float32), summaries={},
                         cold_clusters={"all": 1, "region:busan": 2, "region:seoul": 3}, meta={}, ttl_s=60)
    store.publish_version(version)
    quiet = store.segments_for("quiet", region="Seoul")
    assert (quiet.cluster, quiet.cluster_source) == (2, "cold_start")
    assert store.segments_for("clustered", region="Seoul").cluster == 7
    quiet_many, clustered_many = store.segments_for_many(["quiet", "clustered"], region="Seoul")
    assert (quiet_many.cluster, clustered_many.cluster) == (2, 7)


def test_the_viewer_read_matches_the_separate_reads_in_one_round_trip(store, redis_settings):
    from recommender.stores.sessions import SessionStore

    version = write_version(store, ["v1"], run=3, cold={"region:seoul": 0, "all": 0})
    store.write_clusters(version, centroids=np.arange(16, dtype=np.float32).reshape(4, 4), summaries={},
                         cold_clusters={"region:seoul": 1, "all": 0}, meta={}, ttl_s=600)
    store.publish_version(version)
    sessions = SessionStore(redis_settings, max_items=3)
    sessions.append("s-1", ["a", "b", "c", "d"])
    viewer = store.viewer("v1", region="Seoul", session_key=sessions.key("s-1"), session_items=3)
    assert viewer.segments == store.segments_for("v1", region="Seoul")
    assert viewer.session == ("b", "c", "d") == tuple(sessions.recent("s-1"))
    assert viewer.segments.cluster == 3
    np.testing.assert_array_equal(viewer.centroid, [12, 13, 14, 15])


def test_an_anonymous_viewer_gets_the_cold_start_centroid_of_the_region(store):
    version = write_version(store, ["v2"], run=2)
    store.write_clusters(version, centroids=np.arange(12, dtype=np.float32).reshape(3, 4), summaries={},
                         cold_clusters={"region:busan": 2, "all": 0}, meta={}, ttl_s=600)
    store.publish_version(version)
    viewer = store.viewer(None, region=" Busan ")
    assert viewer.segments.cluster == 2 and viewer.segments.cluster_source == "cold_start"
    assert viewer.session == ()
    np.testing.assert_array_equal(viewer.centroid, [8, 9, 10, 11])


def test_the_viewer_read_with_redis_down_says_so():
    down = RedisSegmentStore(RedisSettings(url="redis://127.0.0.1:1/0", timeout_ms=200, key_prefix="x:"))
    with pytest.raises(StoreUnavailable, match="reading the viewer"):
        down.viewer("u1")

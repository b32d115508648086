"""The clustering job end to end on real Redis: planted groups, missing attributes, TTLs, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clustering.features import ItemEmbeddings
from clustering.job import run_clustering
from recommender.cli import main
from recommender.data_model import write_frame
from recommender.settings import ClusteringSettings

NOW = pd.Timestamp("2026-11-01T00:00:00Z")  # the reference time of conftest.planted_frames


def test_a_run_publishes_planted_groups_as_clusters(store, planted):
    frames = planted()
    report = run_clustering(frames, store, ClusteringSettings(), progress=False)
    assert (report.n_users, report.n_clustered, report.k) == (300, 300, 3)
    assert sorted(report.sizes) == [100, 100, 100] and report.silhouette > 0.5
    clusters = {u: store.segments_for(f"u{u}").cluster for u in range(30)}
    # Users of one planted group share a cluster; different groups never do.
    assert len({clusters[u] for u in range(0, 30, 3)}) == 1
    assert len({clusters[0], clusters[1], clusters[2]}) == 3
    summaries = store.cluster_summaries()
    assert sorted(s["size"] for s in summaries.values()) == [100, 100, 100]
    g2 = summaries[clusters[2]]
    assert set(g2["top_categories"]) == {"g2/c0", "g2/c1"} and g2["typical_price"] > 1000
    assert store.centroid(clusters[0]).shape == (6 + 3,)  # 6 leaves + 3 top levels
    meta = store.version_meta()
    assert meta["vector_kind"] == "category_affinity" and meta["k"] == "3"


def test_users_with_and_without_profile_attributes(store, planted):
    run_clustering(planted(), store, ClusteringSettings(), progress=False)
    full = store.segments_for("u1")  # f, born 1991, Seoul, ios
    assert full.cohorts == ("ga:f:35-44", "g:f", "age:35-44", f"cluster:{full.cluster}", "region:seoul",
                            "platform:ios", "all")
    bare = store.segments_for("u250")  # no profile row: platform from its events
    assert bare.cohorts == (f"cluster:{bare.cluster}", "platform:android", "all")
    assert bare.gender is None and bare.engagement in ("casual", "regular", "heavy")
    assert bare.top_categories and bare.price_band is not None


def test_ttl_counts_from_the_users_last_activity(store, raw_redis, planted):
    frames = planted(n_users=30)
    # Make u0's only events 50 minutes old, with a one-hour TTL: about 10 minutes left.
    ev = frames.events
    ev.loc[ev["user_id"] == "u0", "ts"] = NOW - pd.Timedelta(minutes=50)
    ev.loc[ev["user_id"] != "u0", "ts"] = NOW - pd.Timedelta(minutes=1)
    report = run_clustering(frames, store, ClusteringSettings(segment_ttl_s=3600), now=NOW, progress=False)
    ttl_u0 = raw_redis.ttl(store.user_key(report.version, "u0"))
    ttl_u3 = raw_redis.ttl(store.user_key(report.version, "u3"))
    assert 500 < ttl_u0 <= 600 and 3400 < ttl_u3 <= 3540


def test_a_second_run_replaces_the_first_and_deletes_its_keys(store, raw_redis, redis_settings, planted):
    first = run_clustering(planted(), store, ClusteringSettings(), progress=False)
    second = run_clustering(planted(seed=1), store, ClusteringSettings(k=3), progress=False)
    assert second.previous_version == first.version and second.keys_deleted == 300 + 4
    assert store.current_version() == second.version
    assert not list(raw_redis.scan_iter(match=f"{redis_settings.key_prefix}seg:{first.version}:*"))


def _write_data(folder: Path, planted) -> Path:
    frames = planted(n_users=60)
    write_frame(frames.events, folder / "events.parquet")
    write_frame(frames.items, folder / "items.parquet")
    write_frame(frames.users, folder / "users.parquet")
    return folder


def test_cli_cluster_run_prints_a_summary_and_exports(tmp_path, redis_settings, monkeypatch, capsys, store,
                                                      planted):
    monkeypatch.setenv("HOTFEED_REDIS_KEY_PREFIX", redis_settings.key_prefix)
    monkeypatch.setenv("HOTFEED_CLUSTERING_TORCH_THREADS", "1")
    monkeypatch.setenv("HOTFEED_PATHS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    assert main(["cluster", "run", "--data", str(_write_data(tmp_path, planted)), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "60 users" in out and "k=3" in out
    assert store.segments_for("u5").known
    exported = pd.read_parquet(tmp_path / "artifacts" / "clustering" / "user_segments.parquet")
    assert len(exported) == 60
    assert exported.set_index("user_id")["cluster"]["u5"] == store.segments_for("u5").cluster


def test_cli_cluster_run_names_missing_data(tmp_path, redis_settings, monkeypatch, capsys):
    monkeypatch.setenv("HOTFEED_REDIS_KEY_PREFIX", redis_settings.key_prefix)
    assert main(["cluster", "run", "--data", str(tmp_path / "nothing")]) == 1
    assert "hotfeed data synth" in capsys.readouterr().err


def test_cli_cluster_schedule_runs_then_stops_cleanly_on_sigterm(tmp_path, redis_settings, store, planted):
    env = {**os.environ, "HOTFEED_REDIS_KEY_PREFIX": redis_settings.key_prefix,
           "HOTFEED_CLUSTERING_TORCH_THREADS": "1", "HOTFEED_PATHS_ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recommender.cli", "cluster", "schedule", "--data", str(_write_data(tmp_path, planted)),
         "--every-minutes", "60", "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while store.current_version() is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert store.current_version() is not None, "the scheduled run never published a version"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped after 1 run(s), 0 failed" in out
    assert json.loads(store.version_meta()["sizes"]) == [20, 20, 20]



def test_with_item_embeddings_the_centroids_are_query_vectors(store, planted):
    frames = planted()
    items = frames.items["item_id"].astype(str)
    group = items.str.slice(1, 2).astype(int).to_numpy()  # "i<g>-<j>": the planted group
    vectors = np.eye(8, dtype=np.float32)[group] + 0.01
    report = run_clustering(frames, store, ClusteringSettings(),
                            item_embeddings=ItemEmbeddings(pd.Index(items), vectors), progress=False)
    assert report.vector_kind == "item_embedding" and report.k == 3
    meta = store.version_meta()
    assert meta["vector_kind"] == "item_embedding" and meta["dims"] == "8"
    centroid = store.centroid(store.segments_for("u2").cluster)
    assert centroid.shape == (8,) and int(np.argmax(centroid)) == 2

"""Publishing a checkpoint and swapping it into a running recommender, against the real Redis,
OpenSearch index (the service_stack fixture's), gRPC server and small trained torch models."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pandas as pd
import pytest
import torch
from prometheus_client import REGISTRY

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.cli import main
from recommender.data_model import validate_events
from recommender.model.checkpoint import load_checkpoint
from recommender.model.publish import publish_checkpoint, read_published, versions_dir
from recommender.service.server import RunningServer, start_server
from recommender.settings import ModelSettings, PathsSettings, ServerSettings, Settings
from recommender.stores.published_models import PublishedModelStore

# Every wait below is a bound on a condition, never a claim about speed.
_WITHIN_S = 120.0


@dataclass(frozen=True)
class Checkpoints:
    a: Path
    b: Path
    small: Path  # embedding_dim 16: does not fit the items index
    events: Path
    session: list[str]  # items model a knows: a session that makes the model rerank

    def version(self, path: Path) -> str:
        return load_checkpoint(path).version


def _market_events() -> pd.DataFrame:
    from indexer.synth import generate_marketplace

    synth = generate_marketplace(n_items=400, n_users=200, days=3, seed=5, n_events=8000,
                                 end=pd.Timestamp.now(tz="UTC").floor("s"))
    return synth.events


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, base_settings) -> Checkpoints:
    """Three tailnet checkpoints trained one epoch on synthetic sessions: a and b (different
    seeds, so different weights and versions) fit the index; small does not."""
    from recommender.model.config import load_model_config
    from recommender.model.data import build_sessions, split_sessions
    from recommender.model.trainer import Trainer

    folder = tmp_path_factory.mktemp("checkpoints")
    events = _market_events()
    split = split_sessions(build_sessions(validate_events(events)[0]), test_days=0.5)
    dims = base_settings.engine.embedding_dims
    paths = {}
    for name, seed, embedding_dim in (("a", 1, dims), ("b", 2, dims), ("small", 1, 16)):
        config = load_model_config("tailnet", flags={"epochs": 1, "seed": seed, "embedding_dim": embedding_dim})
        trainer = Trainer(config, device=torch.device("cpu"), progress=False)
        model = trainer.build("tailnet", split)
        paths[name] = trainer.save(folder / f"{name}.pt", model, split, trainer.fit(model, split))
    events_dir = folder / "events"  # alone in its folder: no items file beside it
    events_dir.mkdir()
    events.to_parquet(events_dir / "events.parquet")
    return Checkpoints(paths["a"], paths["b"], paths["small"], events_dir / "events.parquet",
                       split.vocab.to_list()[:3])


def _settings(service_stack, redis_settings, tmp_path: Path, *, checkpoint: Path) -> Settings:
    """The service stack's index, this test's own Redis prefix and artifacts folder, a fast watcher."""
    base = service_stack.settings
    return base.model_copy(update={
        "redis": redis_settings,
        "paths": PathsSettings(artifacts_dir=tmp_path / "artifacts"),
        "model": ModelSettings(checkpoint=checkpoint, poll_ms=100, device="cpu"),
        "server": ServerSettings(port=0, engine_timeout_ms=5000, metrics_port=0, profile_poll_ms=100),
    })


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _WITHIN_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        threading.Event().wait(0.05)


def _swaps(result: str) -> float:
    return REGISTRY.get_sample_value("hotfeed_model_swaps_total", {"result": result}) or 0.0


class _Server:
    """A real recommender in this process, with a client stub; stopped on exit."""

    def __init__(self, settings: Settings, session: list[str]):
        self.running: RunningServer = start_server(settings, port=0)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.running.port}")
        self.stub = pb_grpc.RecommenderStub(self.channel)
        self.session = session

    def version(self, session_id: str = "probe") -> str:
        page = self.stub.HomeFeed(pb.HomeFeedRequest(session_id=session_id, recent_item_ids=self.session,
                                                     page_size=5), timeout=30)
        return page.model_version

    def __enter__(self) -> "_Server":
        return self

    def __exit__(self, *_) -> None:
        self.channel.close()
        self.running.stop(grace_s=1)


def test_a_hot_swap_under_concurrent_requests_never_fails_a_request(checkpoints, service_stack, redis_settings,
                                                                   tmp_path):
    settings = _settings(service_stack, redis_settings, tmp_path, checkpoint=checkpoints.a)
    old, new = checkpoints.version(checkpoints.a), checkpoints.version(checkpoints.b)
    ok_before = _swaps("ok")
    with _Server(settings, checkpoints.session) as server:
        assert server.version() == old
        stop = threading.Event()
        seen: list[list[str]] = [[] for _ in range(4)]
        failures: list[str] = []

        def call_in_a_loop(n: int) -> None:
            k = 0
            while not stop.is_set():
                k += 1
                try:
                    page = server.stub.HomeFeed(pb.HomeFeedRequest(
                        session_id=f"swap-{n}-{k}", recent_item_ids=checkpoints.session, page_size=10), timeout=30)
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")
                    continue
                if not page.items:
                    failures.append(f"empty page from {page.served_from}")
                # A model that failed mid-request would degrade these stages instead of failing the call.
                failures.extend(f"{d.stage}: {d.reason}" for d in page.degradations if "session model" in d.reason)
                seen[n].append(page.model_version)

        clients = [threading.Thread(target=call_in_a_loop, args=(n,), daemon=True) for n in range(len(seen))]
        for client in clients:
            client.start()
        try:
            _wait_for(lambda: all(len(s) >= 3 for s in seen), "every client served before the publish")
            published = publish_checkpoint(checkpoints.b, settings)
            assert (published.version, published.previous) == (new, None)
            _wait_for(lambda: all(s.count(new) >= 3 for s in seen), "every client served by the new model")
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=60)
        assert failures == []
        for versions in seen:
            # One model per request, and a client never goes back once it got the new one.
            first_new = versions.index(new)
            assert versions[0] == old and set(versions) == {old, new}
            assert old not in versions[first_new:]
        assert server.version("after-swap") == new
        assert server.running.feeds.scorer.version == new
    assert _swaps("ok") == ok_before + 1


def test_a_broken_new_checkpoint_leaves_the_old_one_serving(checkpoints, service_stack, redis_settings, tmp_path):
    settings = _settings(service_stack, redis_settings, tmp_path, checkpoint=checkpoints.a)
    old = checkpoints.version(checkpoints.a)
    store = PublishedModelStore(settings.redis)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"half a checkpoint, cut off by a full disk")
    with _Server(settings, checkpoints.session) as server:
        watcher = server.running.model_watcher
        assert watcher is not None and server.version() == old
        failed_before = _swaps("failed")

        # The pointer is set directly: `hotfeed model publish` would refuse both files.
        store.publish("tailnet-0123456789ab", corrupt, published_at=time.time())
        _wait_for(lambda: watcher.failed_version == "tailnet-0123456789ab", "the corrupt checkpoint rejected")
        assert _swaps("failed") == failed_before + 1
        assert server.version() == old
        watcher.check()  # a failed version is not loaded again while the pointer names it
        assert _swaps("failed") == failed_before + 1

        small = checkpoints.version(checkpoints.small)
        store.publish(small, checkpoints.small, published_at=time.time())
        _wait_for(lambda: watcher.failed_version == small, "the checkpoint of another embedding size rejected")
        assert _swaps("failed") == failed_before + 2
        assert server.version() == old

        # The watcher survived both and still swaps a sound model in.
        new = publish_checkpoint(checkpoints.b, settings).version
        _wait_for(lambda: server.version() == new, "the sound checkpoint swapped in after the broken ones")
        assert watcher.failed_version is None
    store.close()


def test_a_server_starts_with_the_published_model_or_its_own_when_that_is_broken(checkpoints, service_stack,
                                                                                 redis_settings, tmp_path):
    settings = _settings(service_stack, redis_settings, tmp_path, checkpoint=checkpoints.a)
    published = publish_checkpoint(checkpoints.b, settings)
    with _Server(settings, checkpoints.session) as server:
        assert server.version() == published.version

    store = PublishedModelStore(settings.redis)
    missing = tmp_path / "gone.pt"
    store.publish("tailnet-ba5eba11c0de", missing, published_at=time.time())
    failed_before = _swaps("failed")
    with _Server(settings, checkpoints.session) as server:
        assert server.version() == checkpoints.version(checkpoints.a)
        assert server.running.model_watcher.failed_version == "tailnet-ba5eba11c0de"
        assert _swaps("failed") == failed_before + 1
    store.close()


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def model_env(redis_settings, tmp_path, monkeypatch, base_settings) -> Path:
    """The CLI's environment: this test's Redis prefix and artifacts folder; returns the artifacts folder."""
    monkeypatch.setenv("HOTFEED_REDIS_KEY_PREFIX", redis_settings.key_prefix)
    monkeypatch.setenv("HOTFEED_PATHS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("HOTFEED_ENGINE_EMBEDDING_DIMS", str(base_settings.engine.embedding_dims))
    monkeypatch.delenv("HOTFEED_MODEL_PARAMS", raising=False)
    return tmp_path / "artifacts"


def test_model_commands_publish_show_and_roll_back(checkpoints, model_env, tmp_path, capsys):
    a, b = checkpoints.version(checkpoints.a), checkpoints.version(checkpoints.b)
    assert main(["model", "publish", str(tmp_path / "missing.pt")]) == 1
    assert "'" + str(tmp_path / "missing.pt") + "' does not exist" in _one_line_error(capsys)
    assert main(["model", "current"]) == 0
    assert "no model published" in capsys.readouterr().out

    assert main(["model", "publish", str(checkpoints.a)]) == 0
    assert a in capsys.readouterr().out
    assert (model_env / "model" / "versions" / f"{a}.pt").read_bytes() == checkpoints.a.read_bytes()
    assert main(["model", "current"]) == 0
    assert f"model {a} published" in capsys.readouterr().out
    assert main(["model", "publish", str(checkpoints.b)]) == 0
    assert f"model {b} published" in capsys.readouterr().out
    assert main(["model", "current"]) == 0
    out = capsys.readouterr().out
    assert f"model {b} published" in out and f"(previous: {a})" in out

    assert main(["model", "rollback"]) == 0
    assert f"rolled back to model {a}" in capsys.readouterr().out
    assert main(["model", "current"]) == 0
    out = capsys.readouterr().out
    assert f"model {a} published" in out and f"(previous: {b})" in out
    assert main(["model", "rollback"]) == 1
    assert "no version before" in _one_line_error(capsys)

    assert main(["model", "publish", str(checkpoints.small)]) == 1
    err = _one_line_error(capsys)
    assert "embedding_dim 16" in err and "HOTFEED_ENGINE_EMBEDDING_DIMS=" in err


def test_train_publishes_its_checkpoint_and_only_warns_without_redis(checkpoints, model_env, redis_settings,
                                                                    base_settings, tmp_path, monkeypatch, capsys):
    out = tmp_path / "trained.pt"
    flags = ["--events", str(checkpoints.events), "--test-days", "0.5", "--epochs", "1", "--device", "cpu",
             "--set", f"embedding_dim={base_settings.engine.embedding_dims}", "--out", str(out)]
    assert main(["train", *flags]) == 0
    version = load_checkpoint(out).version
    assert f"published model {version}" in capsys.readouterr().out
    settings = base_settings.model_copy(update={"redis": redis_settings,
                                                "paths": PathsSettings(artifacts_dir=model_env)})
    assert read_published(settings).version == version
    assert (versions_dir(settings) / f"{version}.pt").exists()

    monkeypatch.setenv("HOTFEED_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["train", *flags]) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint written to {out} but not published: Redis unreachable" in printed
    assert f"`hotfeed model publish {out}`" in printed


def test_refresh_publishes_the_serving_model_with_counting_parts_from_recent_events(checkpoints, model_env,
                                                                                   redis_settings, base_settings,
                                                                                   tmp_path, capsys):
    settings = base_settings.model_copy(update={"redis": redis_settings,
                                                "paths": PathsSettings(artifacts_dir=model_env)})
    trained = tmp_path / "trained.pt"
    assert main(["train", "--events", str(checkpoints.events), "--test-days", "0.5", "--epochs", "1", "--device",
                 "cpu", "--set", f"embedding_dim={base_settings.engine.embedding_dims}", "--out", str(trained)]) == 0
    serving = read_published(settings).version
    capsys.readouterr()
    # No --checkpoint: the published model is the one refreshed, and the result is published.
    assert main(["model", "refresh", "--events", str(checkpoints.events), "--days", "1"]) == 0
    printed = capsys.readouterr().out
    refreshed = read_published(settings)
    assert refreshed.version != serving and f"refreshed from {serving}" in printed
    assert f"published model {refreshed.version}" in printed
    new, old = load_checkpoint(refreshed.path), load_checkpoint(trained)
    assert new.meta["refreshed"]["from"] == serving and new.blend.weights == old.blend.weights
    assert torch.equal(new.model.items.weight, old.model.items.weight)
    # Built from the last day of a three-day log: fewer sessions than the checkpoint's whole log.
    assert 0 < new.blend.knn.n_sessions < old.blend.knn.n_sessions
    assert main(["model", "rollback"]) == 0
    assert read_published(settings).version == serving


def test_a_publish_that_expects_another_version_changes_nothing(checkpoints, model_env, redis_settings,
                                                                base_settings):
    """What keeps a refresh from undoing a retrain that published while the refresh ran."""
    from recommender.model.publish import publish_trained

    settings = base_settings.model_copy(update={"redis": redis_settings,
                                                "paths": PathsSettings(artifacts_dir=model_env)})
    a, b = checkpoints.version(checkpoints.a), checkpoints.version(checkpoints.b)
    assert publish_checkpoint(checkpoints.a, settings).version == a
    # Refreshing a began; then b was published; the refresh's result (here: b's file) must not replace b...
    assert publish_checkpoint(checkpoints.b, settings).version == b
    said = publish_trained(checkpoints.a, settings, expected=a)
    assert "not published: another model than" in said and read_published(settings).version == b
    assert publish_checkpoint(checkpoints.a, settings, expected="tailnet-000000000000") is None
    assert read_published(settings).version == b
    # ... while the expected version is current, it publishes as usual.
    pointer = publish_checkpoint(checkpoints.a, settings, expected=b)
    assert pointer.version == a and pointer.previous == b and read_published(settings).version == a


def test_redis_down_is_logged_once_and_the_configured_model_keeps_serving(checkpoints, service_stack, redis_settings,
                                                                         tmp_path, caplog):
    dead = redis_settings.model_copy(update={"url": "redis://127.0.0.1:1/0", "timeout_ms": 200})
    settings = _settings(service_stack, redis_settings, tmp_path, checkpoint=checkpoints.a).model_copy(
        update={"redis": dead})
    caplog.set_level(logging.WARNING, logger="hotfeed.model")
    with _Server(settings, checkpoints.session) as server:
        assert server.version() == checkpoints.version(checkpoints.a)
        for _ in range(3):
            server.running.model_watcher.check()
        warnings = [r.getMessage() for r in caplog.records if r.name == "hotfeed.model"]
        assert len(warnings) == 1 and "Redis" in warnings[0] and "polling goes on" in warnings[0]

"""The fault suite: what a client and the event pipeline see while parts of the stack fail.

    .venv/bin/python bench/bench_faults.py [--feed-rate 20] [--event-rate 20] [--faults all]

Needs the local services (`hotfeed services up`; the suite kills and restarts the local
OpenSearch and Redis, so it must own them: run it alone). Loopback only, bounded in time
(about 6 minutes). It generates a small synthetic marketplace, trains a small model, builds
an items index under a throw-away alias and Redis key prefix, starts `hotfeed serve` and
`hotfeed index incremental --follow --consumer faults` as their own processes, and keeps two
open-loop loads running through every phase: HomeFeed at --feed-rate and RecordEvents (one
view per call) at --event-rate. The faults, one after the other, each followed by a quiet
spell:

    engine-kill     kill -9 the engine, restart it (`hotfeed services up --only ...`)
    redis-kill      kill -9 Redis, restart it (its AOF is replayed)
    redis-stop      SIGSTOP Redis for 5 s, then SIGCONT
    indexer-kill    kill -9 the near-real-time indexer mid-stream, restart it
    corrupt-model   point the published model at a corrupt file
    extreme-profile activate a valid but extreme score profile (every window at its maximum)

Per fault: feeds sent / errors / fallbacks, the seconds from recovery (the service answers
its health check again) until feeds are engine-served again (the start of the first 3 s with
no fallback and no error), and at the end events accepted (RecordEvents
answered OK) vs applied (acknowledged by the indexer after the engine took the write) and
dead-lettered. Targets: 0 errors, 0 events lost, engine-served within 10 s of recovery.
Prints a table with the load average and writes bench/results/faults.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import yaml

from _load import FeedLoad
from _report import RESULTS, load_line, print_measures, write_report
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from devservices.local import local_services
from recommender.engine import open_engine
from recommender.profiles import read_item_fields
from recommender.settings import ModelSettings, Settings, load_settings
from recommender.stores import open_redis
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.popular import PopularStore
from recommender.stores.profiles import ProfileStore
from recommender.stores.published_models import PublishedModelStore
from indexer.incremental import GROUP
from indexer.rebuild import load_marketplace, rebuild_index

FAULTS = ("engine-kill", "redis-kill", "redis-stop", "indexer-kill", "corrupt-model", "extreme-profile")
CONSUMER = "faults"
QUIET_S = 20  # observed after each recovery
TARGET_RECOVERY_S = 10


def _cli(*args: str, env: dict, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "recommender.cli", *args], env=env, capture_output=quiet, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"hotfeed {' '.join(args)} failed: {(proc.stderr or '')[-500:]}")
    return proc


class EventLoad:
    """Open-loop RecordEvents (one view each) at a fixed rate; counts what the server accepted."""

    def __init__(self, stub, users: list[str], items: list[str], rate: float):
        self.stub, self.users, self.items, self.rate = stub, users, items, rate
        self.accepted = self.refused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(3)
        start, n = time.monotonic(), 0
        while not self._stop.is_set():
            delay = start + n / self.rate - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            event = pb.Event(user_id=self.users[rng.integers(len(self.users))], session_id=f"faults-{n // 5}",
                             item_id=self.items[rng.integers(len(self.items))], type=pb.EVENT_TYPE_VIEW)
            try:
                answer = self.stub.RecordEvents(pb.RecordEventsRequest(events=[event]), timeout=5)
                ok = not answer.rejections
            except grpc.RpcError:
                ok = False  # the caller saw an error: nothing was promised, so nothing can be lost
            with self._lock:
                self.accepted += ok
                self.refused += not ok
            n += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Stack:
    """The processes and services the faults hit, and how to kill and revive each."""

    def __init__(self, settings: Settings, env: dict, logs: Path):
        self.settings, self.env, self.logs = settings, env, logs
        self.engine_name = settings.engine.kind
        self.services = {s.name: s for s in local_services(settings.services)}
        for name in ("serve", "index"):
            (logs / f"faults-{name}.log").write_text("")
        self.server = self._start("serve")
        self.indexer = self._start("index", "incremental", "--follow", "--consumer", CONSUMER)

    def _start(self, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"faults-{args[0]}.log", "a")  # truncated per run in __init__
        return subprocess.Popen([sys.executable, "-m", "recommender.cli", *args], env=self.env, stdout=log, stderr=log)

    def _pid(self, name: str) -> int:
        service = self.services[name]
        path = service.home / "redis.pid" if name == "redis" else service.pid_file
        return int(path.read_text().strip())

    def _revive(self, name: str) -> float:
        """Start the local service ``name`` again; return the wall time it answered its health check."""
        _cli("services", "up", "--only", name, env=self.env)
        return time.time()

    def engine_kill(self) -> tuple[float, float]:
        """Return (when the restarted engine first answered its health check, when it was ready and warmed)."""
        service = self.services[self.engine_name]
        os.kill(self._pid(self.engine_name), signal.SIGKILL)
        time.sleep(3)
        answering: list[float] = []

        def watch() -> None:
            while not answering:
                if service._health() is not None:
                    answering.append(time.time())
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        ready = self._revive(self.engine_name)
        watcher.join(timeout=5)
        return (answering[0] if answering else ready), ready

    def redis_kill(self) -> float:
        os.kill(self._pid("redis"), signal.SIGKILL)
        time.sleep(3)
        return self._revive("redis")

    def redis_stop(self) -> float:
        pid = self._pid("redis")
        os.kill(pid, signal.SIGSTOP)
        time.sleep(5)
        os.kill(pid, signal.SIGCONT)
        return time.time()

    def indexer_kill(self) -> float:
        self.indexer.send_signal(signal.SIGKILL)
        self.indexer.wait()
        time.sleep(2)
        self.indexer = self._start("index", "incremental", "--follow", "--consumer", CONSUMER)
        return time.time()

    def corrupt_model(self) -> float:
        bad = self.logs / "faults-corrupt.pt"
        bad.write_bytes(b"not a checkpoint " * 1000)
        PublishedModelStore(self.settings.redis).publish("tailnet-corrupt00000", bad, published_at=time.time())
        return time.time()

    def extreme_profile(self) -> float:
        store = ProfileStore(self.settings.redis, fields=read_item_fields(self.settings.paths.mappings_dir))
        profile = yaml.safe_load(store.ensure_default().text)
        profile["candidates"] = 1000
        for component in profile["components"]:
            component["weight"] = 1e6
            if component["type"] == "knn":
                component.update(k=1000, num_candidates=2000)
            if component["type"] == "cohort_popularity":
                component["min_child_score"] = 0.0
        store.save(profile["name"], yaml.safe_dump(profile, sort_keys=False), author="fault suite")
        return time.time()

    def stop(self) -> None:
        for proc in (self.server, self.indexer):
            proc.send_signal(signal.SIGTERM)
        for proc in (self.server, self.indexer):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _settled_after(outcomes: list[tuple[float, str]], recovered: float, *, window_s: float = 3.0) -> float | None:
    """Return the seconds from ``recovered`` to the start of the first ``window_s`` in which every call was
    engine-served (no fallback, no error); None when that never happened in the phase."""
    bad = [t for t, o in outcomes if o in ("fallback", "error") and t >= recovered]
    last = outcomes[-1][0] if outcomes else recovered
    start = recovered
    for t in bad:
        if t - start >= window_s:
            break
        start = t
    else:
        if last - start < window_s:
            return None
    return round(start - recovered, 1)


def _phase(load: FeedLoad, name: str, inject, *, quiet_s: float) -> dict:
    start = time.time()
    before = load.counts()
    print(f"{name}: injecting ({load_line()})", flush=True)
    recovered = inject()
    answering = None
    if isinstance(recovered, tuple):  # the engine: first health answer, then ready (shards up, warmed)
        answering, recovered = recovered
    time.sleep(quiet_s)
    end = time.time()
    recovered_for_buckets = answering if answering is not None else recovered
    after = load.counts()
    outcomes = load.outcomes_between(start, end)
    degraded = [t for t, o in outcomes if o in ("fallback", "error")]
    row = {
        "sent": after[0] - before[0], "errors": after[1] - before[1], "fallbacks": after[2] - before[2],
        "fault_to_recovery_s": round(recovered - start, 1),
        "recovery_to_engine_served_s": _settled_after(outcomes, recovered),
        **({"health_answer_to_ready_s": round(recovered - answering, 1),
            "health_answer_to_engine_served_s": _settled_after(outcomes, answering)} if answering else {}),
        "degraded_span_s": round(max(degraded) - min(degraded), 1) if degraded else 0.0,
        "load_avg": os.getloadavg(),
    }
    # Per second from the recovery (the engine: its first health answer): calls served by the engine /
    # fallbacks / errors (the shape of it).
    seconds: dict[int, list[int]] = {}
    for t, outcome in outcomes:
        bucket = seconds.setdefault(int(np.floor(t - recovered_for_buckets)), [0, 0, 0])
        bucket[{"fallback": 1, "error": 2}.get(outcome, 0)] += 1
    row["per_second_from_recovery"] = {k: seconds[k] for k in sorted(seconds)}
    print(f"{name}: {({k: v for k, v in row.items() if k != 'per_second_from_recovery'})}", flush=True)
    return row


def _drained(settings: Settings, timeout_s: float = 120) -> dict:
    """Wait until the indexer's group has read and acknowledged everything; return the group's counts."""
    client = open_redis(settings.redis)
    key = f"{settings.redis.key_prefix}events"
    deadline = time.monotonic() + timeout_s
    while True:
        group = next((g for g in client.xinfo_groups(key) if g["name"] == GROUP), {})
        counts = {"stream_length": int(client.xlen(key)), "entries_read": int(group.get("entries-read") or 0),
                  "pending": int(group.get("pending") or 0), "lag": int(group.get("lag") or 0),
                  "dead_lettered": int(client.xlen(f"{settings.redis.key_prefix}events:dead"))}
        if (counts["pending"] == 0 and counts["lag"] == 0) or time.monotonic() > deadline:
            reasons: dict[str, int] = {}
            for _, fields in client.xrange(f"{settings.redis.key_prefix}events:dead", count=10_000):
                reason = str(fields.get("reason", "?"))[:120]
                reasons[reason] = reasons.get(reason, 0) + 1
            counts["dead_letter_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
            return counts
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated faults (default: all)")
    parser.add_argument("--feed-rate", type=float, default=20.0, help="HomeFeed calls/s (default: %(default)s)")
    parser.add_argument("--event-rate", type=float, default=20.0, help="RecordEvents calls/s (default: %(default)s)")
    parser.add_argument("--port", type=int, default=50091, help="recommender port (default: %(default)s)")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown faults {unknown}; choose from {list(FAULTS)}")

    base = load_settings()
    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="hotfeed-faults-"))
    settings = base.model_copy(update={
        "engine": base.engine.model_copy(update={"index_alias": f"hffaults-{run_id}-items"}),
        "redis": base.redis.model_copy(update={"key_prefix": f"hffaults-{run_id}:"}),
        "model": ModelSettings(checkpoint=work / "model.pt", device="cpu"),
    })
    env = {**os.environ, "HOTFEED_DEV_MODE": "1", "HOTFEED_SERVER_PORT": str(args.port),
           "HOTFEED_SERVER_METRICS_PORT": "0", "HOTFEED_ENGINE_INDEX_ALIAS": settings.engine.index_alias,
           "HOTFEED_REDIS_KEY_PREFIX": settings.redis.key_prefix, "HOTFEED_MODEL_CHECKPOINT": str(work / "model.pt"),
           "HOTFEED_MODEL_DEVICE": "cpu", "HOTFEED_MODEL_POLL_MS": "500"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"preparing under {work}: a small marketplace, a model, the index ({load_line()})", flush=True)
    _cli("data", "synth", "--out", str(work), "--items", "3000", "--users", "1500", "--days", "3", "--end", "now",
         env=env)
    _cli("train", "--events", str(work / "events.parquet"), "--epochs", "2", "--out", str(work / "model.pt"),
         "--no-publish", env=env)
    market = load_marketplace(work)
    engine = open_engine(settings)
    rebuild_index(engine, market, settings, popular=PopularStore(settings.redis),
                  maxima=CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h),
                  show_progress=False)
    _cli("model", "publish", str(work / "model.pt"), env=env)
    stack = Stack(settings, env, RESULTS)
    report: dict = {"at": time.time(), "cores": os.cpu_count(), "engine": settings.engine.kind,
                    "feed_rate": args.feed_rate, "event_rate": args.event_rate, "items": len(market.items),
                    "faults": {}}
    try:
        target = f"127.0.0.1:{args.port}"
        grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=180)
        stub = pb_grpc.RecommenderStub(grpc.insecure_channel(target))
        users = market.users[["user_id", "region"]].sample(n=min(1000, len(market.users)), random_state=7)
        recent = market.events.sort_values("ts").groupby("user_id")["item_id"].agg(lambda s: tuple(s.astype(str).tail(5)))
        people = [(u, r, recent.get(u, ())) for u, r in zip(users["user_id"].astype(str),
                                                             users["region"].fillna("").astype(str))]
        load = FeedLoad(stub, people, args.feed_rate, timeout_s=5)
        active = market.items.loc[market.items["status"] == "active", "item_id"].astype(str).tolist()
        events = EventLoad(stub, users["user_id"].astype(str).tolist(), active, args.event_rate)
        load.start()
        events.start()
        report["baseline"] = _phase(load, "baseline", time.time, quiet_s=10)
        for name in faults:
            report["faults"][name] = _phase(load, name, getattr(stack, name.replace("-", "_")), quiet_s=QUIET_S)
        events.stop()
        load.stop()
        counts = _drained(settings)
        # Every stream entry read and acknowledged was applied (the indexer acknowledges only what the
        # engine accepted) or dead-lettered with its reason. The stream may hold a few entries more than
        # were accepted: a call whose answer timed out after its append (the caller retries; at least once).
        done = counts["entries_read"] - counts["pending"]
        report["events"] = {"accepted": events.accepted, "refused_to_caller": events.refused, **counts,
                            "applied": done - counts["dead_lettered"],
                            "lost": max(0, events.accepted - done)}
        report["feeds"] = {"sent": load.sent, "errors": load.errors, "fallbacks": load.fallbacks,
                           "error_samples": load.error_samples}
    finally:
        stack.stop()
        engine.drop_items_alias(settings.engine.index_alias)
        engine.close()
        client = open_redis(settings.redis)
        keys = list(client.scan_iter(match=f"{settings.redis.key_prefix}*", count=1000))
        if keys:
            client.delete(*keys)

    rows = [("feeds sent / errors / fallbacks", f"{load.sent} / {load.errors} / {load.fallbacks}")]
    for name, row in report["faults"].items():
        rows.append((f"{name}: errors / fallbacks", f"{row['errors']} / {row['fallbacks']}"))
        rows.append((f"{name}: recovery -> engine-served", f"{row['recovery_to_engine_served_s']} s"))
        if "health_answer_to_engine_served_s" in row:
            rows.append((f"{name}: first health answer -> engine-served",
                         f"{row['health_answer_to_engine_served_s']} s"))
    ev = report["events"]
    rows.append(("events accepted / applied / dead / lost",
                 f"{ev['accepted']} / {ev['applied']} / {ev['dead_lettered']} / {ev['lost']}"))
    rows.append(("events refused to the caller", ev["refused_to_caller"]))
    print_measures(rows, name_width=40)
    print(load_line())
    write_report(report, "faults.json")
    def settle(row: dict) -> float | None:
        return row.get("health_answer_to_engine_served_s", row["recovery_to_engine_served_s"])

    slow = [n for n, r in report["faults"].items() if settle(r) is None or settle(r) > TARGET_RECOVERY_S]
    ok = load.errors == 0 and ev["lost"] == 0 and not slow
    print("targets met" if ok else f"targets missed: errors {load.errors}, events lost {ev['lost']}, "
          f"slow recovery {slow}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

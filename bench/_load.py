"""Open-loop HomeFeed load for the benchmarks and the fault suite.

Benchmarks run as scripts (`python bench/NAME.py`), so this folder is on sys.path and they
import it as ``_load``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb

__all__ = ["FeedLoad"]


class FeedLoad:
    """Open-loop HomeFeed calls at a fixed rate on a thread pool; counts outcomes and model versions.

    ``timeline`` keeps (due time, outcome) per answered call, outcome "engine", "fallback",
    "cache" or "error", so a phase can say when fallbacks stopped.
    """

    def __init__(self, stub, people: list[tuple[str, str, tuple[str, ...]]], rate: float, *, timeout_s: float = 10):
        self.stub, self.people, self.rate, self.timeout_s = stub, people, rate, timeout_s
        self.sent = self.errors = self.fallbacks = 0
        self.first_seen: dict[str, float] = {}
        self.error_samples: list[str] = []
        self.timeline: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="feed")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, n: int, due: float) -> None:
        user, region, session = self.people[n % len(self.people)]
        try:
            page = self.stub.HomeFeed(pb.HomeFeedRequest(user_id=user, region=region, page_size=20,
                                                         session_id=f"load-{n}", recent_item_ids=session),
                                      timeout=self.timeout_s)
        except grpc.RpcError as exc:
            with self._lock:
                self.errors += 1
                self.timeline.append((due, "error"))
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{exc.code().name}: {exc.details()}")
            return
        outcome = {pb.SERVED_FROM_FALLBACK: "fallback", pb.SERVED_FROM_CACHE: "cache"}.get(page.served_from, "engine")
        with self._lock:
            self.fallbacks += outcome == "fallback"
            self.timeline.append((due, outcome))
            self.first_seen.setdefault(page.model_version, time.time())

    def _run(self) -> None:
        start, n = time.monotonic(), 0
        wall = time.time() - start
        while not self._stop.is_set():
            due = start + n / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            self._pool.submit(self._one, n, wall + due)
            with self._lock:
                self.sent += 1
            n += 1

    def start(self) -> None:
        self._thread.start()

    def counts(self) -> tuple[int, int, int]:
        """Return (sent, errors, fallbacks) so far; a phase's figures are the difference of two."""
        with self._lock:
            return self.sent, self.errors, self.fallbacks

    def outcomes_between(self, start: float, end: float) -> list[tuple[float, str]]:
        """Return the (due time, outcome) of the calls due in [start, end) (wall-clock seconds)."""
        with self._lock:
            return sorted((t, o) for t, o in self.timeline if start <= t < end)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

"""Prometheus metrics of the recommender (served on settings.server.metrics_port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["STAGE_SECONDS", "ENGINE_TOOK_SECONDS", "RPC_SECONDS", "DEGRADATIONS", "RPC_ERRORS", "EVENTS",
           "MODEL_SWAPS", "MODEL_INFO", "MODEL_SWAP_DELAY_SECONDS"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)

STAGE_SECONDS = Histogram("hotfeed_stage_seconds", "Time per feed stage", ["rpc", "stage"], buckets=_BUCKETS)
# The engine's own ``took``: the gap to the "engine" stage is HTTP, JSON and the client.
ENGINE_TOOK_SECONDS = Histogram("hotfeed_engine_took_seconds", "Search time the engine reports (took)", ["rpc"],
                                buckets=_BUCKETS)
RPC_SECONDS = Histogram("hotfeed_rpc_seconds", "Time per RPC", ["rpc"], buckets=_BUCKETS)
DEGRADATIONS = Counter("hotfeed_degradations_total", "Feeds served degraded, by stage", ["stage"])
RPC_ERRORS = Counter("hotfeed_rpc_errors_total", "RPCs that returned an error, by status code", ["rpc", "code"])
EVENTS = Counter("hotfeed_events_total", "Events received by RecordEvents", ["outcome"])
# Hot swaps of the session model (service/model_watcher.py): "failed" keeps the old model serving.
MODEL_SWAPS = Counter("hotfeed_model_swaps_total", "Published session models loaded and swapped in, by result",
                      ["result"])
for _result in ("ok", "failed"):
    MODEL_SWAPS.labels(result=_result)  # both series exist from the start, so a rate() sees the first failure
# 1 for the version serving now; the series of a replaced version is removed.
MODEL_INFO = Gauge("hotfeed_model_info", "The session model version serving requests", ["version"])
MODEL_SWAP_DELAY_SECONDS = Gauge("hotfeed_model_swap_delay_seconds",
                                 "Seconds between publishing the serving session model and its swap-in")

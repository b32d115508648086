"""The README's demo: runs the whole pipeline on this machine and prints what it did.

Stages so far: services up and healthy (versions, plugins, engine capabilities).
"""

from __future__ import annotations

import sys
import time

from recommender.engine import open_engine
from recommender.errors import HotfeedError
from recommender.services.local import local_services
from recommender.settings import load_settings


def _stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    settings = load_settings()
    _stage("services")
    for service in local_services(settings.services):
        print("  " + service.up().line())
    _stage("engine")
    engine = open_engine(settings)
    started = time.perf_counter()
    caps = engine.capabilities()
    health = engine.health()
    print(
        f"  {caps.kind} {caps.version} at {settings.engine.url}: cluster {health['status']}, "
        f"join={'yes' if caps.join else 'no'}, knn={'yes' if caps.knn else 'no'} "
        f"({(time.perf_counter() - started) * 1000:.0f} ms)"
    )
    engine.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HotfeedError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(1)

"""The HTTP gateway deployable: mobile feeds and events over the gRPC recommender, and the score
profile admin API and page. ``create_app`` (api/app.py) builds the app; ``hotfeed gateway`` serves it.

``create_app`` is imported on first use so that loading ``api.commands`` for every ``hotfeed``
invocation does not import FastAPI and gRPC.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from api.app import create_app

        return create_app
    raise AttributeError(f"module 'api' has no attribute {name!r}")

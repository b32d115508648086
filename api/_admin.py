"""Admin endpoints for score profiles: list, view, save, roll back, delete, and preview over gRPC.

Profiles are read and written through ``recommender.stores.profiles.ProfileStore``; the
recommender picks up every change within its poll interval. Previews are ordinary home
feed calls with the gRPC ``profile`` field set, so they show what serving would return.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from api._feeds import call_metadata, feed_params
from api._identity import service_token_check
from api._proto import FeedParams, feed_json, feed_request
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.errors import InvalidRequest, NotFound, ProfileRejected, Unauthenticated
from recommender.settings import Settings
from recommender.stores.profiles import DEFAULT_PROFILE, MAX_PROFILE_BYTES, ProfileStore, StoredProfile

__all__ = ["admin_router", "stored_json"]

_HISTORY_LIMIT = 50
# A package data file (pyproject.toml), next to this module.
_ADMIN_PAGE = Path(__file__).with_name("admin.html")


def stored_json(stored: StoredProfile, *, active_version: str | None = None) -> dict[str, Any]:
    """Return the JSON of one stored profile version (``active`` when it is ``active_version``)."""
    return {
        "name": stored.name,
        "version": stored.version,
        "saved_at": stored.saved_at,
        "author": stored.author,
        "description": stored.profile.description,
        "active": stored.version == active_version,
        "text": stored.text,
    }


def _require_token(settings: Settings):
    return service_token_check(settings, what="admin endpoints")


def admin_router(store: ProfileStore, stub: pb_grpc.RecommenderStub, settings: Settings) -> APIRouter:
    """Return the router of the admin API and page, guarded by the service token when one is set."""
    router = APIRouter(prefix="/admin", tags=["admin"])
    guarded = [Depends(_require_token(settings))]
    timeout_s = settings.gateway.deadline_ms / 1000

    @router.get("", response_class=HTMLResponse, include_in_schema=False)
    def admin_page() -> HTMLResponse:
        """Return the admin page (the page itself is public; its API calls carry the token)."""
        return HTMLResponse(_ADMIN_PAGE.read_text(encoding="utf-8"))

    @router.get("/profiles", dependencies=guarded)
    def list_profiles() -> dict[str, Any]:
        """Return every profile's active version (or why it cannot be served) and the store revision."""
        profiles = []
        for name in store.names():
            try:
                stored = store.active(name)
            except ProfileRejected as exc:
                profiles.append({"name": name, "error": str(exc)})
                continue
            if stored is not None:
                entry = stored_json(stored, active_version=stored.version)
                del entry["text"]
                profiles.append(entry)
        return {"profiles": profiles, "revision": store.revision()}

    @router.get("/profiles/{name}", dependencies=guarded)
    def get_profile(name: str, limit: Annotated[int, Query(ge=1, le=100)] = _HISTORY_LIMIT) -> dict[str, Any]:
        """Return the active version and the history (newest first) of one profile."""
        error = None
        try:
            active = store.active(name)
        except ProfileRejected as exc:
            active, error = None, str(exc)
        history = store.history(name, limit=limit)
        if active is None and error is None:
            raise NotFound(f"score profile {name!r} does not exist; known profiles: {store.names()}")
        active_version = active.version if active else None
        return {
            "name": name,
            "active": stored_json(active, active_version=active_version) if active else None,
            "error": error,
            "history": [stored_json(s, active_version=active_version) for s in history],
        }

    @router.put("/profiles/{name}", dependencies=guarded)
    async def save_profile(
        name: str,
        request: Request,
        x_hotfeed_author: Annotated[str, Header(max_length=200)] = "",
    ) -> dict[str, Any]:
        """Return the saved version, now live; 422 with every problem when the YAML is invalid."""
        body = await request.body()
        if len(body) > MAX_PROFILE_BYTES:
            raise ProfileRejected(f"profile {name!r} is {len(body)} bytes; at most {MAX_PROFILE_BYTES} are accepted")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"the body of PUT /admin/profiles/{name} is not UTF-8; send the YAML as UTF-8 text") from None
        if not text.strip():
            raise ProfileRejected(f"the body of PUT /admin/profiles/{name} is empty; send the profile YAML")
        stored = await run_in_threadpool(store.save, name, text, author=x_hotfeed_author or "admin")
        return stored_json(stored, active_version=stored.version)

    @router.post("/profiles/{name}/activate/{version}", dependencies=guarded)
    def activate_profile(name: str, version: str) -> dict[str, Any]:
        """Return the version made active (a rollback, or a roll forward)."""
        stored = store.activate(name, version)
        return stored_json(stored, active_version=stored.version)

    @router.delete("/profiles/{name}", dependencies=guarded)
    def delete_profile(name: str) -> dict[str, Any]:
        """Return ``{"deleted": name}``; 404 for an unknown profile, 400 for ``default``."""
        if not store.delete(name):
            raise NotFound(f"score profile {name!r} does not exist; known profiles: {store.names()}")
        return {"deleted": name}

    @router.get("/profiles/{name}/preview", dependencies=guarded)
    def preview_profile(
        name: str, request: Request, params: Annotated[FeedParams, Depends(feed_params)]
    ) -> dict[str, Any]:
        """Return the home feed under ``name`` and under ``default`` side by side, with explanations.

        Both are live recommender calls; the recommender knows a profile within its poll
        interval of the save, so a preview right after a save may answer 404 for a moment.
        """
        if store.active(name) is None:
            raise NotFound(f"score profile {name!r} does not exist; save it first (PUT /admin/profiles/{name})")
        metadata = call_metadata(request, settings)
        pages = {}
        for label, profile in (("profile", name), ("default", DEFAULT_PROFILE)):
            # Each side starts at page one: a cursor belongs to one profile version.
            side = replace(params, profile=profile, explain=True, cursor="")
            response = stub.HomeFeed(feed_request(pb.HomeFeedRequest, side), timeout=timeout_s, metadata=metadata)
            pages[label] = feed_json(response, explain=True)
        ours = [i["item_id"] for i in pages["profile"]["items"]]
        theirs = [i["item_id"] for i in pages["default"]["items"]]
        return {
            "name": name,
            "profile": pages["profile"],
            "default": pages["default"],
            "overlap": len(set(ours) & set(theirs)),
        }

    return router

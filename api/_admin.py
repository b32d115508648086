"""Admin endpoints for score profiles: drafts, validation, publish and rollback with a
comment, diffs, the audit trail, and previews over gRPC.

Profiles are read and written through ``recommender.stores.profiles.ProfileStore``; a
published version reaches serving within the recommender's poll interval. Every endpoint
needs an admin token (``api._identity.admin_identity``), whose admin name is recorded
as the author and in the audit trail. Previews are ordinary home feed calls with the gRPC
``profile`` field set, so they show what serving would return.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api._feeds import call_metadata
from api._identity import admin_identity
from api._proto import FeedParams, feed_json, feed_request
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.errors import InvalidRequest, NotFound, ProfileRejected
from recommender.events import MAX_ID_LENGTH
from recommender.settings import Settings
from recommender.stores.audit import AuditEntry
from recommender.stores.profiles import (
    DEFAULT_PROFILE,
    MAX_COMMENT_CHARS,
    MAX_PROFILE_BYTES,
    ProfileStore,
    PublishRecord,
    StoredProfile,
)

__all__ = ["admin_router", "preview_params", "problems_json", "profile_body", "stored_json"]

# The admin making the request, from their token (api._identity).
Admin = Annotated[str, Depends(admin_identity)]

_HISTORY_LIMIT = 50
# A package data file (pyproject.toml), next to this module.
_ADMIN_PAGE = Path(__file__).with_name("admin.html")


class CommentBody(BaseModel):
    """The body of a publish or rollback: why, for the audit trail."""

    comment: str = Field(max_length=MAX_COMMENT_CHARS)


def _status(version: str, active_version: str | None, published: dict[str, PublishRecord]) -> str:
    if version == active_version:
        return "live"
    return "published" if version in published else "draft"


def stored_json(stored: StoredProfile, *, active_version: str | None = None,
                published: dict[str, PublishRecord] | None = None) -> dict[str, Any]:
    """Return the JSON of one stored profile version: ``status`` is ``live`` (the active
    version), ``published`` (live before) or ``draft`` (never live)."""
    record = (published or {}).get(stored.version)
    return {
        "name": stored.name,
        "version": stored.version,
        "status": _status(stored.version, active_version, published or {}),
        "active": stored.version == active_version,
        "saved_at": stored.saved_at,
        "author": stored.author,
        "comment": stored.comment,
        "published": None if record is None else {"at": record.at, "by": record.by, "comment": record.comment},
        "description": stored.profile.description,
        "text": stored.text,
    }


def problems_json(problems: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Return ``valid`` and one ``{loc, message}`` per ``(location, message)`` problem."""
    return {"valid": not problems, "problems": [{"loc": loc, "message": msg} for loc, msg in problems]}


def _audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at, "actor": entry.actor, "action": entry.action, "target": entry.target,
            "name": entry.name, "version": entry.version, "comment": entry.comment}


def preview_params(
    request: Request,
    user_id: Annotated[str, Query(max_length=MAX_ID_LENGTH, description="the user to preview for")] = "",
    session_id: Annotated[str, Query(max_length=MAX_ID_LENGTH)] = "",
    region: Annotated[str, Query(max_length=64)] = "",
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> FeedParams:
    """Return the feed parameters of a preview (FastAPI dependency). Unlike the apps' feeds, the
    user comes from the query: the admin is not the viewer, they preview for any user."""
    return FeedParams(user_id=user_id or None, session_id=session_id, region=region,
                      page_size=page_size or request.app.state.settings.gateway.default_page_size)


async def profile_body(request: Request, name: str) -> str:
    """Return the request body as profile text (YAML, or JSON); raises ProfileRejected or InvalidRequest saying what is wrong."""
    body = await request.body()
    where = f"the body of {request.method} {request.url.path}"
    if len(body) > MAX_PROFILE_BYTES:
        raise ProfileRejected(f"profile {name!r} is {len(body)} bytes; at most {MAX_PROFILE_BYTES} are accepted")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{where} is not UTF-8; send the profile as UTF-8 text") from None
    if not text.strip():
        raise ProfileRejected(f"{where} is empty; send the profile")
    return text


def admin_router(store: ProfileStore, stub: pb_grpc.RecommenderStub, settings: Settings) -> APIRouter:
    """Return the router of the admin API and page; every endpoint but the page needs an admin token."""
    router = APIRouter(prefix="/admin", tags=["admin"])
    guarded = [Depends(admin_identity)]
    timeout_s = settings.gateway.deadline_ms / 1000

    def not_found(name: str) -> NotFound:
        return NotFound(f"score profile {name!r} does not exist; known profiles: {store.all_names()}")

    @router.get("", response_class=HTMLResponse, include_in_schema=False)
    def admin_page() -> HTMLResponse:
        """Return the admin page (the page itself is public; its API calls carry the token)."""
        return HTMLResponse(_ADMIN_PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @router.get("/me")
    def whoami(who: Admin) -> dict[str, str]:
        """Return the admin name of the token (the console checks a token with it)."""
        return {"name": who}

    @router.get("/profiles", dependencies=guarded)
    def list_profiles() -> dict[str, Any]:
        """Return every profile (live or draft only) with its live version, or why that cannot be served."""
        profiles = []
        for name in store.all_names():
            try:
                stored = store.active(name)
            except ProfileRejected as exc:
                profiles.append({"name": name, "version": None, "error": str(exc)})
                continue
            profiles.append({
                "name": name,
                "version": stored.version if stored else None,
                "description": stored.profile.description if stored else "",
                "error": None,
            })
        return {"profiles": profiles, "revision": store.revision()}

    @router.get("/profiles/{name}", dependencies=guarded)
    def get_profile(name: str, limit: Annotated[int, Query(ge=1, le=100)] = _HISTORY_LIMIT) -> dict[str, Any]:
        """Return the live version and the history (newest first, drafts included) of one profile."""
        error = None
        try:
            active = store.active(name)
        except ProfileRejected as exc:
            active, error = None, str(exc)
        history = store.history(name, limit=limit)
        if active is None and error is None and not history:
            raise not_found(name)
        active_version = active.version if active else None
        published = store.published(name)
        return {
            "name": name,
            "active": stored_json(active, active_version=active_version, published=published) if active else None,
            "error": error,
            "history": [stored_json(s, active_version=active_version, published=published) for s in history],
        }

    @router.post("/profiles/{name}/validate", dependencies=guarded)
    async def validate_profile(name: str, request: Request) -> dict[str, Any]:
        """Return ``valid`` and one ``{loc, message}`` per problem of the YAML body: a dry run, nothing is stored."""
        text = await profile_body(request, name)
        return problems_json(await run_in_threadpool(store.validate, name, text))

    @router.put("/profiles/{name}")
    async def save_draft(
        name: str,
        request: Request,
        who: Admin,
        comment: Annotated[str, Query(max_length=MAX_COMMENT_CHARS)] = "",
    ) -> dict[str, Any]:
        """Return the saved draft (not live: publish it to serve it); 422 with every problem when the YAML is invalid."""
        text = await profile_body(request, name)
        stored = await run_in_threadpool(store.save_draft, name, text, author=who, comment=comment)
        active = store.active(name)
        return stored_json(stored, active_version=active.version if active else None, published=store.published(name))

    @router.post("/profiles/{name}/versions/{version}/publish")
    def publish_version(name: str, version: str, body: CommentBody, who: Admin) -> dict[str, Any]:
        """Return the version made live; the comment (why) is required and goes into the audit trail."""
        stored = store.publish(name, version, actor=who, comment=body.comment)
        return stored_json(stored, active_version=stored.version, published=store.published(name))

    @router.post("/profiles/{name}/versions/{version}/rollback")
    def rollback_version(name: str, version: str, body: CommentBody, who: Admin) -> dict[str, Any]:
        """Return the earlier live version made live again; the comment is required."""
        stored = store.rollback(name, version, actor=who, comment=body.comment)
        return stored_json(stored, active_version=stored.version, published=store.published(name))

    @router.get("/profiles/{name}/diff", dependencies=guarded)
    def diff_versions(
        name: str,
        from_version: Annotated[str, Query(alias="from")],
        to_version: Annotated[str, Query(alias="to")],
    ) -> dict[str, Any]:
        """Return the unified diff of the YAML of two stored versions (``diff`` is "" when they are equal)."""
        return {"name": name, "from": from_version, "to": to_version,
                "diff": store.diff(name, from_version, to_version)}

    @router.delete("/profiles/{name}")
    def delete_profile(
        name: str, who: Admin, comment: Annotated[str, Query(max_length=MAX_COMMENT_CHARS)] = ""
    ) -> dict[str, Any]:
        """Return ``{"deleted": name}``; 404 for an unknown profile, 400 for ``default``."""
        if not store.delete(name, actor=who, comment=comment):
            raise not_found(name)
        return {"deleted": name}

    @router.get("/audit", dependencies=guarded)
    def audit_trail(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        name: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """Return the audit trail, newest first (only entries about profile ``name`` when given); read-only."""
        return {"entries": [_audit_json(e) for e in store.audit.entries(limit=limit, name=name)]}

    @router.get("/profiles/{name}/preview", dependencies=guarded)
    def preview_profile(
        name: str, request: Request, params: Annotated[FeedParams, Depends(preview_params)]
    ) -> dict[str, Any]:
        """Return the home feed under ``name`` and under ``default`` side by side, with explanations.

        Both are live recommender calls; the recommender knows a profile within its poll
        interval of the save, so a preview right after a save may answer 404 for a moment.
        """
        if store.active(name) is None:
            raise NotFound(f"score profile {name!r} has no live version; publish one first")
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

"""Admin endpoints for score profiles: drafts, validation, publish and rollback with a
comment, diffs, the audit trail, and side-by-side previews of a version against the live one.

Profiles are read and written through ``recommender.stores.profiles.ProfileStore``; a
published version reaches serving within the recommender's poll interval. Every endpoint
needs an admin token (``api._identity.admin_identity``), whose admin name is recorded
as the author and in the audit trail. Previews are home feed calls with the gRPC ``preview``
field set (``api._preview``): the recommender ranks exactly the stored version asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api._feeds import call_metadata
from api._identity import admin_identity
from api._preview import MAX_USERS, SAMPLE_USERS, preview_call_timeout_s, preview_user
from api._proto import FeedParams
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.errors import InvalidRequest, NotFound, ProfileRejected
from recommender.events import MAX_ID_LENGTH
from recommender.query import MAX_PAGE_SIZE
from recommender.settings import Settings
from recommender.stores.audit import AuditEntry
from recommender.stores.recent_users import RecentUsers
from recommender.stores.profiles import (
    MAX_COMMENT_CHARS,
    MAX_PROFILE_BYTES,
    ProfileStore,
    PublishRecord,
    StoredProfile,
)

__all__ = ["admin_router", "problems_json", "profile_body", "stored_json"]

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


def _preview_users(given: list[str]) -> list[str]:
    """Return the user ids an admin named for a preview, deduplicated in order; raises
    InvalidRequest for too many or a malformed one."""
    users = list(dict.fromkeys(given))
    if len(users) > MAX_USERS:
        raise InvalidRequest(f"{len(users)} user ids; preview at most {MAX_USERS} at once")
    for user in users:
        if not user.strip() or len(user) > MAX_ID_LENGTH:
            raise InvalidRequest(f"user_id {user[:40]!r}{'...' if len(user) > 40 else ''} must be 1..{MAX_ID_LENGTH} "
                                 f"characters")
    return users


def _newest_draft(store: ProfileStore, name: str, live_version: str) -> str:
    """Return the newest never-published version of ``name``; NotFound when there is none."""
    published = store.published(name)
    for stored in store.history(name, limit=_HISTORY_LIMIT):
        if stored.version != live_version and stored.version not in published:
            return stored.version
    raise NotFound(f"score profile {name!r} has no draft to preview; save one, or name a stored version "
                   f"with ?version=")


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
    recent = RecentUsers(settings.redis, client=store.client)
    preview_deadline_ms = settings.gateway.preview_deadline_ms
    preview_timeout_s = preview_call_timeout_s(preview_deadline_ms=preview_deadline_ms,
                                               call_deadline_ms=settings.gateway.deadline_ms)

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
        name: str,
        request: Request,
        version: Annotated[str, Query(max_length=64, description="the stored version to compare with the live "
                                                                    "one; absent: the newest draft")] = "",
        user_id: Annotated[list[str], Query(description=f"repeat for several users (at most {MAX_USERS}); absent: "
                                                        f"a random sample of recently active users")] = [],
        sample: Annotated[int, Query(ge=1, le=MAX_USERS, description="users sampled when none is named")] = (
            SAMPLE_USERS),
        region: Annotated[str, Query(max_length=64)] = "",
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 10,
    ) -> dict[str, Any]:
        """Return, per user, the home feed under the live version of ``name`` and under ``version``
        side by side (``api._preview.preview_user``): items with title, price, category and age,
        rank changes, component scores, what served each side and, when both were ranked by the
        engine, the overlap. ``users_from`` says whether the users were named or sampled.
        """
        live = store.active(name)
        if live is None:
            if not store.history(name, limit=1):
                raise not_found(name)
            raise NotFound(f"score profile {name!r} has no live version to compare with; publish one first")
        other = version or _newest_draft(store, name, live.version)
        if store.get_version(name, other) is None:
            raise NotFound(f"score profile {name!r} has no stored version {other!r}; the profile's history lists "
                           f"its versions")
        users = _preview_users(user_id)
        if users:
            unknown = recent.unknown(users)
            if unknown:
                raise NotFound(f"user id(s) {[u[:40] for u in unknown[:5]]} unknown: no session history, segments "
                               f"or declared preferences; name recently active users, or leave user_id out for a "
                               f"sample of them")
            users_from = "given"
        else:
            users = recent.sample(sample)
            if not users:
                raise NotFound("no recently active users to sample (no signed-in events in the event stream); "
                               "name users with ?user_id=")
            users_from = "sample of recently active users"
        metadata = call_metadata(request, settings)
        request.state.call_timeout_ms = round(preview_timeout_s * 1000)  # what a 504 quotes (api/_errors.py)
        previews = [
            preview_user(stub, FeedParams(user_id=user, region=region, page_size=page_size, profile=name),
                         live_version=live.version, draft_version=other, deadline_ms=preview_deadline_ms,
                         timeout_s=preview_timeout_s, metadata=metadata)
            for user in users
        ]
        return {"name": name, "live_version": live.version, "version": other, "users_from": users_from,
                "page_size": page_size, "engine_deadline_ms": preview_deadline_ms, "users": previews}

    return router

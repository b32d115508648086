"""Admin endpoints behind the console's two views of a profile, the form and the YAML: the
profile JSON Schema the form is generated from, and the conversions that keep both in sync.

The store keeps YAML text. The form edits the profile as JSON data: ``parse`` turns the
YAML view into that data, ``render`` turns the form's data back into YAML the loader
accepts. Both answer with the dry-run validation of the result (``{loc, message}`` per
problem, as ``POST /admin/profiles/{name}/validate``), so the form can show each message
next to its field. Rendering writes every knob out and drops YAML comments.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from api._admin import problems_json, profile_body
from api._identity import admin_identity
from recommender.errors import ProfileRejected
from recommender.profiles import (
    parse_profile,
    profile_data,
    profile_json_schema,
    read_profile_yaml,
    render_profile_yaml,
)
from recommender.stores.profiles import ProfileStore

__all__ = ["profile_views_router", "yaml_as_data", "data_as_yaml"]


def yaml_as_data(store: ProfileStore, name: str, text: str) -> dict[str, Any]:
    """Return ``profile`` (the data of the YAML ``text``), ``valid`` and ``problems`` as profile ``name``.

    A valid profile comes back with every knob spelled out (defaults filled in), an invalid
    one as written, and YAML that does not parse as ``profile: None``.
    """
    checked = problems_json(store.validate(name, text))
    if checked["valid"]:
        data = profile_data(parse_profile(text, fields=store.fields))
    else:
        try:
            data = read_profile_yaml(text)
        except ProfileRejected:
            data = None
    return {"profile": data, **checked}


def data_as_yaml(store: ProfileStore, name: str, data: Any) -> dict[str, Any]:
    """Return ``yaml`` (the profile ``data`` written as YAML, valid or not), ``valid`` and
    ``problems`` of that YAML as profile ``name``."""
    text = render_profile_yaml(data)
    return {"yaml": text, **problems_json(store.validate(name, text))}


def profile_views_router(store: ProfileStore) -> APIRouter:
    """Return the router of the schema, parse and render endpoints; each needs an admin token."""
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_identity)])

    @router.get("/profile-schema")
    def profile_schema() -> dict[str, Any]:
        """Return the JSON Schema of a score profile, generated from its pydantic models (bounds included)."""
        return profile_json_schema()

    @router.post("/profiles/{name}/parse")
    async def parse_yaml(name: str, request: Request) -> dict[str, Any]:
        """Return the YAML body as profile JSON data with its problems (a dry run: nothing is stored)."""
        text = await profile_body(request, name)
        return await run_in_threadpool(yaml_as_data, store, name, text)

    @router.post("/profiles/{name}/render")
    async def render_yaml(name: str, request: Request) -> dict[str, Any]:
        """Return the JSON body (profile data) as YAML with its problems (a dry run: nothing is stored);
        422 when the body does not parse."""
        # JSON is YAML: the YAML reader's size, depth and syntax checks apply (422 when they fail).
        data = read_profile_yaml(await profile_body(request, name))
        return await run_in_threadpool(data_as_yaml, store, name, data)

    return router

"""The HTTP gateway app: mobile feeds and events forwarded to the gRPC recommender, and the
score profile admin API + page.

The gateway holds no recommendation logic. Feeds and events go to the recommender over the
proto contract only; profiles go to Redis only through ``recommender.stores.profiles``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from fastapi import FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from api._admin import admin_router
from api._experiments import experiments_router
from api._errors import install_error_handlers
from api._feeds import feeds_router
from api._identity import TokenVerifier
from api._profile_views import profile_views_router
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.errors import ConfigError
from recommender.profiles import read_item_fields
from recommender.settings import Settings
from recommender.stores.experiments import ExperimentStore
from recommender.stores.profiles import ProfileStore

__all__ = ["create_app"]

_log = logging.getLogger("hotfeed.gateway")
# Health checks must answer fast even when the recommender hangs.
_HEALTH_TIMEOUT_S = 0.5
_REQUEST_ID_HEADER = "X-Request-ID"


def _recommender_status(channel: grpc.Channel) -> str:
    """Return the recommender's gRPC health status name, or why it could not be asked."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=_HEALTH_TIMEOUT_S)
    except grpc.RpcError as exc:
        return f"unavailable: {exc.code().name}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _refuse_open_doors(settings: Settings) -> None:
    """Raise ConfigError, in one line naming each missing setting, when outside dev mode the
    gateway would let anyone write listings or edit score profiles."""
    if settings.server.dev_mode:
        return
    missing = []
    if not settings.server.service_token:
        missing.append("HOTFEED_SERVER_SERVICE_TOKEN (listing writes and the recommender need it)")
    if not settings.gateway.admin_tokens:
        missing.append('HOTFEED_GATEWAY_ADMIN_TOKENS ("name:token,..."; the /admin console needs it)')
    if missing:
        raise ConfigError(f"not set: {'; '.join(missing)}; without them anyone reaching the gateway could change "
                          f"listings or score profiles. Set them, or HOTFEED_DEV_MODE=1 on a development machine")


def create_app(settings: Settings, *, channel: grpc.Channel | None = None) -> FastAPI:
    """Return the gateway app for ``settings``, calling the recommender at ``settings.gateway.grpc_target``.

    ``channel`` replaces the channel the app would open (it is then not closed by the app).
    Nothing connects until the first request, so the app starts even while the recommender
    or Redis is down; those requests get 503.
    """
    owned = channel is None
    channel = channel or grpc.insecure_channel(settings.gateway.grpc_target)
    stub = pb_grpc.RecommenderStub(channel)
    store = ProfileStore(settings.redis, fields=read_item_fields(settings.paths.mappings_dir))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            channel.close()
        store.client.close()

    # Offline: /docs and /redoc load their assets from the gateway itself, never from a CDN.
    app = FastAPIOffline(
        title="hotfeed gateway",
        summary="Home feed, product feed, similar items and events for apps; score profile admin.",
        lifespan=lifespan,
        # Swagger UI's default validator badge is an image from an outside host.
        swagger_ui_parameters={"validatorUrl": None},
    )
    _refuse_open_doors(settings)
    app.state.settings = settings
    app.state.admin_identities = settings.gateway.admin_identities()
    app.state.token_verifier = TokenVerifier.from_settings(settings.gateway)
    if app.state.token_verifier is None:
        _log.warning("no HOTFEED_GATEWAY_JWT_SECRET or HOTFEED_GATEWAY_JWT_PUBLIC_KEY_FILE: every viewer is logged "
                     "out and user tokens are refused")
    app.state.store = store
    install_error_handlers(app)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # One id per request, passed on to the recommender so its logs join with ours.
        given = request.headers.get(_REQUEST_ID_HEADER, "")
        # It travels on as gRPC metadata, which takes printable ASCII only; anything else is replaced.
        ok = 0 < len(given) <= 128 and given.isascii() and given.isprintable()
        request.state.request_id = given if ok else uuid.uuid4().hex
        response = await call_next(request)
        response.headers[_REQUEST_ID_HEADER] = request.state.request_id
        return response

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """Return ``status: ok`` while the gateway runs, with the recommender's health for information."""
        return {"status": "ok", "recommender": _recommender_status(channel)}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Return 200 when the recommender answers SERVING, else 503 with its status."""
        status = _recommender_status(channel)
        if status != "SERVING":
            detail = (
                f"the recommender at {settings.gateway.grpc_target!r} is not serving ({status}); "
                f"start it with `hotfeed serve`"
            )
            return JSONResponse({"detail": detail}, status_code=503)
        return JSONResponse({"status": "ok", "recommender": status})

    app.include_router(feeds_router(stub, settings))
    app.include_router(admin_router(store, stub, settings))
    app.include_router(profile_views_router(store))
    app.include_router(experiments_router(ExperimentStore(settings.redis, profiles=store)))
    return app

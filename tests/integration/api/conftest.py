"""Gateway fixtures: the FastAPI app in a TestClient against real Redis, and against the real
gRPC recommender of the ``service_stack`` fixture (tests/integration/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from recommender.settings import RedisSettings, Settings

# Nothing listens on port 1: admin-only tests must not depend on a recommender.
NO_RECOMMENDER = "127.0.0.1:1"
# Signs the viewer tokens of the feed tests (the login service's key, in production).
JWT_SECRET = "integration-test-signing-secret-0123456789"


def token_for(user_id: str, *, exp_in_s: float = 300) -> dict[str, str]:
    """Return the Authorization header of a signed-in ``user_id``."""
    import time

    import jwt

    token = jwt.encode({"sub": user_id, "aud": "hotfeed", "exp": int(time.time() + exp_in_s)}, JWT_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def wait_for(check, what: str, *, within_s: float = 30.0):
    """Return check()'s first truthy value, failing the test when none came within ``within_s``
    (the recommender polls profiles and flushes experiment counts in the background)."""
    import time

    started = time.monotonic()
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() - started > within_s:
            pytest.fail(f"{what} did not happen within {within_s} s")
        time.sleep(0.1)


# The console's admin in these tests: her name is what the audit trail must record.
ADMIN_NAME = "pm-anna"
ADMIN_TOKEN = "anna-admin-token-0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def gateway_settings(base: Settings, *, redis: RedisSettings, grpc_target: str, token: str = "",
                     admin_tokens: str = f"{ADMIN_NAME}:{ADMIN_TOKEN}") -> Settings:
    """Return ``base`` with the gateway pointed at ``grpc_target``, profiles under ``redis`` and
    ``admin_tokens`` as the console's admins."""
    return base.model_copy(
        update={
            "redis": redis,
            "gateway": base.gateway.model_copy(
                update={"grpc_target": grpc_target, "deadline_ms": 10_000, "jwt_secret": JWT_SECRET,
                        "admin_tokens": admin_tokens}
            ),
            "server": base.server.model_copy(update={"service_token": token}),
        }
    )


@pytest.fixture
def make_gateway_settings(base_settings: Settings):
    """Return ``gateway_settings`` bound to the session's base settings (no recommender by default)."""

    def make(*, redis: RedisSettings, grpc_target: str = NO_RECOMMENDER, token: str = "", **gateway: str) -> Settings:
        return gateway_settings(base_settings, redis=redis, grpc_target=grpc_target, token=token, **gateway)

    return make


@pytest.fixture
def admin_client(base_settings: Settings, redis_settings: RedisSettings) -> Iterator[TestClient]:
    """A gateway whose profiles live under the test's own Redis prefix (no recommender behind
    it), every request carrying the admin token of ``ADMIN_NAME``."""
    app = create_app(gateway_settings(base_settings, redis=redis_settings, grpc_target=NO_RECOMMENDER))
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        yield client


@pytest.fixture(scope="module")
def feed_client(service_stack, grpc_server: str) -> Iterator[TestClient]:
    """A gateway in front of the real recommender, sharing its Redis (profiles, sessions)."""
    settings = gateway_settings(service_stack.settings, redis=service_stack.settings.redis, grpc_target=grpc_server)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        if ready.status_code != 200:
            pytest.fail(f"the recommender at {grpc_server} is not serving: {ready.json()}")
        yield client

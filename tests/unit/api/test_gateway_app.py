"""Gateway behaviour answered before any network call: the error table, parameter checks,
the admin token, exported names and the `hotfeed gateway` command. No Redis, no recommender."""

from __future__ import annotations

import argparse
import json
import importlib.util
import re
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

import api._admin
import api._errors
import api._feeds
import api._preview
import api._profile_views
import api._proto
import api.app
import api.commands
from api._errors import http_status_of
from recommender.errors import (
    ConfigError,
    EngineUnavailable,
    InvalidRequest,
    NotFound,
    ProfileRejected,
    StoreUnavailable,
    Unauthenticated,
)
from recommender.settings import Settings


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 502),
    ],
)
def test_grpc_codes_map_to_http(code: grpc.StatusCode, status: int) -> None:
    assert http_status_of(code) == status


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ProfileRejected("bad"), 422),
        (InvalidRequest("bad"), 400),
        (Unauthenticated("who"), 401),
        (NotFound("gone"), 404),
        (StoreUnavailable("down"), 503),
        (EngineUnavailable("down"), 503),
        (ConfigError("broken"), 500),
    ],
)
def test_our_errors_map_to_http(error: Exception, status: int) -> None:
    assert http_status_of(error) == status


ADMIN_TOKEN = "unit-admin-token-0123456789"


class _DeadlineExceeded(grpc.RpcError):
    """What grpc raises when a call runs past its deadline (the two methods the handler reads)."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "Deadline Exceeded"


def test_a_timeout_answer_quotes_the_deadline_of_the_call_that_ran_out() -> None:
    settings = _settings(admin_tokens=f"anna:{ADMIN_TOKEN}")
    app = api.app.create_app(settings)
    request = Request({"type": "http", "app": app, "method": "GET", "path": "/v1/feed/home", "headers": [],
                       "query_string": b""})
    answer = api._errors._grpc_error(request, _DeadlineExceeded())
    assert answer.status_code == 504
    assert json.loads(answer.body)["detail"] == (
        f"the recommender did not answer within {settings.gateway.deadline_ms} ms; retry")
    # A preview sets its own, longer call deadline; its 504 quotes that one.
    request.state.call_timeout_ms = 6500
    assert json.loads(api._errors._grpc_error(request, _DeadlineExceeded()).body)["detail"] == (
        "the recommender did not answer within 6500 ms; retry")


def _settings(token: str = "", admin_tokens: str = "") -> Settings:
    base = Settings()
    # Nothing listens on port 1; every test here is answered before a connection is tried.
    return base.model_copy(
        update={
            "redis": base.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"}),
            "gateway": base.gateway.model_copy(update={"grpc_target": "127.0.0.1:1", "admin_tokens": admin_tokens}),
            "server": base.server.model_copy(update={"service_token": token}),
        }
    )


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api.app.create_app(_settings(token="t0ken", admin_tokens=f"anna:{ADMIN_TOKEN}"))) as c:
        yield c


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"page_size": "0"}, "query parameter 'page_size' '0': Input should be greater than or equal to 1"),
        ({"page_size": "many"}, "query parameter 'page_size' 'many'"),
        ({"explain": "perhaps"}, "query parameter 'explain' 'perhaps'"),
        ({"session_id": "s" * 200}, "query parameter 'session_id'"),
    ],
)
def test_bad_feed_parameters_are_422_naming_the_parameter(client: TestClient, query: dict, expected: str) -> None:
    response = client.get("/v1/feed/home", params=query)
    assert response.status_code == 422
    assert expected in response.json()["detail"]


def test_product_feed_without_item_id_is_422(client: TestClient) -> None:
    response = client.get("/v1/feed/product")
    assert response.status_code == 422
    assert response.json() == {"detail": "query parameter 'item_id' is required; add it"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "is not JSON"),
        (b'{"type": "view"}', "must be a JSON list of events, got a dict"),
        (b"\xff\xfe", "is not JSON"),
    ],
)
def test_events_body_must_be_a_json_list(client: TestClient, body: bytes, expected: str) -> None:
    response = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert expected in response.json()["detail"]


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_events_body_is_refused_before_parsing(client: TestClient, chunked: bool) -> None:
    body = b"[" + b" " * api._feeds.MAX_EVENTS_BODY_BYTES + b"]"
    # Chunked: no Content-Length to check up front, so the limit applies while reading.
    content = iter([body[:1000], body[1000:]]) if chunked else body
    response = client.post("/v1/events", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert f"at most {api._feeds.MAX_EVENTS_BODY_BYTES} bytes" in response.json()["detail"]


def test_events_all_rejected_locally_need_no_recommender(client: TestClient) -> None:
    response = client.post("/v1/events", json=[{"type": "view"}])
    assert response.status_code == 200
    assert response.json()["accepted"] == 0 and response.json()["rejections"][0]["index"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/profiles"),
        ("GET", "/admin/profiles/default"),
        ("PUT", "/admin/profiles/default"),
        ("POST", "/admin/profiles/default/validate"),
        ("POST", "/admin/profiles/default/versions/0123456789abcdef/publish"),
        ("POST", "/admin/profiles/default/versions/0123456789abcdef/rollback"),
        ("GET", "/admin/profiles/default/diff?from=0123456789abcdef&to=0123456789abcdef"),
        ("DELETE", "/admin/profiles/summer"),
        ("GET", "/admin/profiles/default/preview"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/me"),
    ],
)
def test_admin_api_needs_an_admin_token(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert "no admin's token" in response.json()["detail"]
    assert client.request(method, path).status_code == 401
    # The service token is the machines' credential, not a person's: it opens no admin endpoint.
    assert client.request(method, path, headers={"Authorization": "Bearer t0ken"}).status_code == 401


def test_admin_me_names_the_admin_without_touching_redis(client: TestClient) -> None:
    response = client.get("/admin/me", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.json() == {"name": "anna"}


def test_request_id_is_made_when_absent(client: TestClient) -> None:
    response = client.get("/v1/feed/home", params={"page_size": "0"})
    assert len(response.headers["X-Request-ID"]) == 32


def test_gateway_command_parses_its_overrides() -> None:
    # The parser alone: build_parser() would load every deployable's commands (torch included).
    parser = argparse.ArgumentParser(prog="hotfeed")
    api.commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gateway", "--port", "9999", "--grpc-target", "10.0.0.1:50051",
                              "--preview-deadline-ms", "3000"])
    assert (args.port, args.grpc_target, args.host, args.preview_deadline_ms) == (9999, "10.0.0.1:50051", None, 3000)
    assert args.handler.__module__ == "api.commands"


def test_gateway_entry_point_is_declared() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="hotfeed.commands")}
    assert names["api"] == "api.commands:register"


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (api.app, ["create_app"]),
        (api.commands, ["register"]),
        (api._admin, ["admin_router", "problems_json", "profile_body", "stored_json"]),
        (api._profile_views, ["profile_views_router", "yaml_as_data", "data_as_yaml"]),
        (api._preview, ["SAMPLE_USERS", "MAX_USERS", "preview_call_timeout_s", "side_json", "compare_sides",
                        "preview_user"]),
        (api._errors, ["HTTP_STATUS_BY_GRPC_CODE", "HTTP_STATUS_BY_ERROR", "http_status_of", "install_error_handlers"]),
        (api._feeds, ["MAX_EVENTS_BODY_BYTES", "feed_params", "call_metadata", "feeds_router"]),
        (api._proto, ["FeedParams", "feed_request", "feed_json", "preferences_json", "preferences_message",
                      "events_request", "record_events_json"]),
    ],
)
def test_exported_names_are_exact(module, names: list[str]) -> None:
    assert sorted(module.__all__) == sorted(names)
    for name in names:
        assert getattr(module, name) is not None


def test_package_exports_create_app_lazily() -> None:
    # Loaded from its file: under pytest's prepend import mode, tests/integration/api/ on
    # sys.path turns a plain `import api` into a namespace package without this __init__.
    path = Path(api.app.__file__).with_name("__init__.py")
    spec = importlib.util.spec_from_file_location("api_package_under_test", path)
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    assert package.__all__ == ["create_app"]
    assert package.create_app is api.app.create_app


def test_a_non_ascii_request_id_is_replaced_not_forwarded(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "réq-ü".encode("latin-1")})
    assert response.status_code == 200
    assert len(response.headers["X-Request-ID"]) == 32 and response.headers["X-Request-ID"].isascii()


def _production(settings: Settings) -> Settings:
    return settings.model_copy(update={"server": settings.server.model_copy(update={"dev_mode": False})})


@pytest.mark.parametrize(
    ("service_token", "admin_tokens", "named", "not_named"),
    [
        ("", "", ["HOTFEED_SERVER_SERVICE_TOKEN", "HOTFEED_GATEWAY_ADMIN_TOKENS"], []),
        ("t", "", ["HOTFEED_GATEWAY_ADMIN_TOKENS"], ["HOTFEED_SERVER_SERVICE_TOKEN"]),
        ("", f"anna:{ADMIN_TOKEN}", ["HOTFEED_SERVER_SERVICE_TOKEN"], ["HOTFEED_GATEWAY_ADMIN_TOKENS"]),
    ],
)
def test_the_gateway_refuses_to_start_with_an_open_door_outside_dev_mode(
    service_token: str, admin_tokens: str, named: list[str], not_named: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        api.app.create_app(_production(_settings(token=service_token, admin_tokens=admin_tokens)))
    message = str(caught.value)
    assert "\n" not in message and "HOTFEED_DEV_MODE=1" in message
    assert all(n in message for n in named) and not any(n in message for n in not_named)


def test_the_gateway_starts_with_both_tokens_or_in_dev_mode() -> None:
    assert api.app.create_app(_production(_settings(token="t", admin_tokens=f"anna:{ADMIN_TOKEN}"))) is not None
    dev = _settings()
    assert dev.server.dev_mode  # tests/conftest.py sets HOTFEED_DEV_MODE=1
    assert api.app.create_app(dev) is not None


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_gateway(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    # Offline means no outside host anywhere in the page (a CDN, fonts, the validator badge).
    assert not re.search(r"https?://|//cdn|jsdelivr|unpkg|googleapis", html), html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"""(?:url: |spec-url=)['"]([^'"]+)['"]""", html)
    assert any(a.endswith(".js") for a in assets) and "/openapi.json" in assets
    for asset in assets:
        assert asset.startswith("/"), asset
        fetched = client.get(asset)
        assert fetched.status_code == 200 and len(fetched.content) > 0, asset
    if page == "/docs":
        assert '"validatorUrl": null' in html

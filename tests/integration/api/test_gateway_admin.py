"""The admin API for score profiles, through the gateway app, on real Redis."""

from __future__ import annotations

from types import MappingProxyType

from fastapi.testclient import TestClient

from api.app import create_app
from recommender.profiles import ItemFields, read_item_fields
from recommender.settings import RedisSettings
from recommender.stores.profiles import ProfileStore

SUMMER = "name: summer\ndescription: knn first\ncomponents:\n  - type: knn\n    weight: {weight}\n"


def _summer(weight: float = 1.0) -> str:
    return SUMMER.format(weight=weight)


def _put(client: TestClient, name: str, text: str, **headers: str):
    return client.put(f"/admin/profiles/{name}", content=text.encode(), headers={"Content-Type": "application/yaml", **headers})


def test_no_profiles_at_first(admin_client: TestClient) -> None:
    response = admin_client.get("/admin/profiles")
    assert response.status_code == 200
    assert response.json() == {"profiles": [], "revision": 0}


def test_put_saves_and_activates_a_version(admin_client: TestClient) -> None:
    response = _put(admin_client, "summer", _summer(), **{"X-Hotfeed-Author": "pm@example.com"})
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["active"] is True and saved["author"] == "pm@example.com"
    assert saved["text"] == _summer() and len(saved["version"]) == 16
    listing = admin_client.get("/admin/profiles").json()
    assert [(p["name"], p["version"], p["description"]) for p in listing["profiles"]] == [
        ("summer", saved["version"], "knn first")
    ]
    assert listing["revision"] == 1
    detail = admin_client.get("/admin/profiles/summer").json()
    assert detail["active"]["version"] == saved["version"] and detail["error"] is None
    assert [v["version"] for v in detail["history"]] == [saved["version"]]


def test_invalid_profile_is_422_with_field_detail_and_nothing_stored(admin_client: TestClient) -> None:
    response = _put(admin_client, "summer", "name: summer\ncomponents:\n  - {type: knn, weight: -2}\n  - {type: nope}\n")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "2 problems" in detail
    assert "components[0].weight -2" in detail and "components[1].type 'nope'" in detail
    broken = _put(admin_client, "summer", "name: summer\ncomponents: [\n")
    assert broken.status_code == 422 and "does not parse at line" in broken.json()["detail"]
    mismatch = _put(admin_client, "summer", _summer().replace("name: summer", "name: winter"))
    assert mismatch.status_code == 422 and "set `name: summer`" in mismatch.json()["detail"]
    empty = _put(admin_client, "summer", "  \n")
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    assert admin_client.get("/admin/profiles").json() == {"profiles": [], "revision": 0}
    assert admin_client.get("/admin/profiles/summer").status_code == 404


def test_bad_profile_name_is_400(admin_client: TestClient) -> None:
    response = _put(admin_client, "Summer!", _summer())
    assert response.status_code == 400
    assert "profile name 'Summer!'" in response.json()["detail"]


def test_activate_rolls_back_and_unknown_version_is_404(admin_client: TestClient) -> None:
    first = _put(admin_client, "summer", _summer(1.0)).json()
    second = _put(admin_client, "summer", _summer(3.0)).json()
    response = admin_client.post(f"/admin/profiles/summer/activate/{first['version']}")
    assert response.status_code == 200 and response.json()["version"] == first["version"]
    detail = admin_client.get("/admin/profiles/summer").json()
    assert detail["active"]["version"] == first["version"]
    assert [(v["version"], v["active"]) for v in detail["history"]] == [
        (second["version"], False),
        (first["version"], True),
    ]
    missing = admin_client.post("/admin/profiles/summer/activate/0123456789abcdef")
    assert missing.status_code == 404 and "'0123456789abcdef'" in missing.json()["detail"]
    assert admin_client.post("/admin/profiles/nobody/activate/0123456789abcdef").status_code == 404


def test_delete_and_default_is_kept(admin_client: TestClient) -> None:
    _put(admin_client, "summer", _summer())
    assert admin_client.delete("/admin/profiles/summer").json() == {"deleted": "summer"}
    assert admin_client.get("/admin/profiles/summer").status_code == 404
    assert admin_client.delete("/admin/profiles/summer").status_code == 404
    default = admin_client.app.state.store.ensure_default()
    refused = admin_client.delete("/admin/profiles/default")
    assert refused.status_code == 400 and "cannot be deleted" in refused.json()["detail"]
    assert admin_client.get("/admin/profiles/default").json()["active"]["version"] == default.version


def test_a_stored_profile_that_stopped_validating_is_shown_with_its_error(
    admin_client: TestClient, redis_settings: RedisSettings
) -> None:
    # Written by a process whose mapping has an `expires_at` date field this gateway's mapping lacks.
    real = read_item_fields(admin_client.app.state.settings.paths.mappings_dir)
    other = ItemFields(types=MappingProxyType({**real.types, "expires_at": "date"}), source="other.json")
    writer = ProfileStore(redis_settings, fields=other)
    good = _put(admin_client, "summer", _summer()).json()
    writer.save("summer", "name: summer\ncomponents:\n  - {type: freshness_decay, field: expires_at, scale_h: 1}\n")
    listing = admin_client.get("/admin/profiles").json()["profiles"]
    assert listing[0]["name"] == "summer" and "no longer validates" in listing[0]["error"]
    detail = admin_client.get("/admin/profiles/summer").json()
    assert detail["active"] is None and "'expires_at'" in detail["error"]
    assert [v["version"] for v in detail["history"]] == [good["version"]]
    assert admin_client.post(f"/admin/profiles/summer/activate/{good['version']}").status_code == 200
    writer.client.close()


def test_service_token_guards_the_admin_api(make_gateway_settings, redis_settings: RedisSettings) -> None:
    settings = make_gateway_settings(redis=redis_settings, token="s3cret")
    with TestClient(create_app(settings)) as client:
        missing = client.get("/admin/profiles")
        assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["detail"]
        wrong = client.get("/admin/profiles", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert _put(client, "summer", _summer()).status_code == 401
        ok = client.get("/admin/profiles", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        # The page itself holds no data; its calls carry the token.
        assert client.get("/admin").status_code == 200


def test_admin_page_is_served(admin_client: TestClient) -> None:
    response = admin_client.get("/admin")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/admin/profiles" in response.text and "Preview" in response.text


def test_redis_down_is_503(make_gateway_settings) -> None:
    down = RedisSettings(url="redis://127.0.0.1:1/0", timeout_ms=200, key_prefix="hftest:down:")
    with TestClient(create_app(make_gateway_settings(redis=down))) as client:
        response = client.get("/admin/profiles")
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert "unavailable" in detail and "127.0.0.1" not in detail and "hotfeed" not in detail


def test_recommender_down_is_503_without_internal_detail(admin_client: TestClient) -> None:
    response = admin_client.get("/v1/feed/home", params={"session_id": "s1"})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "recommender is unavailable" in detail and "127.0.0.1" not in detail and "hotfeed serve" not in detail
    health = admin_client.get("/healthz")
    assert health.status_code == 200 and health.json()["recommender"].startswith("unavailable")
    assert admin_client.get("/readyz").status_code == 503

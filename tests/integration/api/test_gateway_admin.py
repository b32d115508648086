"""The admin API for score profiles, through the gateway app, on real Redis: drafts, validation,
publish and rollback with a comment, diffs, the audit trail and the admin tokens."""

from __future__ import annotations

import re
from types import MappingProxyType

from fastapi.testclient import TestClient

from api._identity import DEV_ADMIN
from api.app import create_app
from recommender.profiles import ItemFields, read_item_fields
from recommender.settings import RedisSettings
from recommender.stores.profiles import ProfileStore
from tests.integration.api.conftest import ADMIN_NAME, ADMIN_TOKEN

SUMMER = "name: summer\ndescription: knn first\ncomponents:\n  - type: knn\n    weight: {weight}\n"


def _summer(weight: float = 1.0) -> str:
    return SUMMER.format(weight=weight)


def _put(client: TestClient, name: str, text: str, *, comment: str = "", **headers: str):
    return client.put(f"/admin/profiles/{name}", content=text.encode(), params={"comment": comment} if comment else {},
                      headers={"Content-Type": "application/yaml", **headers})


def _publish(client: TestClient, name: str, version: str, comment: str = "ship it", action: str = "publish"):
    return client.post(f"/admin/profiles/{name}/versions/{version}/{action}", json={"comment": comment})


def test_no_profiles_at_first(admin_client: TestClient) -> None:
    response = admin_client.get("/admin/profiles")
    assert response.status_code == 200
    assert response.json() == {"profiles": [], "revision": 0}
    assert admin_client.get("/admin/audit").json() == {"entries": []}


def test_whoami_names_the_admin_of_the_token(admin_client: TestClient) -> None:
    assert admin_client.get("/admin/me").json() == {"name": ADMIN_NAME}


def test_put_saves_a_draft_that_is_not_live(admin_client: TestClient) -> None:
    response = _put(admin_client, "summer", _summer(), comment="first try")
    assert response.status_code == 200, response.text
    draft = response.json()
    assert (draft["status"], draft["active"], draft["author"], draft["comment"]) == ("draft", False, ADMIN_NAME,
                                                                                    "first try")
    assert draft["text"] == _summer() and len(draft["version"]) == 16
    listing = admin_client.get("/admin/profiles").json()
    # Listed (so the console can open it) but with no live version.
    assert listing["profiles"] == [{"name": "summer", "version": None, "description": "", "error": None}]
    detail = admin_client.get("/admin/profiles/summer").json()
    assert detail["active"] is None and detail["error"] is None
    assert [(v["version"], v["status"]) for v in detail["history"]] == [(draft["version"], "draft")]


def test_publish_makes_a_draft_live_and_needs_a_comment(admin_client: TestClient) -> None:
    draft = _put(admin_client, "summer", _summer()).json()
    for comment, expected in (("", "needs a comment"), ("   ", "needs a comment")):
        refused = _publish(admin_client, "summer", draft["version"], comment)
        assert refused.status_code == 400 and expected in refused.json()["detail"]
    missing = admin_client.post(f"/admin/profiles/summer/versions/{draft['version']}/publish", json={})
    assert missing.status_code == 422 and "comment" in missing.json()["detail"]
    assert admin_client.get("/admin/profiles/summer").json()["active"] is None
    published = _publish(admin_client, "summer", draft["version"], "  knn first for the summer sale ")
    assert published.status_code == 200, published.text
    live = published.json()
    assert live["status"] == "live" and live["published"]["by"] == ADMIN_NAME
    assert live["published"]["comment"] == "knn first for the summer sale"
    assert admin_client.get("/admin/profiles").json()["revision"] == 2  # the draft, then the publish
    assert admin_client.get("/admin/profiles/summer").json()["active"]["version"] == draft["version"]
    # A second draft leaves the live version live.
    second = _put(admin_client, "summer", _summer(3.0)).json()
    detail = admin_client.get("/admin/profiles/summer").json()
    assert detail["active"]["version"] == draft["version"]
    assert [(v["version"], v["status"]) for v in detail["history"]] == [
        (second["version"], "draft"), (draft["version"], "live")]


def test_rollback_publishes_an_earlier_live_version_only(admin_client: TestClient) -> None:
    first = _put(admin_client, "summer", _summer(1.0)).json()
    _publish(admin_client, "summer", first["version"])
    second = _put(admin_client, "summer", _summer(3.0)).json()
    never_live = _publish(admin_client, "summer", second["version"], "rollback?", action="rollback")
    assert never_live.status_code == 400 and "never live" in never_live.json()["detail"]
    _publish(admin_client, "summer", second["version"])
    no_comment = _publish(admin_client, "summer", first["version"], "", action="rollback")
    assert no_comment.status_code == 400
    back = _publish(admin_client, "summer", first["version"], "CTR dropped", action="rollback")
    assert back.status_code == 200 and back.json()["status"] == "live"
    detail = admin_client.get("/admin/profiles/summer").json()
    assert [(v["version"], v["status"]) for v in detail["history"]] == [
        (second["version"], "published"), (first["version"], "live")]
    missing = _publish(admin_client, "summer", "0123456789abcdef")
    assert missing.status_code == 404 and "'0123456789abcdef'" in missing.json()["detail"]
    assert _publish(admin_client, "nobody", "0123456789abcdef").status_code == 404


def test_every_action_is_in_the_audit_trail_newest_first(admin_client: TestClient) -> None:
    first = _put(admin_client, "summer", _summer(1.0), comment="draft one").json()
    _publish(admin_client, "summer", first["version"], "go live")
    second = _put(admin_client, "summer", _summer(2.0)).json()
    _publish(admin_client, "summer", second["version"], "more knn")
    _publish(admin_client, "summer", first["version"], "back to one", action="rollback")
    _put(admin_client, "winter", _summer().replace("summer", "winter"))
    admin_client.delete("/admin/profiles/winter", params={"comment": "not needed"})
    entries = admin_client.get("/admin/audit").json()["entries"]
    assert [(e["action"], e["name"], e["version"], e["comment"]) for e in entries] == [
        ("delete", "winter", "", "not needed"),
        ("save_draft", "winter", entries[1]["version"], ""),
        ("rollback", "summer", first["version"], "back to one"),
        ("publish", "summer", second["version"], "more knn"),
        ("save_draft", "summer", second["version"], ""),
        ("publish", "summer", first["version"], "go live"),
        ("save_draft", "summer", first["version"], "draft one"),
    ]
    assert {e["actor"] for e in entries} == {ADMIN_NAME} and {e["target"] for e in entries} == {"profile"}
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    only_summer = admin_client.get("/admin/audit", params={"name": "summer", "limit": 2}).json()["entries"]
    assert [(e["action"], e["version"]) for e in only_summer] == [("rollback", first["version"]),
                                                                   ("publish", second["version"])]
    # Read-only: there is no way to change or remove an entry.
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        assert admin_client.request(method, "/admin/audit").status_code == 405
    assert len(admin_client.get("/admin/audit").json()["entries"]) == 7


def test_validate_is_a_dry_run_with_field_level_problems(admin_client: TestClient) -> None:
    ok = admin_client.post("/admin/profiles/summer/validate", content=_summer().encode())
    assert ok.json() == {"valid": True, "problems": []}
    bad = admin_client.post("/admin/profiles/summer/validate",
                            content=b"name: summer\ncomponents:\n  - {type: knn, weight: -2}\n  - {type: nope}\n")
    assert bad.status_code == 200
    problems = bad.json()["problems"]
    assert bad.json()["valid"] is False
    assert [p["loc"] for p in problems] == ["components[0].weight", "components[1]"]
    assert "greater than or equal to 0" in problems[0]["message"] and "'nope'" in problems[1]["message"]
    renamed = admin_client.post("/admin/profiles/summer/validate", content=_summer().replace("summer", "winter").encode())
    assert renamed.json()["problems"][0]["loc"] == "name"
    syntax = admin_client.post("/admin/profiles/summer/validate", content=b"name: summer\ncomponents: [\n")
    assert syntax.json()["problems"][0]["loc"] == "profile" and "does not parse" in syntax.json()["problems"][0]["message"]
    assert admin_client.get("/admin/profiles").json() == {"profiles": [], "revision": 0}
    assert admin_client.get("/admin/audit").json() == {"entries": []}


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


def test_diff_of_two_versions_is_a_unified_diff_of_the_yaml(admin_client: TestClient) -> None:
    one = _put(admin_client, "summer", _summer(1.0)).json()["version"]
    three = _put(admin_client, "summer", _summer(3.0)).json()["version"]
    diff = admin_client.get("/admin/profiles/summer/diff", params={"from": one, "to": three}).json()["diff"]
    assert diff.splitlines() == [
        f"--- summer@{one}", f"+++ summer@{three}", "@@ -2,4 +2,4 @@", " description: knn first", " components:",
        "   - type: knn", "-    weight: 1.0", "+    weight: 3.0"]
    same = admin_client.get("/admin/profiles/summer/diff", params={"from": one, "to": one}).json()
    assert same["diff"] == ""
    missing = admin_client.get("/admin/profiles/summer/diff", params={"from": one, "to": "0123456789abcdef"})
    assert missing.status_code == 404 and "'0123456789abcdef'" in missing.json()["detail"]


def test_bad_profile_name_is_400(admin_client: TestClient) -> None:
    response = _put(admin_client, "Summer!", _summer())
    assert response.status_code == 400
    assert "profile name 'Summer!'" in response.json()["detail"]


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
    assert _publish(admin_client, "summer", good["version"]).status_code == 200
    writer.save("summer", "name: summer\ncomponents:\n  - {type: freshness_decay, field: expires_at, scale_h: 1}\n")
    listing = admin_client.get("/admin/profiles").json()["profiles"]
    assert listing[0]["name"] == "summer" and "no longer validates" in listing[0]["error"]
    detail = admin_client.get("/admin/profiles/summer").json()
    assert detail["active"] is None and "'expires_at'" in detail["error"]
    assert [v["version"] for v in detail["history"]] == [good["version"]]
    assert _publish(admin_client, "summer", good["version"], "back", action="rollback").status_code == 200
    writer.client.close()


ANNA_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BORIS_TOKEN = "boris-admin-token-fedcba9876543210"


def test_admin_tokens_guard_the_admin_api_and_name_the_admin(make_gateway_settings, redis_settings: RedisSettings) -> None:
    settings = make_gateway_settings(redis=redis_settings, admin_tokens=f"{ADMIN_NAME}:{ADMIN_TOKEN},boris:{BORIS_TOKEN}")
    with TestClient(create_app(settings)) as client:
        missing = client.get("/admin/profiles")
        assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["detail"]
        wrong = client.get("/admin/profiles", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "no admin's token" in wrong.json()["detail"]
        assert _put(client, "summer", _summer()).status_code == 401
        assert client.get("/admin/audit").status_code == 401
        assert client.get("/admin/profiles", headers=ANNA_HEADERS).status_code == 200
        saved = _put(client, "summer", _summer(), **ANNA_HEADERS).json()
        published = client.post(f"/admin/profiles/summer/versions/{saved['version']}/publish",
                                json={"comment": "boris ships"}, headers={"Authorization": f"Bearer {BORIS_TOKEN}"})
        assert published.json()["published"]["by"] == "boris"
        entries = client.get("/admin/audit", headers=ANNA_HEADERS).json()["entries"]
        assert [(e["action"], e["actor"]) for e in entries] == [("publish", "boris"), ("save_draft", ADMIN_NAME)]
        # The page itself holds no data; its calls carry the token.
        assert client.get("/admin").status_code == 200


def test_dev_mode_without_admin_tokens_records_the_dev_admin(make_gateway_settings, redis_settings: RedisSettings) -> None:
    settings = make_gateway_settings(redis=redis_settings, admin_tokens="")
    assert settings.server.dev_mode  # tests/conftest.py sets HOTFEED_DEV_MODE=1
    with TestClient(create_app(settings)) as client:
        assert client.get("/admin/me").json() == {"name": DEV_ADMIN}
        assert _put(client, "summer", _summer()).json()["author"] == DEV_ADMIN


def test_admin_page_is_served_and_keeps_the_token_in_memory_only(admin_client: TestClient) -> None:
    response = admin_client.get("/admin", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for endpoint in ("/admin/me", "/admin/profile-schema", "/parse", "/render", "/versions/", "/diff?from=",
                     "/admin/audit"):
        assert endpoint in page, endpoint
    assert not re.search(r"(local|session)Storage\s*[.\[]|document\.cookie", page)


def test_redis_down_is_503(make_gateway_settings) -> None:
    down = RedisSettings(url="redis://127.0.0.1:1/0", timeout_ms=200, key_prefix="hftest:down:")
    with TestClient(create_app(make_gateway_settings(redis=down))) as client:
        response = client.get("/admin/profiles", headers=ANNA_HEADERS)
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert "unavailable" in detail and "127.0.0.1" not in detail and "hotfeed" not in detail


def test_recommender_down_is_503_without_internal_detail(admin_client: TestClient) -> None:
    # A logged-out viewer: no Authorization header (the client's default is the admin token).
    response = admin_client.get("/v1/feed/home", params={"session_id": "s1"}, headers={"Authorization": ""})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "recommender is unavailable" in detail and "127.0.0.1" not in detail and "hotfeed serve" not in detail
    health = admin_client.get("/healthz")
    assert health.status_code == 200 and health.json()["recommender"].startswith("unavailable")
    assert admin_client.get("/readyz").status_code == 503

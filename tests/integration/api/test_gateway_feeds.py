"""Feeds and events through the gateway, against the real gRPC recommender
(``service_stack``: a small synthetic index in OpenSearch, Redis, the server in-process)."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.integration.api.conftest import ADMIN_HEADERS, token_for


def _active(stack) -> list[str]:
    items = stack.market.items
    return items.loc[items["status"] == "active", "item_id"].tolist()


def _user(stack) -> str:
    return str(stack.market.users["user_id"].iloc[0])


def test_home_feed_page_has_the_documented_shape(feed_client: TestClient, service_stack) -> None:
    response = feed_client.get("/v1/feed/home", params={"page_size": 5}, headers=token_for(_user(service_stack)))
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"items", "next_cursor", "profile_version", "model_version", "served_from", "degradations",
                         "experiment"}
    assert len(page["items"]) == 5
    assert all(set(item) == {"item_id", "score"} for item in page["items"])
    assert set(i["item_id"] for i in page["items"]) <= set(_active(service_stack))
    assert page["served_from"] == "engine" and page["next_cursor"] and page["profile_version"]
    assert page["degradations"] == [] and page["experiment"] == ""


def test_explain_adds_component_scores(feed_client: TestClient) -> None:
    page = feed_client.get("/v1/feed/home", params={"session_id": "gw-explain", "page_size": 3, "explain": "true"}).json()
    assert all("cohort_popularity" in item["component_scores"] for item in page["items"])


def test_infinite_scroll_passes_the_cursor_through_without_duplicates(feed_client: TestClient) -> None:
    seen: list[str] = []
    cursor = ""
    served_from = []
    for _ in range(4):
        params = {"session_id": "gw-scroll", "page_size": 10} | ({"cursor": cursor} if cursor else {})
        page = feed_client.get("/v1/feed/home", params=params).json()
        seen += [i["item_id"] for i in page["items"]]
        served_from.append(page["served_from"])
        cursor = page["next_cursor"]
        assert cursor
    assert len(seen) == 40 and len(set(seen)) == 40
    assert served_from[0] == "engine"


def test_bad_inputs_get_clear_statuses(feed_client: TestClient) -> None:
    too_big = feed_client.get("/v1/feed/home", params={"page_size": 10_000})
    assert too_big.status_code == 400 and "page_size 10000" in too_big.json()["detail"]
    zero = feed_client.get("/v1/feed/home", params={"page_size": 0})
    assert zero.status_code == 422 and "'page_size'" in zero.json()["detail"]
    not_a_number = feed_client.get("/v1/feed/home", params={"page_size": "ten"})
    assert not_a_number.status_code == 422 and "'ten'" in not_a_number.json()["detail"]
    forged = feed_client.get("/v1/feed/home", params={"cursor": "garbage", "page_size": 5})
    assert forged.status_code == 400 and "without a cursor" in forged.json()["detail"]


def test_product_feed_needs_a_user(feed_client: TestClient, service_stack) -> None:
    item = _active(service_stack)[0]
    anonymous = feed_client.get("/v1/feed/product", params={"item_id": item, "page_size": 5})
    assert anonymous.status_code == 401 and "user_id" in anonymous.json()["detail"]
    page = feed_client.get("/v1/feed/product", params={"item_id": item, "page_size": 5},
                           headers=token_for(_user(service_stack)))
    assert page.status_code == 200
    assert len(page.json()["items"]) == 5 and item not in {i["item_id"] for i in page.json()["items"]}
    missing = feed_client.get("/v1/feed/product", headers=token_for(_user(service_stack)))
    assert missing.status_code == 422 and "'item_id' is required" in missing.json()["detail"]


def test_similar_items_never_include_the_item_and_unknown_is_404(feed_client: TestClient, service_stack) -> None:
    item = _active(service_stack)[1]
    page = feed_client.get(f"/v1/items/{item}/similar", params={"page_size": 5})
    assert page.status_code == 200
    assert len(page.json()["items"]) == 5 and item not in {i["item_id"] for i in page.json()["items"]}
    unknown = feed_client.get("/v1/items/no-such-item/similar")
    assert unknown.status_code == 404 and "'no-such-item'" in unknown.json()["detail"]


def test_events_are_forwarded_and_rejections_point_into_the_callers_list(feed_client: TestClient, service_stack) -> None:
    item = _active(service_stack)[3]
    events = [
        {"type": "status", "item_id": item, "status": "sold"},
        {"type": "view", "item_id": item, "session_id": "gw-events", "platform": "iOS"},
        {"type": "view", "session_id": "gw-events"},
        {"type": "like", "item_id": item, "session_id": "gw-events", "ts": "2020-01-01T00:00:00Z"},
        {"type": "teleport", "item_id": item, "session_id": "gw-events"},
    ]
    response = feed_client.post("/v1/events", json=events)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 3)
    reasons = {r["index"]: r["reason"] for r in answer["rejections"]}
    assert set(reasons) == {0, 2, 4}
    assert "status events" in reasons[0] and "item_id" in reasons[2] and "'teleport'" in reasons[4]
    # The accepted view went into the session: that session's next feed leaves the seen item out.
    page = feed_client.get("/v1/feed/home", params={"session_id": "gw-events", "page_size": 50}).json()
    assert item not in {i["item_id"] for i in page["items"]}
    not_a_list = feed_client.post("/v1/events", json={"type": "view"})
    assert not_a_list.status_code == 400 and "JSON list of events" in not_a_list.json()["detail"]


def test_health_and_request_id(feed_client: TestClient) -> None:
    assert feed_client.get("/readyz").json() == {"status": "ok", "recommender": "SERVING"}
    response = feed_client.get("/healthz", headers={"X-Request-ID": "req-42"})
    assert response.json()["recommender"] == "SERVING"
    assert response.headers["X-Request-ID"] == "req-42"


def test_a_token_for_one_user_cannot_read_or_post_as_another(feed_client: TestClient, service_stack) -> None:
    alice, bob = (str(u) for u in service_stack.market.users["user_id"].iloc[:2])
    item = _active(service_stack)[4]
    as_bob = feed_client.get("/v1/feed/home", params={"user_id": bob, "page_size": 5}, headers=token_for(alice))
    assert as_bob.status_code == 400 and "signed token" in as_bob.json()["detail"]
    posted = feed_client.post("/v1/events", headers=token_for(alice), json=[
        {"type": "like", "item_id": item, "user_id": bob},
        {"type": "like", "item_id": item},
    ])
    assert posted.status_code == 200
    answer = posted.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1) and answer["rejections"][0]["index"] == 0
    # The accepted like is alice's: her next feed leaves the item out, bob's history is untouched.
    mine = feed_client.get("/v1/feed/home", params={"page_size": 50}, headers=token_for(alice)).json()
    assert item not in {i["item_id"] for i in mine["items"]}
    from recommender.stores.sessions import SessionStore

    assert item not in SessionStore(service_stack.settings.redis).recent(bob)
    assert item in SessionStore(service_stack.settings.redis).recent(alice)


def test_an_expired_or_tampered_token_is_401(feed_client: TestClient, service_stack) -> None:
    user = _user(service_stack)
    expired = feed_client.get("/v1/feed/home", headers=token_for(user, exp_in_s=-10))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    header = token_for(user)["Authorization"]
    tampered = feed_client.get("/v1/feed/home", headers={"Authorization": header[:-4] + "AAAA"})
    assert tampered.status_code == 401


def test_a_disliked_category_set_through_the_api_is_gone_from_the_next_feed(feed_client: TestClient, service_stack) -> None:
    user = str(service_stack.market.users["user_id"].iloc[5])
    auth = token_for(user)
    before = feed_client.get("/v1/feed/home", params={"page_size": 30}, headers=auth).json()
    items = service_stack.market.items.set_index("item_id")["category"]
    shown = [str(items[i["item_id"]]).split("/")[0] for i in before["items"]]
    top = max(set(shown), key=shown.count)
    saved = feed_client.put("/v1/me/preferences", headers=auth, json={"gender": "f", "disliked_categories": [top]})
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"gender": "f", "age_band": None, "liked_categories": [], "disliked_categories": [top]}
    assert feed_client.get("/v1/me/preferences", headers=auth).json()["disliked_categories"] == [top]
    after = feed_client.get("/v1/feed/home", params={"page_size": 30}, headers=auth).json()
    assert after["items"] and all(not str(items[i["item_id"]]).startswith(top) for i in after["items"])


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"gender": "x"}, 400, "gender"),
    ({"age_band": "ancient"}, 400, "age_band"),
    ({"liked_categories": ["a"], "disliked_categories": ["a"]}, 400, "both liked and disliked"),
    ({"favourite_colour": "blue"}, 400, "unknown preference field"),
    ({"liked_categories": "shoes"}, 400, "list of category paths"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_preferences_are_4xx_naming_the_field(feed_client: TestClient, service_stack, body, status, message) -> None:
    response = feed_client.put("/v1/me/preferences", headers=token_for("u-prefs"), json=body)
    assert response.status_code == status and message in response.json()["detail"]


def test_preferences_need_a_signed_in_user(feed_client: TestClient) -> None:
    assert feed_client.get("/v1/me/preferences").status_code == 401
    assert feed_client.put("/v1/me/preferences", json={"gender": "m"}).status_code == 401


def test_a_scroll_restarts_cleanly_when_the_user_changes_preferences(feed_client: TestClient, service_stack) -> None:
    user = str(service_stack.market.users["user_id"].iloc[6])
    auth = token_for(user)
    first = feed_client.get("/v1/feed/home", params={"page_size": 5, "session_id": "prefs-scroll"}, headers=auth).json()
    assert first["next_cursor"]
    assert feed_client.put("/v1/me/preferences", headers=auth, json={"age_band": "25-34"}).status_code == 200
    again = feed_client.get("/v1/feed/home", headers=auth,
                            params={"page_size": 5, "session_id": "prefs-scroll", "cursor": first["next_cursor"]}).json()
    assert [d["stage"] for d in again["degradations"]] == ["cursor"]
    assert "preferences changed" in again["degradations"][0]["reason"]
    assert len(again["items"]) == 5

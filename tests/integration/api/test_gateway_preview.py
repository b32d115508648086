"""Side-by-side previews through the gateway's admin API, against the real gRPC recommender
(``service_stack``: a small synthetic index in OpenSearch, Redis, the server in-process):
live vs draft per user, item details, rank changes, fallbacks, refusals, and experiments
left untouched."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import grpc
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.service.server import start_server
from recommender.settings import ServerSettings
from recommender.stores.recent_users import RecentUsers
from tests.integration.api.conftest import ADMIN_HEADERS, gateway_settings, token_for, wait_for

# The draft of these tests triples the weight of the bumped-freshness component.
_BUMPED = re.compile(r"(name: freshness_bumped\n(?:\s+\w+: .*\n)*?\s+weight: )1\.0")


def _save(client: TestClient, name: str, text: str) -> str:
    saved = client.put(f"/admin/profiles/{name}", content=text.encode(), headers=ADMIN_HEADERS)
    assert saved.status_code == 200, saved.text
    return saved.json()["version"]


def _publish(client: TestClient, name: str, version: str) -> None:
    published = client.post(f"/admin/profiles/{name}/versions/{version}/publish", json={"comment": "preview test"},
                            headers=ADMIN_HEADERS)
    assert published.status_code == 200, published.text


@pytest.fixture
def live_and_draft(feed_client: TestClient) -> Iterator[tuple[str, str, str]]:
    """A profile ``(name, live version, draft version)``: the live one is the default's YAML,
    the draft triples the freshness_bumped weight; deleted afterwards."""
    name = f"gw-pv-{uuid.uuid4().hex[:6]}"
    text = feed_client.get("/admin/profiles/default", headers=ADMIN_HEADERS).json()["active"]["text"]
    text = text.replace("name: default", f"name: {name}")
    assert _BUMPED.search(text), "the default profile has no freshness_bumped weight of 1.0 to edit"
    live = _save(feed_client, name, text)
    _publish(feed_client, name, live)
    draft = _save(feed_client, name, _BUMPED.sub(r"\g<1>3.0", text))
    yield name, live, draft
    feed_client.delete(f"/admin/profiles/{name}", headers=ADMIN_HEADERS)


def _known_user(client: TestClient, user: str) -> str:
    """Return ``user`` after declaring preferences for them (known to serving; no experiment event)."""
    answer = client.put("/v1/me/preferences", json={"liked_categories": []}, headers=token_for(user))
    assert answer.status_code == 200, answer.text
    return user


def _preview(client: TestClient, name: str, **params) -> dict:
    response = client.get(f"/admin/profiles/{name}/preview", params=params, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_draft_preview_shows_its_version_scores_and_item_details(feed_client: TestClient, service_stack,
                                                                   live_and_draft) -> None:
    name, live, draft = live_and_draft
    user = _known_user(feed_client, f"pv-user-{uuid.uuid4().hex[:6]}")
    preview = _preview(feed_client, name, user_id=user, page_size=8)
    # No version named: the newest draft.
    assert (preview["live_version"], preview["version"], preview["users_from"]) == (live, draft, "given")
    [row] = preview["users"]
    assert row["user_id"] == user
    assert row["live"]["profile_version"] == live and row["draft"]["profile_version"] == draft
    assert row["live"]["served_by"] == row["draft"]["served_by"] == "engine"
    assert row["comparable"] is True and row["overlap"]["k"] == 8
    assert row["overlap"]["in_common"] == len({i["item_id"] for i in row["live"]["items"]}
                                              & {i["item_id"] for i in row["draft"]["items"]})
    items = service_stack.market.items.set_index("item_id")
    for side in ("live", "draft"):
        assert [i["rank"] for i in row[side]["items"]] == list(range(1, 9))
        for item in row[side]["items"]:
            indexed = items.loc[item["item_id"]]
            assert item["title"] == indexed["title"] and item["price"] == pytest.approx(float(indexed["price"]))
            assert item["category"] == indexed["category"] and item["age_h"] >= 0
    # The draft triples freshness_bumped: an item on both pages scores three times as much there.
    live_scores = {i["item_id"]: i["component_scores"] for i in row["live"]["items"]}
    common = [i for i in row["draft"]["items"] if i["item_id"] in live_scores
              and live_scores[i["item_id"]].get("freshness_bumped", 0) > 0]
    assert common, "no item on both pages with a bumped-freshness score"
    for item in common:
        assert item["component_scores"]["freshness_bumped"] == pytest.approx(
            3 * live_scores[item["item_id"]]["freshness_bumped"], rel=1e-3)


def test_previewing_the_live_version_against_itself_moves_nothing(feed_client: TestClient, live_and_draft) -> None:
    name, live, _ = live_and_draft
    user = _known_user(feed_client, f"pv-same-{uuid.uuid4().hex[:6]}")
    [row] = _preview(feed_client, name, user_id=user, version=live, page_size=6)["users"]
    assert [i["item_id"] for i in row["live"]["items"]] == [i["item_id"] for i in row["draft"]["items"]]
    assert all(i["change"] == {"kind": "same", "by": 0} for i in row["live"]["items"] + row["draft"]["items"])
    assert row["overlap"] == {"k": 6, "in_common": 6, "overlap_at_k": 1.0}


def test_rank_changes_match_the_two_pages(feed_client: TestClient, live_and_draft) -> None:
    name, _, _ = live_and_draft
    user = _known_user(feed_client, f"pv-rank-{uuid.uuid4().hex[:6]}")
    [row] = _preview(feed_client, name, user_id=user, page_size=20)["users"]
    live_rank = {i["item_id"]: i["rank"] for i in row["live"]["items"]}
    draft_rank = {i["item_id"]: i["rank"] for i in row["draft"]["items"]}
    for item in row["draft"]["items"]:
        expected = ({"kind": "new", "by": None} if item["item_id"] not in live_rank else
                    {"kind": "same" if live_rank[item["item_id"]] == item["rank"] else "moved",
                     "by": live_rank[item["item_id"]] - item["rank"]})
        assert item["change"] == expected, item
    dropped = [i["item_id"] for i in row["live"]["items"] if i["change"]["kind"] == "dropped"]
    assert dropped == [i for i in live_rank if i not in draft_rank]


def test_without_user_ids_a_sample_of_recently_active_users_is_previewed(feed_client: TestClient, service_stack,
                                                                         live_and_draft) -> None:
    name, _, _ = live_and_draft
    user = f"pv-active-{uuid.uuid4().hex[:6]}"
    item = str(service_stack.market.items["item_id"].iloc[0])
    assert feed_client.post("/v1/events", json=[{"type": "view", "item_id": item}],
                            headers=token_for(user)).json()["accepted"] == 1
    preview = _preview(feed_client, name, sample=2, page_size=3)
    assert preview["users_from"] == "sample of recently active users"
    sampled = [row["user_id"] for row in preview["users"]]
    assert 1 <= len(sampled) <= 2 and len(set(sampled)) == len(sampled)
    recent = RecentUsers(service_stack.settings.redis)
    try:
        assert user in recent.active() and set(sampled) <= set(recent.active())
    finally:
        recent.client.close()


def test_bad_preview_requests_get_clear_4xx(feed_client: TestClient, live_and_draft) -> None:
    name, _, _ = live_and_draft
    path = f"/admin/profiles/{name}/preview"
    unknown_version = feed_client.get(path, params={"version": "0123456789abcdef"}, headers=ADMIN_HEADERS)
    assert unknown_version.status_code == 404
    assert f"score profile {name!r} has no stored version '0123456789abcdef'" in unknown_version.json()["detail"]
    unknown_user = feed_client.get(path, params={"user_id": "nobody-at-all"}, headers=ADMIN_HEADERS)
    assert unknown_user.status_code == 404 and "['nobody-at-all'] unknown" in unknown_user.json()["detail"]
    too_many = feed_client.get(path, params={"user_id": [f"u{n}" for n in range(21)]}, headers=ADMIN_HEADERS)
    assert too_many.status_code == 400 and "preview at most 20" in too_many.json()["detail"]
    too_long = feed_client.get(path, params={"user_id": "x" * 500}, headers=ADMIN_HEADERS)
    assert too_long.status_code == 400 and "must be 1..128 characters" in too_long.json()["detail"]
    no_profile = feed_client.get("/admin/profiles/no-such-profile/preview", headers=ADMIN_HEADERS)
    assert no_profile.status_code == 404 and "'no-such-profile' does not exist" in no_profile.json()["detail"]
    for response in (unknown_version, unknown_user, too_many, too_long, no_profile):
        assert "127.0.0.1" not in response.text and "services up" not in response.text


def test_the_apps_feeds_cannot_choose_a_profile_version(feed_client: TestClient, live_and_draft) -> None:
    name, _, draft = live_and_draft
    for params in ({"profile_version": draft}, {"profile": name}, {"preview": "true"}):
        response = feed_client.get("/v1/feed/home", params={"page_size": 3, **params})
        assert response.status_code == 400, response.text
        assert "admin console" in response.json()["detail"]
    page = feed_client.get("/v1/feed/home", params={"page_size": 3, "session_id": "pv-public"}).json()
    assert page["profile_version"] != draft


@pytest.fixture
def engine_less_gateway(service_stack) -> Iterator[TestClient]:
    """A gateway in front of a second recommender whose index alias does not exist, sharing the
    stack's Redis (profiles, popular list): every engine search fails."""
    settings = service_stack.settings
    broken = settings.model_copy(update={
        "engine": settings.engine.model_copy(update={"index_alias": f"hftest-{uuid.uuid4().hex[:8]}-missing"}),
        "server": ServerSettings(port=0, engine_timeout_ms=2000, metrics_port=0, profile_poll_ms=100),
    })
    running = start_server(broken, port=0)
    try:
        app = create_app(gateway_settings(settings, redis=settings.redis, grpc_target=f"127.0.0.1:{running.port}"))
        with TestClient(app) as client:
            yield client
    finally:
        running.stop(grace_s=0.5)


def test_two_fallback_sides_are_named_and_never_compared(engine_less_gateway: TestClient, feed_client: TestClient,
                                                         live_and_draft) -> None:
    name, live, draft = live_and_draft
    user = _known_user(feed_client, f"pv-fallback-{uuid.uuid4().hex[:6]}")
    [row] = _preview(engine_less_gateway, name, user_id=user, page_size=5)["users"]
    for side, version in (("live", live), ("draft", draft)):
        assert row[side]["served_by"] == "popular fallback" and row[side]["fallback"] is True
        assert "fallback" in row[side]["fallback_reason"] and row[side]["profile_version"] == version
        assert len(row[side]["items"]) == 5 and all(i["change"] is None for i in row[side]["items"])
    assert row["comparable"] is False and row["overlap"] is None
    assert "both sides were served by the popular fallback" in row["reason"]


def test_a_preview_during_an_experiment_leaves_its_counters_alone(feed_client: TestClient, grpc_server: str,
                                                                  live_and_draft) -> None:
    name, live, draft = live_and_draft
    _publish(feed_client, name, draft)  # two published versions for the experiment; the draft is live now
    experiment = f"pv-ab-{uuid.uuid4().hex[:6]}"
    started = feed_client.post("/admin/experiments", headers=ADMIN_HEADERS, json={
        "name": experiment, "profile": name, "comment": "preview test",
        "variants": [{"version": live, "percent": 50}, {"version": draft, "percent": 50}]})
    assert started.status_code == 200, started.text
    channel = grpc.insecure_channel(grpc_server)
    stub = pb_grpc.RecommenderStub(channel)
    users = [_known_user(feed_client, f"pv-ab-user-{n}-{uuid.uuid4().hex[:4]}") for n in range(3)]

    warm_up: dict[str, int] = {live: 0, draft: 0}

    def impressions() -> dict[str, int]:
        answer = feed_client.get(f"/admin/experiments/{experiment}", headers=ADMIN_HEADERS).json()
        return {v["version"]: v["impressions"] for v in answer["variants"]}

    def served_in_experiment() -> bool:
        try:
            page = stub.HomeFeed(pb.HomeFeedRequest(session_id="pv-ab-warm", page_size=2, profile=name), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False
        if page.experiment == experiment:
            warm_up[page.profile_version] += len(page.items)
        return page.experiment == experiment

    try:
        wait_for(served_in_experiment, "the recommender serving the experiment")
        wait_for(lambda: impressions() == warm_up, "the warm-up impressions reaching Redis")
        for version in (live, draft):
            preview = _preview(feed_client, name, version=version, user_id=users, page_size=5)
            assert all(row["live"]["served_by"] == "engine" for row in preview["users"])
        # One ordinary page after the previews: the counters move by exactly its items (previews
        # counted would be flushed with it at the latest, and the counts would never match).
        page = stub.HomeFeed(pb.HomeFeedRequest(session_id="pv-ab-after", page_size=3, profile=name), timeout=10)
        assert page.experiment == experiment
        expected = {**warm_up, page.profile_version: warm_up[page.profile_version] + len(page.items)}
        wait_for(lambda: impressions() == expected, "exactly the ordinary page's impressions reaching Redis")
    finally:
        feed_client.post(f"/admin/experiments/{experiment}/stop", json={}, headers=ADMIN_HEADERS)
        channel.close()

"""A/B experiments through the gateway's admin API on real Redis: start, the refusals, stop,
promote and the audit trail; and, against the real gRPC recommender, variants serving feeds
with per-variant impressions, exposed viewers and the events of exposed viewers only."""

from __future__ import annotations

import uuid

import grpc
import pytest
from fastapi.testclient import TestClient

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.experiments import Experiment, Variant, assign_variant
from tests.integration.api.conftest import ADMIN_HEADERS, ADMIN_NAME, token_for, wait_for

SUMMER = "name: {name}\ndescription: knn first\ncomponents:\n  - type: knn\n    weight: {weight}\n"


def _published(client: TestClient, name: str, text: str, comment: str = "for the test") -> str:
    saved = client.put(f"/admin/profiles/{name}", content=text.encode(),
                       headers={"Content-Type": "application/yaml", **ADMIN_HEADERS})
    assert saved.status_code == 200, saved.text
    version = saved.json()["version"]
    published = client.post(f"/admin/profiles/{name}/versions/{version}/publish", json={"comment": comment},
                            headers=ADMIN_HEADERS)
    assert published.status_code == 200, published.text
    return version


def _start(client: TestClient, name: str, profile: str, *variants: tuple[str, float], comment: str = ""):
    return client.post("/admin/experiments", json={
        "name": name, "profile": profile, "comment": comment,
        "variants": [{"version": v, "percent": p} for v, p in variants]}, headers=ADMIN_HEADERS)


@pytest.fixture
def two_versions(admin_client: TestClient) -> tuple[str, str]:
    """Two published versions of profile ``summer`` (the second is live)."""
    return (_published(admin_client, "summer", SUMMER.format(name="summer", weight=1.0)),
            _published(admin_client, "summer", SUMMER.format(name="summer", weight=2.0)))


def test_start_lists_the_experiment_with_empty_stats_and_audits_it(admin_client: TestClient, two_versions) -> None:
    old, new = two_versions
    response = _start(admin_client, "knn-weight", "summer", (old, 30), (new, 70), comment="does knn x2 help?")
    assert response.status_code == 200, response.text
    listed = admin_client.get("/admin/experiments").json()["experiments"]
    assert [(e["name"], e["profile"], e["state"], e["created_by"]) for e in listed] == [
        ("knn-weight", "summer", "running", ADMIN_NAME)]
    rows = {v["version"]: v for v in listed[0]["variants"]}
    assert (rows[old]["percent"], rows[new]["percent"]) == (30.0, 70.0)
    assert rows[old]["impressions"] == rows[old]["exposed_viewers"] == rows[old]["click"] == 0
    assert rows[old]["ctr"] == {"rate": None, "low": 0.0, "high": 1.0}
    entry = admin_client.get("/admin/audit", params={"name": "knn-weight"}).json()["entries"][0]
    assert (entry["actor"], entry["action"], entry["target"], entry["comment"]) == (
        ADMIN_NAME, "start_experiment", "experiment", "does knn x2 help?")


def test_invalid_experiments_are_refused_saying_why(admin_client: TestClient, two_versions) -> None:
    old, new = two_versions
    draft = admin_client.put("/admin/profiles/summer", content=SUMMER.format(name="summer", weight=3.0).encode(),
                             headers={"Content-Type": "application/yaml"}).json()["version"]
    cases = [
        (_start(admin_client, "e1", "summer", (old, 50), ("0123456789abcdef", 50)),
         "'0123456789abcdef' is not a published version of profile 'summer'"),
        (_start(admin_client, "e1", "summer", (old, 50), (draft, 50)), "publish it first"),
        (_start(admin_client, "e1", "summer", (old, 50), (new, 40)), "sum to 90, not 100"),
        (_start(admin_client, "e1", "summer", (old, 100)), "at least two variants"),
        (_start(admin_client, "Bad Name", "summer", (old, 50), (new, 50)), "experiment name 'Bad Name'"),
    ]
    for response, message in cases:
        assert response.status_code == 400 and message in response.json()["detail"], response.text
    unknown = _start(admin_client, "e1", "winter", (old, 50), (new, 50))
    assert unknown.status_code == 404 and "'winter' does not exist" in unknown.json()["detail"]
    assert _start(admin_client, "e1", "summer", (old, 50), (new, 50)).status_code == 200
    second = _start(admin_client, "e2", "summer", (old, 20), (new, 80))
    assert second.status_code == 400
    assert "profile 'summer' already runs experiment 'e1'; stop it first" in second.json()["detail"]
    reused = _start(admin_client, "e1", "summer", (old, 50), (new, 50))
    assert reused.status_code == 400 and "'e1' is already used" in reused.json()["detail"]
    assert admin_client.get("/admin/experiments").json()["experiments"][0]["name"] == "e1"
    assert len(admin_client.get("/admin/experiments").json()["experiments"]) == 1


def test_stop_then_a_new_experiment_can_start_and_stopping_twice_is_refused(admin_client: TestClient,
                                                                            two_versions) -> None:
    old, new = two_versions
    assert _start(admin_client, "first", "summer", (old, 50), (new, 50)).status_code == 200
    stopped = admin_client.post("/admin/experiments/first/stop", json={"comment": "enough"})
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["state"], stopped.json()["stopped_by"]) == ("stopped", ADMIN_NAME)
    again = admin_client.post("/admin/experiments/first/stop", json={})
    assert again.status_code == 400 and "already stopped" in again.json()["detail"]
    assert _start(admin_client, "second", "summer", (old, 50), (new, 50)).status_code == 200
    missing = admin_client.post("/admin/experiments/nope/stop", json={})
    assert missing.status_code == 404 and "'nope' does not exist" in missing.json()["detail"]
    actions = [e["action"] for e in admin_client.get("/admin/audit").json()["entries"]
               if e["target"] == "experiment"]
    assert actions == ["start_experiment", "stop_experiment", "start_experiment"]


def test_promote_publishes_the_winner_with_the_comment_and_stops(admin_client: TestClient, two_versions) -> None:
    old, new = two_versions
    assert _start(admin_client, "ab", "summer", (old, 50), (new, 50)).status_code == 200
    no_comment = admin_client.post("/admin/experiments/ab/promote", json={"version": old, "comment": " "})
    assert no_comment.status_code == 400 and "needs a comment" in no_comment.json()["detail"]
    stranger = admin_client.post("/admin/experiments/ab/promote", json={"version": "0123456789abcdef", "comment": "x"})
    assert stranger.status_code == 400 and "is not a variant of experiment 'ab'" in stranger.json()["detail"]
    promoted = admin_client.post("/admin/experiments/ab/promote", json={"version": old, "comment": "old one wins"})
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["state"], promoted.json()["promoted_version"]) == ("stopped", old)
    assert admin_client.get("/admin/profiles/summer").json()["active"]["version"] == old
    entries = admin_client.get("/admin/audit").json()["entries"][:2]
    assert [(e["action"], e["name"], e["version"]) for e in entries] == [
        ("promote_experiment", "ab", old), ("publish", "summer", old)]
    assert entries[1]["comment"] == "old one wins (winner of experiment 'ab')"
    # The profile is free for the next experiment.
    assert _start(admin_client, "ab-2", "summer", (old, 50), (new, 50)).status_code == 200


def test_experiments_need_the_admin_token(admin_client: TestClient) -> None:
    response = admin_client.get("/admin/experiments", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


def test_variants_serve_feeds_and_count_only_the_events_of_exposed_viewers(feed_client: TestClient, service_stack,
                                                                            grpc_server: str) -> None:
    profile, name = f"gw-ab-{uuid.uuid4().hex[:6]}", f"ab-{uuid.uuid4().hex[:6]}"
    default_text = feed_client.get("/admin/profiles/default", headers=ADMIN_HEADERS).json()["active"]["text"]
    text = default_text.replace("name: default", f"name: {profile}")
    channel = grpc.insecure_channel(grpc_server)
    stub = pb_grpc.RecommenderStub(channel)
    try:
        first = _published(feed_client, profile, text)
        second = _published(feed_client, profile, text.replace("weight: 2.0", "weight: 0.5", 1))
        assert first != second
        assert _start(feed_client, name, profile, (first, 50), (second, 50)).status_code == 200
        served: dict[str, int] = {first: 0, second: 0}
        exposed: dict[str, set[str]] = {first: set(), second: set()}

        def home(session: str = "", user: str = "") -> pb.FeedResponse:
            page = stub.HomeFeed(pb.HomeFeedRequest(session_id=session, user_id=user, page_size=4, profile=profile),
                                 timeout=10)
            if page.experiment:
                served[page.profile_version] += len(page.items)
                exposed[page.profile_version].add(user or session)
            return page

        def serving_experiment() -> bool:
            try:
                return home("ab-warm").experiment == name
            except grpc.RpcError as exc:  # the new profile is unknown until the recommender's next poll
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return False

        wait_for(serving_experiment, "the recommender serving the experiment")
        experiment = Experiment(name=name, profile=profile, variants=(Variant(first, 50), Variant(second, 50)),
                                state="running", created_by="", created_at=0)
        sessions = [f"ab-session-{n}" for n in range(12)]
        for session in sessions:
            page = home(session)
            assert page.experiment == name
            assert page.profile_version == assign_variant(experiment, session).version
            assert home(session).profile_version == page.profile_version  # the same viewer, the same variant
        variant_of = {s: assign_variant(experiment, s).version for s in sessions}
        assert set(variant_of.values()) == {first, second}
        item = str(service_stack.market.items["item_id"].iloc[0])
        # Signed-in users: one never served the experiment (she came from search), one served a page.
        searcher, reader = f"ab-searcher-{uuid.uuid4().hex[:6]}", f"ab-reader-{uuid.uuid4().hex[:6]}"
        assert home(user=reader).profile_version == assign_variant(experiment, reader).version
        liked = feed_client.post("/v1/events", json=[{"type": "like", "item_id": item}], headers=token_for(searcher))
        assert liked.json()["accepted"] == 1
        # Anonymous: five served sessions and three never served click, in one batch.
        unserved = [f"ab-unserved-{n}" for n in range(3)]
        clicks = [{"type": "click", "item_id": item, "session_id": s} for s in [*unserved, *sessions[:5]]]
        assert feed_client.post("/v1/events", json=clicks).json()["accepted"] == 8
        chat = feed_client.post("/v1/events", json=[{"type": "chat", "item_id": item}], headers=token_for(reader))
        assert chat.json()["accepted"] == 1
        expected_clicks = {v: sum(variant_of[s] == v for s in sessions[:5]) for v in (first, second)}
        expected_chats = {v: int(assign_variant(experiment, reader).version == v) for v in (first, second)}

        def counted() -> dict | None:
            answer = feed_client.get(f"/admin/experiments/{name}", headers=ADMIN_HEADERS).json()
            rows = {r["version"]: r for r in answer["variants"]}
            done = all(rows[v]["impressions"] == served[v] and rows[v]["click"] == expected_clicks[v]
                       and rows[v]["chat"] == expected_chats[v] for v in (first, second))
            return rows if done else None

        # The searcher's like and the unserved clicks were flushed no later than the reader's chat.
        rows = wait_for(counted, "the impressions and the exposed viewers' events reaching Redis")
        assert rows[first]["impressions"] > 0 and rows[second]["impressions"] > 0
        for version in (first, second):
            assert rows[version]["like"] == 0
            assert rows[version]["exposed_viewers"] == len(exposed[version])
            ctr = rows[version]["ctr"]
            assert ctr["rate"] == expected_clicks[version] / served[version]
            assert ctr["low"] <= ctr["rate"] <= ctr["high"]
        assert sum(len(viewers) for viewers in exposed.values()) == len(sessions) + 2  # + ab-warm and the reader
        stopped = feed_client.post(f"/admin/experiments/{name}/stop", json={"comment": "done"}, headers=ADMIN_HEADERS)
        assert stopped.status_code == 200, stopped.text
        wait_for(lambda: not home("ab-after").experiment, "the recommender dropping the stopped experiment")
    finally:
        feed_client.post(f"/admin/experiments/{name}/stop", json={}, headers=ADMIN_HEADERS)
        feed_client.delete(f"/admin/profiles/{profile}", headers=ADMIN_HEADERS)
        channel.close()

"""The gRPC stubs: generated from proto/ on import, importable by package path, the contract intact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from recommender._generated import PROTO_ROOT, generate_stubs, stubs_are_stale
from recommender._generated.hotfeed.v1 import recommender_pb2, recommender_pb2_grpc

FEED_REQUESTS = ("HomeFeedRequest", "ProductFeedRequest", "SimilarItemsRequest")


def _service():  # type: ignore[no-untyped-def]
    return recommender_pb2.DESCRIPTOR.services_by_name["Recommender"]


def test_service_has_the_documented_methods() -> None:
    assert [m.name for m in _service().methods] == [
        "HomeFeed", "ProductFeed", "SimilarItems", "RecordEvents", "GetPreferences", "SetPreferences",
    ]


def test_methods_take_and_return_the_documented_messages() -> None:
    types = {m.name: (m.input_type.name, m.output_type.name) for m in _service().methods}
    assert types == {
        "HomeFeed": ("HomeFeedRequest", "FeedResponse"),
        "ProductFeed": ("ProductFeedRequest", "FeedResponse"),
        "SimilarItems": ("SimilarItemsRequest", "FeedResponse"),
        "RecordEvents": ("RecordEventsRequest", "RecordEventsResponse"),
        "GetPreferences": ("GetPreferencesRequest", "Preferences"),
        "SetPreferences": ("SetPreferencesRequest", "Preferences"),
    }


def test_descriptor_keeps_the_proto_file_name_for_reflection() -> None:
    assert recommender_pb2.DESCRIPTOR.name == "hotfeed/v1/recommender.proto"
    assert recommender_pb2.DESCRIPTOR.package == "hotfeed.v1"


def test_grpc_stubs_import_the_messages_by_package_path() -> None:
    assert recommender_pb2_grpc.hotfeed_dot_v1_dot_recommender__pb2 is recommender_pb2
    assert hasattr(recommender_pb2_grpc, "RecommenderServicer")
    assert hasattr(recommender_pb2_grpc, "add_RecommenderServicer_to_server")


def test_feed_requests_share_their_common_field_numbers() -> None:
    common = {
        "user_id": 1, "session_id": 2, "recent_item_ids": 3, "region": 4, "page_size": 5, "cursor": 6,
        "excluded_categories": 7, "preferred_categories": 8, "profile": 9, "explain": 10,
    }
    for name in FEED_REQUESTS:
        fields = {f.name: f.number for f in recommender_pb2.DESCRIPTOR.message_types_by_name[name].fields}
        assert {k: fields[k] for k in common} == common, name
    assert recommender_pb2.ProductFeedRequest.DESCRIPTOR.fields_by_name["item_id"].number == 11
    assert recommender_pb2.SimilarItemsRequest.DESCRIPTOR.fields_by_name["item_id"].number == 11


def test_user_id_presence_is_tracked() -> None:
    request = recommender_pb2.HomeFeedRequest()
    assert not request.HasField("user_id")
    request.user_id = ""
    assert request.HasField("user_id")


def test_feed_response_carries_scores_explanations_and_provenance() -> None:
    response = recommender_pb2.FeedResponse(
        items=[recommender_pb2.FeedItem(item_id="i1", score=1.5, component_scores={"knn": 0.5})],
        next_cursor="c",
        profile_version="abc",
        model_version="m1",
        served_from=recommender_pb2.SERVED_FROM_FALLBACK,
        degradations=[recommender_pb2.Degradation(stage="engine", reason="timeout after 80 ms")],
    )
    again = recommender_pb2.FeedResponse.FromString(response.SerializeToString())
    assert again == response
    assert recommender_pb2.ServedFrom.Name(again.served_from) == "SERVED_FROM_FALLBACK"
    assert [v.name for v in recommender_pb2.ServedFrom.DESCRIPTOR.values] == [
        "SERVED_FROM_UNSPECIFIED", "SERVED_FROM_ENGINE", "SERVED_FROM_FALLBACK", "SERVED_FROM_CACHE",
    ]


def test_event_types_mirror_the_data_model() -> None:
    from recommender.data_model import EVENT_TYPES

    names = [v.name for v in recommender_pb2.EventType.DESCRIPTOR.values][1:]
    assert names == [f"EVENT_TYPE_{t.upper()}" for t in EVENT_TYPES]


def test_record_events_reports_per_event_rejections() -> None:
    response = recommender_pb2.RecordEventsResponse(
        accepted=1, rejected=1, rejections=[recommender_pb2.EventRejection(index=1, reason="item_id '' is empty")]
    )
    assert recommender_pb2.RecordEventsResponse.FromString(response.SerializeToString()).rejections[0].index == 1


def test_stubs_are_regenerated_when_the_proto_is_newer(tmp_path: Path) -> None:
    proto_root = tmp_path / "proto"
    shutil.copytree(PROTO_ROOT, proto_root)
    out = tmp_path / "out"
    out.mkdir()
    assert stubs_are_stale(proto_root=proto_root, out_dir=out)
    written = generate_stubs(proto_root=proto_root, out_dir=out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == [
        "hotfeed/v1/recommender_pb2.py",
        "hotfeed/v1/recommender_pb2.pyi",
        "hotfeed/v1/recommender_pb2_grpc.py",
    ]
    assert (out / "hotfeed" / "__init__.py").exists() and (out / "hotfeed" / "v1" / "__init__.py").exists()
    grpc_text = (out / "hotfeed/v1/recommender_pb2_grpc.py").read_text()
    assert "from recommender._generated.hotfeed.v1 import recommender_pb2 as" in grpc_text
    assert "\nfrom hotfeed" not in grpc_text
    assert not stubs_are_stale(proto_root=proto_root, out_dir=out)
    proto = proto_root / "hotfeed/v1/recommender.proto"
    future = (out / "hotfeed/v1/recommender_pb2.py").stat().st_mtime + 10
    os.utime(proto, (future, future))
    assert stubs_are_stale(proto_root=proto_root, out_dir=out)


def test_no_proto_folder_means_shipped_stubs_are_used(tmp_path: Path) -> None:
    assert not stubs_are_stale(proto_root=tmp_path / "absent", out_dir=tmp_path)

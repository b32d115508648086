"""Score profiles: the shipped default loads, bad profiles are rejected with field-level messages."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from recommender.errors import NotFound, ProfileRejected
from recommender.profiles import (
    COMPONENT_TYPES,
    NUMERIC_TYPES,
    FreshnessDecay,
    ItemFields,
    Knn,
    ScoreProfile,
    dump_profile,
    load_default_profile,
    load_profile,
    parse_profile,
    profile_data,
    profile_json_schema,
    profile_version,
    read_item_fields,
    read_profile_yaml,
    render_profile_yaml,
    validate_profile,
)
from recommender.settings import REPO_ROOT


@pytest.fixture(scope="module")
def fields() -> ItemFields:
    return read_item_fields(REPO_ROOT / "es_mappings")


@pytest.fixture()
def minimal() -> dict[str, Any]:
    return {"name": "test", "components": [{"type": "knn"}]}


def _rejection(data: dict[str, Any], fields: ItemFields) -> str:
    with pytest.raises(ProfileRejected) as info:
        validate_profile(data, fields=fields)
    return str(info.value)


def test_item_fields_come_from_the_mapping_file(fields: ItemFields) -> None:
    assert fields.source == "es_mappings/items.json"
    assert fields.types["bumped_at"] == "date"
    assert fields.item_fields_of(frozenset({"date"})) == ["bumped_at", "created_at"]


def test_missing_mapping_dir_is_a_config_error(tmp_path: Path) -> None:
    from recommender.errors import ConfigError

    with pytest.raises(ConfigError, match="HOTFEED_PATHS_MAPPINGS_DIR"):
        read_item_fields(tmp_path)


def test_mapping_meta_names_the_popularity_fields(tmp_path: Path) -> None:
    mapping = {"mappings": {"_meta": {"popularity_fields": ["hits"]}, "properties": {"hits": {"type": "integer"}}}}
    (tmp_path / "items.json").write_text(json.dumps(mapping))
    fields = read_item_fields(tmp_path)
    assert fields.popularity_fields == frozenset({"hits"})
    assert fields.item_fields_of(NUMERIC_TYPES) == []


def test_default_profile_loads(fields: ItemFields) -> None:
    profile = load_default_profile(fields=fields)
    assert profile.name == "default"
    assert set(c.type for c in profile.components) == set(COMPONENT_TYPES)
    assert [c.key for c in profile.components_of(FreshnessDecay)] == ["freshness_bumped", "freshness_created"]


def test_default_profile_round_trips_through_yaml(fields: ItemFields) -> None:
    profile = load_default_profile(fields=fields)
    assert parse_profile(dump_profile(profile), fields=fields) == profile


def test_minimal_profile_gets_defaults(minimal: dict[str, Any], fields: ItemFields) -> None:
    profile = validate_profile(minimal, fields=fields)
    assert profile.components == (Knn(type="knn", weight=1.0, k=100, num_candidates=400),)
    assert profile.filters.statuses == ("active",)
    assert profile.candidates == 200


def test_version_ignores_layout_and_spelled_out_defaults(minimal: dict[str, Any], fields: ItemFields) -> None:
    spelled = copy.deepcopy(minimal)
    spelled["candidates"] = 200
    spelled["components"][0]["k"] = 100
    a = validate_profile(minimal, fields=fields)
    b = validate_profile(spelled, fields=fields)
    assert re.fullmatch(r"[0-9a-f]{16}", profile_version(a))
    assert profile_version(a) == profile_version(b)


def test_version_changes_with_any_knob(minimal: dict[str, Any], fields: ItemFields) -> None:
    changed = copy.deepcopy(minimal)
    changed["components"][0]["weight"] = 1.5
    assert profile_version(validate_profile(minimal, fields=fields)) != profile_version(
        validate_profile(changed, fields=fields)
    )


def test_profiles_are_frozen(minimal: dict[str, Any], fields: ItemFields) -> None:
    profile = validate_profile(minimal, fields=fields)
    with pytest.raises(Exception):
        profile.candidates = 5  # type: ignore[misc]


def test_bad_weight_type_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"][0]["weight"] = "heavy"
    assert _rejection(minimal, fields) == "components[0].weight 'heavy' (profile 'test'): Input should be a valid number"


def test_negative_weight_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"][0]["weight"] = -1
    assert _rejection(minimal, fields) == (
        "components[0].weight -1 (profile 'test'): Input should be greater than or equal to 0"
    )


def test_unknown_component_type_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"].append({"type": "recency"})
    assert _rejection(minimal, fields) == (
        "components[1].type 'recency' (profile 'test') is not a component type; use one of "
        "['cohort_popularity', 'knn', 'freshness_decay', 'engagement', 'category_boost', 'exploration']"
    )


def test_component_without_type_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"].append({"weight": 1.0})
    assert _rejection(minimal, fields).startswith("components[1] (profile 'test') has no `type`; add one of [")


def test_unknown_field_is_rejected_with_the_known_ones(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"][0]["wieght"] = 2.0
    assert _rejection(minimal, fields) == (
        "components[0].wieght (profile 'test') is not a known field; "
        "remove it or use one of ['k', 'name', 'num_candidates', 'type', 'weight']"
    )


def test_unknown_top_level_field_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["candidate"] = 10
    assert "candidate (profile 'test') is not a known field; remove it or use one of ['candidates'," in _rejection(
        minimal, fields
    )


def test_unknown_cohort_type_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"].append({"type": "cohort_popularity", "cohort_weights": {"gendr": 1.0}})
    assert _rejection(minimal, fields) == (
        "components[1].cohort_weights.gendr (profile 'test') is not a known field; remove it or use one of "
        "['age', 'all', 'cluster', 'combined', 'gender', 'gender_age', 'platform', 'region']"
    )


def test_negative_scale_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"].append({"type": "freshness_decay", "field": "created_at", "scale_h": -1.0})
    assert _rejection(minimal, fields) == (
        "components[1].scale_h -1.0 (profile 'test'): Input should be greater than 0"
    )


def test_decay_on_a_non_date_field_names_both_ends(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"].append({"type": "freshness_decay", "field": "bumped"})
    assert _rejection(minimal, fields) == (
        "components[1].field 'bumped' (profile 'test', freshness_decay 'freshness_bumped') is not a date field "
        "of es_mappings/items.json; use one of its date fields: ['bumped_at', 'created_at']"
    )


def test_decay_on_a_popularity_child_field_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    # updated_at is a date, but of the popularity children: a parent-level decay never sees it.
    minimal["components"].append({"type": "freshness_decay", "field": "updated_at"})
    assert "components[1].field 'updated_at'" in _rejection(minimal, fields)


def test_engagement_on_a_child_field_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"].append({"type": "engagement", "factors": [{"field": "score"}]})
    numeric = fields.item_fields_of(NUMERIC_TYPES)
    assert {"likes", "chats", "views"} <= set(numeric) and "score" not in numeric
    assert _rejection(minimal, fields) == (
        "components[1].factors[0].field 'score' (profile 'test', engagement 'engagement') is not a numeric item "
        f"field of es_mappings/items.json; use one of its numeric item fields: {numeric}"
    )


def test_unknown_status_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["filters"] = {"statuses": ["active", "on_sale"]}
    assert _rejection(minimal, fields) == (
        "filters.statuses[1] 'on_sale' (profile 'test') is not an item status of recommender/data_model.py; "
        "use some of ['active', 'reserved', 'sold', 'deleted', 'sanctioned']"
    )


def test_num_candidates_below_k_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"][0].update(k=50, num_candidates=10)
    assert _rejection(minimal, fields) == (
        "components[0] (profile 'test'): num_candidates 10 is below k 50; set num_candidates >= k"
    )


def test_inverted_price_range_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["filters"] = {"price_min": 100.0, "price_max": 10.0}
    assert _rejection(minimal, fields) == "filters (profile 'test'): price_min 100.0 is above price_max 10.0; swap them"


def test_rerank_blend_outside_0_1_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["rerank"] = {"blend": 1.5}
    assert _rejection(minimal, fields) == "rerank.blend 1.5 (profile 'test'): Input should be less than or equal to 1"


def test_duplicate_component_names_are_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"] += [{"type": "freshness_decay"}, {"type": "freshness_decay", "scale_h": 24}]
    assert _rejection(minimal, fields) == (
        "profile (profile 'test'): components[2] name 'freshness_bumped_at' is already used by components[1]; "
        "give one of them a distinct `name`"
    )


def test_bad_category_prefix_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"].append({"type": "category_boost", "boosts": {"/electronics": 1.0}})
    assert _rejection(minimal, fields) == (
        "components[1].boosts (profile 'test'): category prefix '/electronics' is not a slash-separated path; "
        "write it like 'electronics/phones'"
    )


def test_all_problems_are_reported_at_once(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"][0]["weight"] = "heavy"
    minimal["candidates"] = 0
    message = _rejection(minimal, fields)
    assert message.startswith("2 problems: ")
    assert "candidates 0" in message and "components[0].weight 'heavy'" in message


def test_profile_without_components_is_rejected(fields: ItemFields) -> None:
    assert _rejection({"name": "empty", "components": []}, fields) == (
        "components (profile 'empty'): components is empty; list at least one component (see default.yaml)"
    )


def test_engagement_without_factors_is_rejected(minimal: dict[str, Any], fields: ItemFields) -> None:
    minimal["components"].append({"type": "engagement", "factors": []})
    assert _rejection(minimal, fields) == (
        "components[1].factors (profile 'test'): factors is empty; list at least one {field, factor, modifier, weight}"
    )


def test_non_mapping_profile_is_rejected(fields: ItemFields) -> None:
    with pytest.raises(ProfileRejected, match=r"profile \['a'\] is a list, not a mapping"):
        validate_profile(["a"], fields=fields)  # type: ignore[arg-type]


def test_broken_yaml_names_line_and_column(fields: ItemFields) -> None:
    with pytest.raises(ProfileRejected) as info:
        parse_profile("name: x\ncomponents: [1\n", fields=fields)
    assert str(info.value).startswith("profile YAML does not parse at line 3, column 1:")
    assert str(info.value).endswith("; fix the YAML syntax")


def test_missing_profile_file_is_not_found(tmp_path: Path, fields: ItemFields) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        load_profile(tmp_path / "nope.yaml", fields=fields)


def test_profile_file_loads(tmp_path: Path, minimal: dict[str, Any], fields: ItemFields) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(minimal))
    assert isinstance(load_profile(path, fields=fields), ScoreProfile)


def test_decayed_weight_counts_as_a_popularity_field(fields: ItemFields) -> None:
    # The indexer writes it on the children (indexer/popularity.py), whether or not it is mapped yet.
    assert "decayed_weight" in fields.popularity_fields


def test_public_names_are_exactly_all() -> None:
    import recommender.profiles as profiles_pkg

    public = {name for name in vars(profiles_pkg) if not name.startswith("_")}
    assert public == set(profiles_pkg.__all__)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(fields) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    with pytest.raises(ProfileRejected, match="anchor or alias at line 1"):
        parse_profile(bomb, fields=fields)


def test_a_deeply_nested_profile_is_refused_not_a_crash(fields) -> None:
    with pytest.raises(ProfileRejected, match="deeper than 16 levels"):
        parse_profile("[" * 20_000 + "]" * 20_000, fields=fields)


def test_an_oversized_profile_is_refused(fields) -> None:
    with pytest.raises(ProfileRejected, match="at most 65536"):
        parse_profile("# " + "x" * 70_000, fields=fields)


def test_profile_data_rendered_as_yaml_reads_back_equal(fields: ItemFields) -> None:
    default = load_default_profile(fields=fields)
    text = render_profile_yaml(profile_data(default))
    assert text == dump_profile(default)
    assert read_profile_yaml(text) == profile_data(default)
    assert parse_profile(text, fields=fields) == default


def test_invalid_data_renders_as_written_and_reads_back(minimal: dict[str, Any]) -> None:
    # The form's data may be invalid while a PM types: the YAML view still shows it.
    bad = {**minimal, "components": [{"type": "knn", "weight": -1, "k": "many"}]}
    assert read_profile_yaml(render_profile_yaml(bad)) == bad
    with pytest.raises(ProfileRejected, match=r"does not parse at line 2, column 1"):
        read_profile_yaml("name: [\n")


def test_json_schema_is_the_models_own() -> None:
    schema = profile_json_schema()
    assert schema == ScoreProfile.model_json_schema()
    knn = schema["$defs"]["Knn"]["properties"]["k"]
    assert (knn["minimum"], knn["maximum"]) == (Knn.model_fields["k"].metadata[0].ge, Knn.model_fields["k"].metadata[1].le)

"""The console's form and YAML views through the gateway, on real Redis: the profile JSON
Schema (bounds read from the pydantic models), YAML -> JSON -> YAML conversions with
field-level problems, and the admin token they need."""

from __future__ import annotations

import typing
from importlib.resources import files
from typing import Any

import annotated_types
import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import BaseModel

from api.app import create_app
from recommender.profiles import (
    COMPONENT_MODELS,
    CohortWeights,
    Diversity,
    EngagementFactor,
    Filters,
    Rerank,
    ScoreProfile,
    parse_profile,
    read_item_fields,
)
from recommender.settings import RedisSettings

# Constraint class -> (its attribute, the JSON Schema keyword).
_BOUND_KEYS = {annotated_types.Ge: ("ge", "minimum"), annotated_types.Gt: ("gt", "exclusiveMinimum"),
               annotated_types.Le: ("le", "maximum"), annotated_types.Lt: ("lt", "exclusiveMaximum")}
_KEYWORDS = {keyword for _, keyword in _BOUND_KEYS.values()}
_MODELS: tuple[type[BaseModel], ...] = (ScoreProfile, Filters, Rerank, Diversity, CohortWeights, EngagementFactor,
                                        *COMPONENT_MODELS.values())
DEFAULT_YAML = files("recommender.profiles").joinpath("default.yaml").read_text(encoding="utf-8")


def _declared_bounds(model: type[BaseModel]) -> dict[str, dict[str, float]]:
    """Return the numeric bounds each field of ``model`` declares, as JSON Schema keywords, read from the model."""
    out: dict[str, dict[str, float]] = {}
    for field_name, field in model.model_fields.items():
        metadata = list(field.metadata)
        # `X | None` keeps X's constraints inside the union's Annotated member, dict[str, X] in its value type.
        for arg in typing.get_args(field.annotation):
            if typing.get_origin(arg) is typing.Annotated:
                for extra in typing.get_args(arg)[1:]:
                    metadata.extend(getattr(extra, "metadata", [extra]))
        bounds = {}
        for constraint in metadata:
            for kind, (attribute, keyword) in _BOUND_KEYS.items():
                if isinstance(constraint, kind):
                    bounds[keyword] = getattr(constraint, attribute)
        if bounds:
            out[field_name] = bounds
    return out


def _schema_bounds(prop: dict[str, Any]) -> dict[str, float]:
    variants = [*prop.get("anyOf", [prop]), prop.get("additionalProperties") or {}]
    return {k: v for variant in variants for k, v in variant.items() if k in _KEYWORDS}


@pytest.fixture
def fields(admin_client: TestClient):
    return read_item_fields(admin_client.app.state.settings.paths.mappings_dir)


def test_the_schema_carries_every_bound_the_models_declare(admin_client: TestClient) -> None:
    response = admin_client.get("/admin/profile-schema")
    assert response.status_code == 200
    schema = response.json()
    defs = {**schema["$defs"], ScoreProfile.__name__: schema}
    checked = 0
    for model in _MODELS:
        properties = defs[model.__name__]["properties"]
        assert list(properties) == list(model.model_fields), model.__name__
        for field_name, bounds in _declared_bounds(model).items():
            assert _schema_bounds(properties[field_name]) == bounds, f"{model.__name__}.{field_name}"
            checked += 1
    # Weights, decays, k, candidates, blend, ...: the walk above must have found them.
    assert checked >= 30, checked
    assert _declared_bounds(COMPONENT_MODELS["freshness_decay"])["decay"] == {"exclusiveMinimum": 0,
                                                                               "exclusiveMaximum": 1}
    mapping = schema["properties"]["components"]["items"]["discriminator"]["mapping"]
    assert sorted(mapping) == sorted(COMPONENT_MODELS)


def test_yaml_to_json_to_yaml_keeps_the_profile(admin_client: TestClient, fields) -> None:
    parsed = admin_client.post("/admin/profiles/default/parse", content=DEFAULT_YAML.encode())
    assert parsed.status_code == 200, parsed.text
    body = parsed.json()
    assert body["valid"] is True and body["problems"] == []
    data = body["profile"]
    assert data == ScoreProfile.model_validate(yaml.safe_load(DEFAULT_YAML)).model_dump(mode="json")
    rendered = admin_client.post("/admin/profiles/default/render", json=data)
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["valid"] is True and rendered.json()["problems"] == []
    assert parse_profile(rendered.json()["yaml"], fields=fields) == parse_profile(DEFAULT_YAML, fields=fields)
    # The form's data in, the same data out: both views stay in sync.
    again = admin_client.post("/admin/profiles/default/parse", content=rendered.json()["yaml"].encode()).json()
    assert again["profile"] == data
    # A short profile comes back with its defaults spelled out.
    short = admin_client.post("/admin/profiles/summer/parse",
                              content=b"name: summer\ncomponents:\n  - {type: knn, weight: 2}\n").json()
    assert short["profile"]["components"] == [{"name": None, "weight": 2.0, "type": "knn", "k": 100,
                                               "num_candidates": 400}]
    assert short["profile"]["rerank"] == {"blend": 0.5}
    # Nothing is stored by either.
    assert admin_client.get("/admin/profiles").json() == {"profiles": [], "revision": 0}


def test_invalid_input_gives_field_level_problems(admin_client: TestClient) -> None:
    bad_yaml = b"name: summer\ncomponents:\n  - {type: knn, weight: -2}\n  - {type: freshness_decay, decay: 1.5}\n"
    parsed = admin_client.post("/admin/profiles/summer/parse", content=bad_yaml).json()
    assert parsed["valid"] is False
    assert [p["loc"] for p in parsed["problems"]] == ["components[0].weight", "components[1].decay"]
    assert "greater than or equal to 0" in parsed["problems"][0]["message"]
    # An invalid profile comes back as written, so the form shows what the YAML says.
    assert parsed["profile"]["components"][0] == {"type": "knn", "weight": -2}

    form = {"name": "summer", "components": [{"type": "freshness_decay", "decay": 1.5, "weight": 1.0},
                                             {"type": "exploration", "seed": -1}]}
    rendered = admin_client.post("/admin/profiles/summer/render", json=form).json()
    assert rendered["valid"] is False and "decay: 1.5" in rendered["yaml"]
    assert [p["loc"] for p in rendered["problems"]] == ["components[0].decay", "components[1].seed"]
    assert yaml.safe_load(rendered["yaml"]) == form

    renamed = admin_client.post("/admin/profiles/summer/render", json={"name": "winter", "components": [{"type": "knn"}]}).json()
    assert renamed["problems"][0]["loc"] == "name" and "set `name: summer`" in renamed["problems"][0]["message"]
    syntax = admin_client.post("/admin/profiles/summer/parse", content=b"name: summer\ncomponents: [\n").json()
    assert syntax["profile"] is None and syntax["problems"][0]["loc"] == "profile"
    assert "does not parse at line" in syntax["problems"][0]["message"]
    not_json = admin_client.post("/admin/profiles/summer/render", content=b"{\"name\": [")
    assert not_json.status_code == 422 and "does not parse" in not_json.json()["detail"]
    empty = admin_client.post("/admin/profiles/summer/render", content=b" ")
    assert empty.status_code == 422 and "is empty" in empty.json()["detail"]
    assert admin_client.post("/admin/profiles/Summer!/parse", content=bad_yaml).status_code == 400


def test_the_schema_and_conversions_need_an_admin_token(make_gateway_settings, redis_settings: RedisSettings) -> None:
    with TestClient(create_app(make_gateway_settings(redis=redis_settings))) as client:
        calls = [client.get("/admin/profile-schema"),
                 client.post("/admin/profiles/summer/parse", content=DEFAULT_YAML.encode()),
                 client.post("/admin/profiles/summer/render", json={"name": "summer"})]
        for response in calls:
            assert response.status_code == 401 and "Authorization: Bearer" in response.json()["detail"]

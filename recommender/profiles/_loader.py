"""Parse, validate, serialize and version score profiles (pure: no store, no clock).

Validation runs in two passes. The schema pass checks shape, types and ranges. The
reference pass checks every name that points outside the profile: date and numeric fields
against the items mapping, statuses against the data model. Either pass reports all of
its problems at once in one ProfileRejected, each naming the field, the bad value, the
profile, and what to use instead.
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from recommender.data_model import ITEM_STATUSES
from recommender.errors import NotFound, ProfileRejected
from recommender.profiles._mapping import NUMERIC_TYPES, ItemFields
from recommender.profiles._schema import (
    COMPONENT_MODELS,
    COMPONENT_TYPES,
    Engagement,
    FreshnessDecay,
    ScoreProfile,
)

__all__ = [
    "validate_profile",
    "parse_profile",
    "load_profile",
    "load_default_profile",
    "dump_profile",
    "profile_data",
    "profile_version",
    "read_profile_yaml",
    "render_profile_yaml",
]

_DATE_TYPES = frozenset({"date", "date_nanos"})


def _unwrap_model(annotation: Any) -> Any:
    """Return the pydantic model inside Optional/tuple/Annotated, the component marker, or None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap_model(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if all(a in COMPONENT_MODELS.values() for a in args) and len(args) > 1:
            return "component"
        return _unwrap_model(args[0]) if len(args) == 1 else None
    if origin in (tuple, list):
        return _unwrap_model(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Return the model that holds the last element of ``loc``, following the schema."""
    current: Any = ScoreProfile
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if current == "component":
            current = COMPONENT_MODELS.get(part)
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = _unwrap_model(current.model_fields[part].annotation)
        else:
            return None
    return current if isinstance(current, type) else None


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(previous, int) and part in COMPONENT_TYPES:
            pass  # pydantic adds the discriminator tag to the location; the index says enough
        else:
            out += f".{part}" if out else str(part)
        previous = part
    return out or "profile"


def _schema_problem(err: Mapping[str, Any], profile_name: str) -> tuple[str, str]:
    """Return the location and the message of one schema error."""
    loc = tuple(err["loc"])
    where = _where(loc)
    return where, _schema_message(err, loc, where, profile_name)


def _schema_message(err: Mapping[str, Any], loc: tuple[Any, ...], where: str, profile_name: str) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(loc)
        known = sorted(model.model_fields) if model else []
        return f"{where} (profile {profile_name!r}) is not a known field; remove it or use one of {known}"
    if kind == "union_tag_invalid":
        return (
            f"{where}.type {ctx.get('tag')!r} (profile {profile_name!r}) is not a component type; "
            f"use one of {list(COMPONENT_TYPES)}"
        )
    if kind == "union_tag_not_found":
        return f"{where} (profile {profile_name!r}) has no `type`; add one of {list(COMPONENT_TYPES)}"
    if kind == "missing":
        return f"{where} (profile {profile_name!r}) is required; add it"
    if kind == "value_error":
        # Our own validators already word the value and the fix.
        return f"{where} (profile {profile_name!r}): {str(ctx.get('error', err['msg']))}"
    return f"{where} {err.get('input')!r} (profile {profile_name!r}): {err['msg']}"


def _reference_problems(profile: ScoreProfile, fields: ItemFields) -> list[tuple[str, str]]:
    """Return the location and the message of every reference to a field or status that does not exist."""
    problems: list[tuple[str, str]] = []
    name = profile.name
    date_fields = fields.item_fields_of(_DATE_TYPES)
    numeric_fields = fields.item_fields_of(NUMERIC_TYPES)
    for i, comp in enumerate(profile.components):
        if isinstance(comp, FreshnessDecay) and comp.field not in date_fields:
            problems.append((
                f"components[{i}].field",
                f"components[{i}].field {comp.field!r} (profile {name!r}, {comp.type} {comp.key!r}) is not a date "
                f"field of {fields.source}; use one of its date fields: {date_fields}"
            ))
        if isinstance(comp, Engagement):
            for j, factor in enumerate(comp.factors):
                if factor.field not in numeric_fields:
                    problems.append((
                        f"components[{i}].factors[{j}].field",
                        f"components[{i}].factors[{j}].field {factor.field!r} (profile {name!r}, {comp.type} "
                        f"{comp.key!r}) is not a numeric item field of {fields.source}; "
                        f"use one of its numeric item fields: {numeric_fields}"
                    ))
    for j, status in enumerate(profile.filters.statuses):
        if status not in ITEM_STATUSES:
            problems.append((
                f"filters.statuses[{j}]",
                f"filters.statuses[{j}] {status!r} (profile {name!r}) is not an item status of "
                f"recommender/data_model.py; use some of {list(ITEM_STATUSES)}"
            ))
    return problems


def _rejected(problems: list[tuple[str, str]]) -> ProfileRejected:
    messages = [message for _, message in problems]
    text = messages[0] if len(messages) == 1 else f"{len(messages)} problems: " + "; ".join(messages)
    return ProfileRejected(text, problems=tuple(problems))


def validate_profile(data: Mapping[str, Any], *, fields: ItemFields) -> ScoreProfile:
    """Return the validated profile built from plain data (parsed YAML or JSON).

    Raises ProfileRejected listing every schema problem, or else every bad reference.
    """
    if not isinstance(data, Mapping):
        raise ProfileRejected(
            f"profile {data!r} is a {type(data).__name__}, not a mapping; write it as `name: ...` keys (see default.yaml)"
        )
    raw_name = data.get("name")
    profile_name = raw_name if isinstance(raw_name, str) else "<unnamed>"
    try:
        profile = ScoreProfile.model_validate(data)
    except ValidationError as exc:
        raise _rejected([_schema_problem(e, profile_name) for e in exc.errors()]) from None
    problems = _reference_problems(profile, fields)
    if problems:
        raise _rejected(problems)
    return profile


# A profile is a few kilobytes and a few levels deep; anything far beyond is a mistake or an
# attack (a 400-byte alias bomb expands to tens of megabytes; 100k nested lists overflow the
# parser's recursion), refused before it is built.
MAX_PROFILE_BYTES = 64 * 1024
MAX_PROFILE_DEPTH = 16


def _check_yaml_shape(text: str | bytes) -> None:
    """Raise ProfileRejected for a profile too long, too deep, or using YAML anchors/aliases.

    Walks the parser's event stream, which is iterative: nothing is built or expanded yet.
    """
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > MAX_PROFILE_BYTES:
        raise ProfileRejected(f"profile is {size} bytes; at most {MAX_PROFILE_BYTES} are accepted")
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                mark = event.start_mark
                raise ProfileRejected(f"profile uses a YAML anchor or alias at line {mark.line + 1}; write values out")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_PROFILE_DEPTH:
                    raise ProfileRejected(f"profile nests deeper than {MAX_PROFILE_DEPTH} levels at line "
                                          f"{event.start_mark.line + 1}; a profile is a few levels deep")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return  # safe_load below reports the syntax error with its position


def read_profile_yaml(text: str | bytes) -> Any:
    """Return the plain data (not validated) written as YAML (JSON is YAML too) in ``text``.

    Raises ProfileRejected for an oversized, over-deep or aliased document, or unparseable
    YAML (with line and column).
    """
    _check_yaml_shape(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileRejected(f"profile YAML does not parse{at}: {problem}; fix the YAML syntax") from None


def parse_profile(text: str | bytes, *, fields: ItemFields) -> ScoreProfile:
    """Return the validated profile written as YAML (JSON is YAML too) in ``text``.

    Raises ProfileRejected like ``read_profile_yaml``, or for an invalid profile.
    """
    return validate_profile(read_profile_yaml(text), fields=fields)


def load_profile(path: Path, *, fields: ItemFields) -> ScoreProfile:
    """Return the validated profile stored in the YAML file ``path``.

    Raises NotFound when the file does not exist and ProfileRejected when it is invalid.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"profile file {str(path)!r} does not exist; pass the path of a profile YAML") from None
    return parse_profile(text, fields=fields)


def load_default_profile(*, fields: ItemFields) -> ScoreProfile:
    """Return the profile shipped in ``recommender/profiles/default.yaml``."""
    return parse_profile(files("recommender.profiles").joinpath("default.yaml").read_text(encoding="utf-8"), fields=fields)


def profile_data(profile: ScoreProfile) -> dict[str, Any]:
    """Return the profile as plain JSON data, every knob spelled out in schema order.

    None stays: for some knobs (diversity.max_per_category) it means "off", not "default".
    """
    return profile.model_dump(mode="json")


def render_profile_yaml(data: Any) -> str:
    """Return plain data (a profile's, valid or not) as YAML, keys in the order given."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def dump_profile(profile: ScoreProfile) -> str:
    """Return the profile as YAML, every knob spelled out; ``parse_profile`` reads it back equal."""
    return render_profile_yaml(profile_data(profile))


def profile_version(profile: ScoreProfile) -> str:
    """Return a 16-hex-digit content hash of the profile (defaults included, key order ignored).

    The same content has the same version however its YAML is laid out and whichever defaults
    it spells out. Any change, even to the description, gives a new version, so a cursor made
    under an older profile is recognised as such.
    """
    canonical = json.dumps(profile_data(profile), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

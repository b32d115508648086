"""The field names and types of the items index, read from ``es_mappings/items.json``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from recommender.engine.dialect import ITEMS_MAPPING_FILE, load_items_mapping
from recommender.errors import ConfigError
from recommender.settings import REPO_ROOT

__all__ = ["POPULARITY_FIELDS", "NUMERIC_TYPES", "ItemFields", "read_item_fields"]

# The items index maps parents and children in one flat property list; these belong to the
# popularity children (join relation item -> popularity), everything else to the item.
# A mapping may list them itself under mappings._meta.popularity_fields, which then wins.
POPULARITY_FIELDS: frozenset[str] = frozenset(
    {"cohort", "score", "decayed_weight", "count_1h", "count_24h", "count_7d", "updated_at"}
)
NUMERIC_TYPES: frozenset[str] = frozenset(
    {"byte", "short", "integer", "long", "float", "half_float", "double", "scaled_float", "unsigned_long"}
)


@dataclass(frozen=True)
class ItemFields:
    """Field name -> mapping type of the items index, and where that came from."""

    types: Mapping[str, str]
    # Shown in messages, e.g. "es_mappings/items.json".
    source: str
    popularity_fields: frozenset[str] = field(default=POPULARITY_FIELDS)

    def item_fields_of(self, types: frozenset[str]) -> list[str]:
        """Return the sorted item (parent) fields whose mapping type is in ``types``."""
        return sorted(n for n, t in self.types.items() if t in types and n not in self.popularity_fields)


def read_item_fields(mappings_dir: Path) -> ItemFields:
    """Return the fields of ``<mappings_dir>/items.json`` (pass ``settings.paths.mappings_dir``).

    Raises ConfigError when the file is missing or has no ``mappings.properties``.
    """
    path = Path(mappings_dir) / ITEMS_MAPPING_FILE
    doc = load_items_mapping(Path(mappings_dir))
    try:
        props = doc["mappings"]["properties"]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"items mapping {str(path)!r} has no readable mappings.properties ({exc}); restore it from git") from None
    try:
        source = str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        source = str(path)
    types = {name: spec.get("type", "object") for name, spec in props.items()}
    meta = doc["mappings"].get("_meta") or {}
    children = frozenset(meta.get("popularity_fields", POPULARITY_FIELDS))
    return ItemFields(types=MappingProxyType(types), source=source, popularity_fields=children)

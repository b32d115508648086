"""ProfileStore on real Redis: versions, history, rollback, delete, revision, the shipped default."""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType

import pytest

from recommender.errors import InvalidRequest, NotFound, ProfileRejected, StoreUnavailable
from recommender.profiles import ItemFields, dump_profile, load_default_profile, profile_version, read_item_fields
from recommender.settings import REPO_ROOT, RedisSettings
from recommender.stores import open_redis
from recommender.stores.profiles import MAX_VERSIONS, ProfileStore

MINIMAL = "name: {name}\ncomponents:\n  - type: knn\n    weight: {weight}\n"


def _yaml(name: str = "summer", weight: float = 1.0) -> str:
    return MINIMAL.format(name=name, weight=weight)


@pytest.fixture(scope="module")
def fields() -> ItemFields:
    return read_item_fields(REPO_ROOT / "es_mappings")


@pytest.fixture
def store(redis_settings: RedisSettings, fields: ItemFields) -> Iterator[ProfileStore]:
    s = ProfileStore(redis_settings, fields=fields)
    yield s
    s.client.close()


def _keys(redis_settings: RedisSettings) -> list[str]:
    client = open_redis(redis_settings)
    try:
        return sorted(client.scan_iter(match=f"{redis_settings.key_prefix}*"))
    finally:
        client.close()


def test_save_stores_a_version_and_makes_it_active(store: ProfileStore) -> None:
    saved = store.save("summer", _yaml(), author="pm@example.com")
    assert saved.name == "summer"
    assert saved.version == profile_version(saved.profile)
    assert saved.author == "pm@example.com"
    active = store.active("summer")
    assert active == saved
    assert active.text == _yaml()
    assert store.names() == ["summer"]


def test_same_content_keeps_one_version_and_moves_it_to_the_top(store: ProfileStore) -> None:
    first = store.save("summer", _yaml(weight=1.0))
    second = store.save("summer", _yaml(weight=2.0))
    again = store.save("summer", "# same content, new comment\n" + _yaml(weight=1.0))
    assert again.version == first.version
    assert [p.version for p in store.history("summer")] == [first.version, second.version]
    assert store.active("summer").text.startswith("# same content")


def test_history_is_newest_first_and_limited(store: ProfileStore) -> None:
    versions = [store.save("summer", _yaml(weight=w)).version for w in (1.0, 2.0, 3.0)]
    assert [p.version for p in store.history("summer")] == versions[::-1]
    assert [p.version for p in store.history("summer", limit=2)] == versions[:0:-1]
    assert store.history("nothing-here") == []
    with pytest.raises(InvalidRequest, match="limit"):
        store.history("summer", limit=0)


def test_activate_rolls_back_and_forward(store: ProfileStore) -> None:
    old = store.save("summer", _yaml(weight=1.0))
    new = store.save("summer", _yaml(weight=2.0))
    before = store.revision()
    assert store.activate("summer", old.version).version == old.version
    assert store.active("summer").version == old.version
    assert store.revision() == before + 1
    store.activate("summer", new.version)
    assert store.active("summer").version == new.version
    # Rollback does not rewrite the history order: it lists saves.
    assert [p.version for p in store.history("summer")] == [new.version, old.version]


def test_activate_unknown_version_is_not_found(store: ProfileStore) -> None:
    store.save("summer", _yaml())
    with pytest.raises(NotFound, match="'summer'.*'0123456789abcdef'"):
        store.activate("summer", "0123456789abcdef")
    with pytest.raises(NotFound, match="16 hex digits"):
        store.activate("summer", "not-a-version")
    with pytest.raises(NotFound):
        store.activate("never-saved", "0123456789abcdef")
    assert store.get_version("summer", "0123456789abcdef") is None


def test_invalid_yaml_is_rejected_and_nothing_stored(store: ProfileStore, redis_settings: RedisSettings) -> None:
    with pytest.raises(ProfileRejected, match="does not parse at line 3"):
        store.save("summer", "name: summer\ncomponents: [\n")
    with pytest.raises(ProfileRejected, match=r"components\[0\]\.weight"):
        store.save("summer", "name: summer\ncomponents:\n  - {type: knn, weight: -1.0}\n")
    with pytest.raises(ProfileRejected, match="components\\[0\\].field 'no_such_date'"):
        store.save(
            "summer",
            "name: summer\ncomponents:\n  - {type: freshness_decay, field: no_such_date, scale_h: 1}\n",
        )
    assert store.revision() == 0
    assert store.active("summer") is None
    assert store.names() == []
    assert _keys(redis_settings) == []


def test_name_in_yaml_must_match(store: ProfileStore) -> None:
    with pytest.raises(ProfileRejected, match="'winter' in the YAML does not match .*'summer'.*name: summer"):
        store.save("summer", _yaml(name="winter"))
    assert store.active("summer") is None


@pytest.mark.parametrize("bad", ["", "Summer", "-x", "a" * 65, "a b", "a/b", "é"])
def test_bad_names_are_invalid_requests(store: ProfileStore, bad: str) -> None:
    with pytest.raises(InvalidRequest, match="profile name"):
        store.save(bad, _yaml(name="x"))
    with pytest.raises(InvalidRequest, match="profile name"):
        store.active(bad)


def test_delete_removes_every_version(store: ProfileStore, redis_settings: RedisSettings) -> None:
    store.save("summer", _yaml(weight=1.0))
    store.save("summer", _yaml(weight=2.0))
    before = store.revision()
    assert store.delete("summer") is True
    assert store.revision() == before + 1
    assert store.active("summer") is None
    assert store.history("summer") == []
    assert store.names() == []
    assert store.delete("summer") is False
    assert store.revision() == before + 1
    assert [k for k in _keys(redis_settings) if "summer" in k] == []


def test_default_cannot_be_deleted(store: ProfileStore) -> None:
    store.ensure_default()
    with pytest.raises(InvalidRequest, match="'default' cannot be deleted"):
        store.delete("default")
    assert store.active("default") is not None


def test_revision_counts_every_change(store: ProfileStore) -> None:
    assert store.revision() == 0
    a = store.save("summer", _yaml(weight=1.0))
    store.save("summer", _yaml(weight=2.0))
    store.activate("summer", a.version)
    store.save("winter", _yaml(name="winter"))
    store.delete("winter")
    assert store.revision() == 5
    with pytest.raises(ProfileRejected):
        store.save("summer", "components: nope")
    assert store.revision() == 5


def test_ensure_default_stores_the_shipped_profile_once(store: ProfileStore, fields: ItemFields) -> None:
    first = store.ensure_default()
    assert first.name == "default"
    assert first.profile == load_default_profile(fields=fields)
    assert "# The default score profile" in first.text
    assert store.revision() == 1
    assert store.ensure_default() == first
    assert store.revision() == 1


def test_ensure_default_keeps_an_edited_default(store: ProfileStore, fields: ItemFields) -> None:
    edited = dump_profile(load_default_profile(fields=fields)).replace("blend: 0.5", "blend: 0.8")
    saved = store.save("default", edited, author="pm")
    assert store.ensure_default() == saved


def test_a_version_that_stopped_validating_is_rejected_on_read(
    store: ProfileStore, redis_settings: RedisSettings, fields: ItemFields
) -> None:
    good = store.save("summer", _yaml())
    dated = store.save(
        "summer",
        "name: summer\ncomponents:\n  - {type: freshness_decay, field: bumped_at, scale_h: 1}\n",
    )
    # Another process whose items mapping no longer has `bumped_at`.
    types = {k: v for k, v in fields.types.items() if k != "bumped_at"}
    changed = ProfileStore(
        redis_settings, fields=ItemFields(types=MappingProxyType(types), source="changed.json"), client=store.client
    )
    with pytest.raises(ProfileRejected, match=f"'summer' version '{dated.version}' no longer validates.*'bumped_at'"):
        changed.active("summer")
    with pytest.raises(ProfileRejected, match="no longer validates"):
        changed.activate("summer", dated.version)
    assert [p.version for p in changed.history("summer")] == [good.version]
    assert changed.activate("summer", good.version).version == good.version
    assert store.active("summer").version == good.version


def test_ensure_default_replaces_a_default_that_stopped_validating(
    store: ProfileStore, redis_settings: RedisSettings, fields: ItemFields
) -> None:
    price_only = (
        "name: default\ncomponents:\n  - type: engagement\n    factors: [{field: price, factor: 1.0}]\n"
    )
    bad_now = store.save("default", price_only)
    # Another process whose items mapping no longer has `price` (the shipped default does not use it).
    types = {k: v for k, v in fields.types.items() if k != "price"}
    changed = ProfileStore(
        redis_settings, fields=ItemFields(types=MappingProxyType(types), source="changed.json"), client=store.client
    )
    replaced = changed.ensure_default()
    assert replaced.profile == load_default_profile(fields=fields)
    assert changed.active("default").version == replaced.version
    # The unusable version is kept for the record, only not listed where it cannot be served.
    assert store.get_version("default", bad_now.version) is not None
    assert [p.version for p in changed.history("default")] == [replaced.version]


def test_ensure_default_fails_when_the_shipped_default_does_not_validate(
    store: ProfileStore, redis_settings: RedisSettings, fields: ItemFields
) -> None:
    types = {k: v for k, v in fields.types.items() if k != "bumped_at"}
    changed = ProfileStore(
        redis_settings, fields=ItemFields(types=MappingProxyType(types), source="changed.json"), client=store.client
    )
    with pytest.raises(ProfileRejected, match="'bumped_at'"):
        changed.ensure_default()
    assert store.revision() == 0


def test_old_versions_are_trimmed_but_active_stays(store: ProfileStore) -> None:
    versions = [store.save("summer", _yaml(weight=float(w))).version for w in range(1, MAX_VERSIONS + 3)]
    history = store.history("summer", limit=MAX_VERSIONS + 10)
    assert len(history) == MAX_VERSIONS
    assert history[0].version == versions[-1]
    assert store.get_version("summer", versions[0]) is None
    assert store.get_version("summer", versions[2]) is not None


def test_redis_down_is_store_unavailable(fields: ItemFields) -> None:
    down = RedisSettings(url="redis://127.0.0.1:1/0", timeout_ms=200, key_prefix="hftest:down:")
    store = ProfileStore(down, fields=fields)
    with pytest.raises(StoreUnavailable, match="127.0.0.1:1.*hotfeed services up"):
        store.revision()
    with pytest.raises(StoreUnavailable):
        store.save("summer", _yaml())

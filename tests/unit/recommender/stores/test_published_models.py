"""The published-model pointer as stored in Redis: JSON in, the same publish out, junk refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recommender.errors import ConfigError
from recommender.stores.published_models import PublishedModel

KEY = "hotfeed:model:current"


def test_a_publish_round_trips_through_its_json():
    published = PublishedModel(version="tailnet-0123456789ab", path=Path("/models/tailnet-0123456789ab.pt"),
                               published_at=1_700_000_000.5, previous="tailnet-ba5eba11c0de")
    assert PublishedModel.from_json(published.to_json(), key=KEY) == published
    assert json.loads(published.to_json()) == {"version": "tailnet-0123456789ab",
                                               "path": "/models/tailnet-0123456789ab.pt",
                                               "published_at": 1_700_000_000.5, "previous": "tailnet-ba5eba11c0de"}


def test_the_first_publish_has_no_previous_version():
    text = '{"version": "gru4rec-0123456789ab", "path": "/m.pt", "published_at": 1, "previous": null}'
    assert PublishedModel.from_json(text, key=KEY).previous is None


@pytest.mark.parametrize("text", ["not json", "[]", '{"version": "v"}', '{"version": "", "path": "/m.pt", '
                                  '"published_at": 1}', '{"version": "v", "path": "/m.pt", "published_at": "soon"}'])
def test_anything_else_is_refused_naming_the_key_and_value(text):
    with pytest.raises(ConfigError) as caught:
        PublishedModel.from_json(text, key=KEY)
    assert repr(KEY) in str(caught.value) and repr(text[:120]) in str(caught.value)
    assert "hotfeed model publish" in str(caught.value)

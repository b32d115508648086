"""docker-compose.yml parses and pins the same engine and Redis versions as the local scripts."""

from __future__ import annotations

import re

import yaml

from devservices import versions
from recommender.settings import REPO_ROOT


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_elasticsearch_image_matches_the_pinned_version():
    image = _compose()["services"]["elasticsearch"]["image"]
    assert image.endswith(f":{versions.ELASTICSEARCH_VERSION}")


def test_compose_redis_has_the_pinned_major_and_aof():
    redis = _compose()["services"]["redis"]
    assert re.search(rf":{versions.REDIS_MAJOR}(\.|-|$)", redis["image"])
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]


def test_every_compose_service_has_a_healthcheck():
    services = _compose()["services"]
    assert {name for name, svc in services.items() if "healthcheck" not in svc} == set()

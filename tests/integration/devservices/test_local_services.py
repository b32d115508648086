"""`hotfeed services` against the real machine: status of the running services and clear errors."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from recommender.errors import ServiceSetupError
from devservices.local import ElasticsearchNode, OpenSearchNode, RedisService


def _hotfeed(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "recommender.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_status_shows_versions_and_the_join_and_knn_plugins_on_opensearch():
    out = _hotfeed("services", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "up" in lines["redis"] and " 7." in lines["redis"]
    assert "2.19.1" in lines["opensearch"]
    assert "parent-join" in lines["opensearch"] and "opensearch-knn" in lines["opensearch"]
    assert "8.15.5" in lines["elasticsearch"]


def test_up_is_idempotent_on_running_services():
    out = _hotfeed("services", "up")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" up ") == 3


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_a_port_held_by_another_program_is_a_clear_error(base_settings, busy_port):
    settings = base_settings.services.model_copy(update={"opensearch_port": busy_port})
    with pytest.raises(ServiceSetupError, match=f"port {busy_port} is in use by another program"):
        OpenSearchNode(settings).up()


def test_a_port_held_by_another_program_is_a_clear_error_for_redis(base_settings, busy_port):
    settings = base_settings.services.model_copy(update={"redis_port": busy_port})
    with pytest.raises(ServiceSetupError, match="HOTFEED_SERVICES_REDIS_PORT"):
        RedisService(settings).up()


def test_missing_java_is_a_clear_error(base_settings, tmp_path):
    settings = base_settings.services.model_copy(
        update={"java_home": tmp_path / "no-jdk", "elasticsearch_port": 1, "dir": tmp_path}
    )
    with pytest.raises(ServiceSetupError, match="Java 17\\+ not found.*HOTFEED_SERVICES_JAVA_HOME"):
        ElasticsearchNode(settings).up()


def test_unknown_engine_name_is_one_clear_line():
    out = _hotfeed("services", "status", env={"HOTFEED_ENGINE": "solr"})
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "HOTFEED_ENGINE='solr'" in out.stderr and "Traceback" not in out.stderr


def test_unknown_service_name_is_one_clear_line():
    out = _hotfeed("services", "up", "--only", "mongodb")
    assert out.returncode == 1
    assert "unknown service(s) ['mongodb']" in out.stderr and "Traceback" not in out.stderr

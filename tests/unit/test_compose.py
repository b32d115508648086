"""docker-compose.yml describes the whole stack correctly, without a Docker engine.

Structure: the pinned engine and Redis versions, a health check on every service, the
hotfeed services on the image of ./Dockerfile and started after `init`, ports on 127.0.0.1
away from the local `hotfeed services` and `serve`/`gateway` defaults, secrets only from
deploy/hotfeed.env, every `hotfeed` command line accepted by the real CLI parser, Prometheus
scraping the recommender's metrics port. `docker-compose config -q` validates the file against
the Compose schema (CI installs docker-compose; without it the test fails, it is never skipped).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from devservices import versions
from recommender.cli import build_parser
from recommender.settings import (
    REPO_ROOT,
    GatewaySettings,
    ServerSettings,
    ServicesSettings,
    Settings,
    env_var,
)

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / "deploy" / "hotfeed.env.example"
ENV_FILE = "deploy/hotfeed.env"
HOTFEED_IMAGE = "hotfeed:local"
HOTFEED_SERVICES = {"init", "recommender", "gateway", "indexer", "scheduler"}
LONG_RUNNING = HOTFEED_SERVICES - {"init"}
EVERY_SERVICE = HOTFEED_SERVICES | {"elasticsearch", "redis", "prometheus"}
# What the stack must run somewhere (init, scheduler or a service of its own).
REQUIRED_JOBS = {
    "serve", "gateway", "index incremental", "index full", "cluster run", "cluster schedule", "train", "retrain",
    "model refresh", "data synth",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PASSPHRASE", re.I)
# A command line in a shell script: `hotfeed` where a command starts, up to the next operator.
_HOTFEED_CALL = re.compile(r"(?:^|[;&|(!]|\b(?:exec|then|do|else|if))\s*hotfeed\s+([^;&|)\n]*)", re.M)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _services() -> dict[str, dict]:
    return _compose()["services"]


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _env_files(service: dict) -> list[str]:
    files = service.get("env_file") or []
    return [files] if isinstance(files, str) else list(files)


def _example_env() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _host_ports(service: dict) -> list[tuple[str, int, int]]:
    """Return (bind address, host port, container port) of each published port."""
    published = []
    for spec in service.get("ports") or []:
        assert isinstance(spec, str), f"use the short port syntax 'ADDRESS:HOST:CONTAINER', not {spec!r}"
        address, host, container = spec.split(":")
        published.append((address, int(host), int(container.split("/")[0])))
    return published


def _known_setting_variables() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        section = field.annotation
        for name, info in section.model_fields.items():
            names.add(env_var(section, name))
            choices = getattr(info.validation_alias, "choices", ()) or ()
            names.update(c for c in choices if isinstance(c, str) and c.startswith("HOTFEED_"))
    return names


def _script_of(entrypoint: list[str]) -> Path:
    """Return the repository file an entrypoint like ["bash", "/app/deploy/init.sh"] runs."""
    assert entrypoint[0] in ("bash", "sh") and entrypoint[1].startswith("/app/"), entrypoint
    return REPO_ROOT / entrypoint[1].removeprefix("/app/")


def _shell_calls(text: str) -> list[list[str]]:
    """Return the argument lists of the `hotfeed` calls in shell text; variables become "1"."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    calls = []
    for match in _HOTFEED_CALL.finditer(code):
        calls.append(["1" if "$" in word else word for word in shlex.split(match.group(1))])
    return calls


def _hotfeed_calls(name: str, service: dict) -> list[list[str]]:
    """Return every `hotfeed` argument list a service runs: its command or script, and its health check."""
    calls = []
    entrypoint = service.get("entrypoint")
    if entrypoint:
        calls += _shell_calls(_script_of(entrypoint).read_text())
    else:
        calls.append(list(service["command"]))
    test = service["healthcheck"]["test"]
    if test[0] == "CMD-SHELL":
        calls += _shell_calls(test[1])
    elif "hotfeed" in test:
        calls.append(test[test.index("hotfeed") + 1:])
    return calls


def _parse(argv: list[str]):
    parser = build_parser()
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code in (0, None):  # --version, --help
            return None
        pytest.fail(f"`hotfeed {shlex.join(argv)}` is refused by the hotfeed CLI (see its message above)")


def _command_path(argv: list[str]) -> str:
    return " ".join(word for word in argv[:2] if not word.startswith("-") and word != "1")


# --- versions -------------------------------------------------------------------------------

def test_compose_elasticsearch_image_matches_the_pinned_version():
    image = _services()["elasticsearch"]["image"]
    assert image.startswith("docker.elastic.co/elasticsearch/elasticsearch:")
    assert image.endswith(f":{versions.ELASTICSEARCH_VERSION}")


def test_compose_redis_has_the_pinned_major_aof_and_ttl_only_eviction():
    redis = _services()["redis"]
    assert re.search(rf":{versions.REDIS_MAJOR}(\.|-|$)", redis["image"])
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy volatile-lru" in command
    assert re.search(r"--maxmemory \d+[kmg]b", command)


# --- services and health ----------------------------------------------------------------------

def test_the_stack_has_every_service():
    assert set(_services()) == EVERY_SERVICE


def test_every_compose_service_has_a_healthcheck():
    services = _services()
    missing = {name for name, svc in services.items() if not (svc.get("healthcheck") or {}).get("test")}
    disabled = {name for name, svc in services.items() if (svc.get("healthcheck") or {}).get("disable")}
    assert missing == set() and disabled == set()


def test_every_hotfeed_service_runs_the_image_built_from_the_dockerfile():
    for name in HOTFEED_SERVICES:
        service = _services()[name]
        assert service["image"] == HOTFEED_IMAGE, name
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert (REPO_ROOT / service["build"]["dockerfile"]).is_file()
    others = {name for name, svc in _services().items() if svc.get("build") or svc["image"] == HOTFEED_IMAGE}
    assert others == HOTFEED_SERVICES


def test_long_running_services_start_after_init_completed_successfully():
    services = _services()
    for name in LONG_RUNNING:
        depends = services[name]["depends_on"]
        assert depends["init"] == {"condition": "service_completed_successfully"}, name
        assert services[name]["restart"] == "unless-stopped", name
    assert services["gateway"]["depends_on"]["recommender"] == {"condition": "service_healthy"}


def test_init_is_a_one_shot_job_that_waits_for_healthy_engine_and_redis():
    init = _services()["init"]
    assert init["restart"] == "no"
    assert init["depends_on"] == {
        "elasticsearch": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_hotfeed_services_share_data_and_artifacts_through_named_volumes():
    compose = _compose()
    for name in HOTFEED_SERVICES:
        mounts = {v.split(":")[0]: v.split(":")[1] for v in compose["services"][name]["volumes"]}
        assert mounts.get("hotfeed-artifacts") == "/var/lib/hotfeed/artifacts", name
        assert mounts.get("hotfeed-data") == "/var/lib/hotfeed/data", name
    assert {"hotfeed-artifacts", "hotfeed-data"} <= set(compose["volumes"])


# --- ports ----------------------------------------------------------------------------------

def _local_default_ports() -> dict[int, str]:
    defaults = {
        ServicesSettings.model_fields["redis_port"].default: "hotfeed services: Redis",
        ServicesSettings.model_fields["opensearch_port"].default: "hotfeed services: OpenSearch",
        ServicesSettings.model_fields["elasticsearch_port"].default: "hotfeed services: Elasticsearch",
        ServerSettings.model_fields["port"].default: "hotfeed serve: gRPC",
        ServerSettings.model_fields["metrics_port"].default: "hotfeed serve: metrics",
        GatewaySettings.model_fields["port"].default: "hotfeed gateway",
    }
    return defaults


def test_published_ports_are_bound_to_localhost_only():
    for name, service in _services().items():
        for address, host, _ in _host_ports(service):
            assert address == "127.0.0.1", f"{name} publishes {host} on {address!r}"


def test_published_ports_clash_neither_with_the_local_services_nor_with_each_other():
    taken = _local_default_ports()
    for name, service in sorted(_services().items()):
        for _, host, _ in _host_ports(service):
            assert host not in taken, f"{name} publishes {host}, already used by {taken[host]}"
            taken[host] = f"compose service {name}"


def test_the_entry_points_of_the_stack_are_published():
    published = {name: [host for _, host, _ in _host_ports(svc)] for name, svc in _services().items()}
    for name in ("elasticsearch", "redis", "gateway", "recommender", "prometheus"):
        assert published[name], f"{name} publishes no port"


# --- secrets --------------------------------------------------------------------------------

def test_compose_needs_no_shell_variables_and_inlines_no_secret():
    text = COMPOSE_FILE.read_text()
    # $$ reaches the container as $; a single $ would be interpolated by compose from the host.
    assert re.findall(r"\$(?:\{\w+|\w+)", text.replace("$$", "")) == []
    assert "CHANGE_ME" not in text and not re.search(r"redis://:[^@\s]+@", text)
    for name, service in _services().items():
        inlined = {k for k, v in _environment(service).items() if SECRET_NAME.search(k) and v}
        assert inlined == set(), f"{name} sets {sorted(inlined)} in compose; put them in {ENV_FILE}"


def test_services_with_secrets_read_the_env_file():
    for name in HOTFEED_SERVICES | {"elasticsearch", "redis"}:
        assert _env_files(_services()[name]) == [ENV_FILE], name


def test_elasticsearch_has_security_on_and_redis_a_password_from_the_env_file():
    services = _services()
    es_env = _environment(services["elasticsearch"])
    assert es_env["xpack.security.enabled"] == "true"
    assert "ELASTIC_PASSWORD" not in es_env
    assert "$$ELASTIC_PASSWORD" in services["elasticsearch"]["healthcheck"]["test"][1]
    assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(services["redis"]["command"])
    assert "$$REDIS_PASSWORD" in services["redis"]["healthcheck"]["test"][1]


def test_env_example_lists_every_secret_as_a_placeholder():
    env = _example_env()
    required = {
        "ELASTIC_PASSWORD", "REDIS_PASSWORD", "HOTFEED_ENGINE_PASSWORD", "HOTFEED_REDIS_URL",
        "HOTFEED_SERVER_SERVICE_TOKEN", "HOTFEED_SERVER_CURSOR_SECRET", "HOTFEED_GATEWAY_JWT_SECRET",
        "HOTFEED_GATEWAY_ADMIN_TOKENS",
    }
    assert required <= set(env), sorted(required - set(env))
    for key, value in env.items():
        if SECRET_NAME.search(key):
            assert value.startswith("CHANGE_ME_"), f"{key} in {ENV_EXAMPLE.name} must be a placeholder"
    text = ENV_EXAMPLE.read_text()
    assert "cp deploy/hotfeed.env.example deploy/hotfeed.env" in text and "openssl rand -hex 32" in text


def test_env_example_repeats_each_password_where_hotfeed_reads_it():
    env = _example_env()
    assert env["HOTFEED_ENGINE_PASSWORD"] == env["ELASTIC_PASSWORD"]
    redis_url = urlsplit(env["HOTFEED_REDIS_URL"])
    assert redis_url.password == env["REDIS_PASSWORD"]
    redis_port = _host_ports(_services()["redis"])[0][2]
    assert (redis_url.hostname, redis_url.port) == ("redis", redis_port)


def test_env_file_is_kept_out_of_git_and_of_the_build_context():
    assert "/deploy/hotfeed.env" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert ENV_FILE in (REPO_ROOT / ".dockerignore").read_text().splitlines()


def test_every_hotfeed_variable_set_for_the_stack_is_a_setting():
    known = _known_setting_variables()
    set_here = set(_example_env())
    for name in HOTFEED_SERVICES:
        set_here |= set(_environment(_services()[name]))
    unknown = {key for key in set_here if key.startswith("HOTFEED_") and key not in known}
    assert unknown == set(), f"not read by recommender/settings.py: {sorted(unknown)}"


# --- wiring ---------------------------------------------------------------------------------

def test_hotfeed_services_reach_elasticsearch_and_the_recommender_by_service_name():
    services = _services()
    es_port = _host_ports(services["elasticsearch"])[0][2]
    grpc_port = ServerSettings.model_fields["port"].default
    for name in HOTFEED_SERVICES:
        env = _environment(services[name])
        assert env["HOTFEED_ENGINE"] == "elasticsearch", name
        url = urlsplit(env["HOTFEED_ENGINE_URL"])
        assert (url.hostname, url.port) == ("elasticsearch", es_port), name
        assert env["HOTFEED_ENGINE_USERNAME"] == "elastic", name
        assert env["HOTFEED_GATEWAY_GRPC_TARGET"] == f"recommender:{grpc_port}", name
    assert _host_ports(services["recommender"])[0][2] == grpc_port
    assert _host_ports(services["gateway"])[0][2] == GatewaySettings.model_fields["port"].default


def test_prometheus_scrapes_the_recommender_metrics_port():
    prometheus = _services()["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    env = _environment(_services()["recommender"])
    port = int(env.get("HOTFEED_SERVER_METRICS_PORT", ServerSettings.model_fields["metrics_port"].default))
    assert port and f"recommender:{port}" in targets


# --- commands -------------------------------------------------------------------------------

def test_every_hotfeed_command_line_of_the_stack_is_accepted_by_the_cli():
    ran = set()
    for name in sorted(HOTFEED_SERVICES):
        calls = _hotfeed_calls(name, _services()[name])
        assert calls, f"{name} runs no hotfeed command"
        for argv in calls:
            _parse(argv)
            ran.add(_command_path(argv))
    assert REQUIRED_JOBS <= ran, f"the stack never runs: {sorted(REQUIRED_JOBS - ran)}"


def test_the_scheduler_retrains_and_refreshes_the_blend_on_schedules():
    script = _script_of(_services()["scheduler"]["entrypoint"]).read_text()
    calls = _shell_calls(script)
    retrains = [argv for argv in calls if argv[0] == "retrain"]
    refreshes = [argv for argv in calls if argv[:2] == ["model", "refresh"]]
    assert retrains and all(_parse(argv).every_hours for argv in retrains)
    assert refreshes and all(_parse(argv).every_hours and _parse(argv).publish for argv in refreshes)


def test_the_shell_call_extraction_finds_calls_and_skips_comments_and_paths():
    text = '# hotfeed train --nope\nexec hotfeed retrain --events "$data/e.parquet"\nx=/var/lib/hotfeed/data\n' \
           'hotfeed index status | python -c 1 && hotfeed cluster run --data "$d" &\n'
    assert _shell_calls(text) == [["retrain", "--events", "1"], ["index", "status"], ["cluster", "run", "--data", "1"]]


@pytest.mark.parametrize("script", ["deploy/init.sh", "deploy/scheduler.sh", "scripts/compose-smoke.sh"])
def test_stack_scripts_parse_as_bash(script):
    result = subprocess.run(["bash", "-n", str(REPO_ROOT / script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# --- the Compose schema ---------------------------------------------------------------------

def test_docker_compose_accepts_the_file(tmp_path):
    """`docker-compose config -q` on a copy, with deploy/hotfeed.env made from the example."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed, so docker-compose.yml cannot be validated; install it "
                    "(`apt-get install docker-compose`, as .ci/run does) and run this test again")
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("hotfeed.env"))
    shutil.copy(ENV_EXAMPLE, tmp_path / ENV_FILE)
    result = subprocess.run([binary, "-f", "docker-compose.yml", "config", "-q"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or result.stdout

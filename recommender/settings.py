"""One settings object for every hotfeed process.

Each section reads its own ``HOTFEED_<SECTION>_<FIELD>`` environment variables
(``HOTFEED_ENGINE_URL``, ``HOTFEED_REDIS_URL``, ...). ``HOTFEED_ENGINE`` is accepted as a
short form of ``HOTFEED_ENGINE_KIND``. Settings are read once, at startup, by
``load_settings()`` and passed down; nothing else reads the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommender.errors import ConfigError
from recommender.redact import redact

__all__ = [
    "REPO_ROOT",
    "EngineSettings",
    "RedisSettings",
    "ServicesSettings",
    "PathsSettings",
    "IndexerSettings",
    "ClusteringSettings",
    "ModelSettings",
    "ServerSettings",
    "GatewaySettings",
    "MIN_ADMIN_TOKEN_LENGTH",
    "parse_admin_tokens",
    "Settings",
    "load_settings",
    "env_var",
]

# The package is installed editable from the repository, so repository-level folders
# (es_mappings/, proto/) sit next to it.
REPO_ROOT = Path(__file__).resolve().parent.parent

EngineKind = Literal["opensearch", "elasticsearch"]
# The public default cursor secret: fine on a laptop, a forgery kit in production.
DEV_CURSOR_SECRET = "hotfeed-local-cursor-secret"
_DEFAULT_ENGINE_PORTS = {"opensearch": 9200, "elasticsearch": 9201}


def _section(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", populate_by_name=True)


class EngineSettings(BaseSettings):
    model_config = _section("HOTFEED_ENGINE_")

    kind: EngineKind = Field(
        default="opensearch", validation_alias=AliasChoices("kind", "HOTFEED_ENGINE", "HOTFEED_ENGINE_KIND")
    )
    # Empty means the local default port of the chosen engine (see services). Basic-auth
    # credentials may sit in the URL (https://user:password@host:9200) or in username/password.
    url: str = ""
    # Elasticsearch API key (the base64 "id:key" form Kibana shows); sent as "ApiKey ...".
    api_key: str = ""
    username: str = ""
    password: str = ""
    # CA bundle (PEM) to verify an https engine with, e.g. Elasticsearch 8's http_ca.crt.
    ca_file: Path | None = None
    timeout_ms: int = Field(default=10_000, ge=1, le=600_000)
    index_alias: str = Field(default="hotfeed-items", pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    embedding_dims: int = Field(default=64, ge=2, le=4096)
    shards: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(default=0, ge=0, le=8)
    refresh_interval: str = "1s"

    @model_validator(mode="after")
    def _default_url(self) -> "EngineSettings":
        if not self.url:
            self.url = f"http://127.0.0.1:{_DEFAULT_ENGINE_PORTS[self.kind]}"
        return self


class RedisSettings(BaseSettings):
    model_config = _section("HOTFEED_REDIS_")

    url: str = "redis://127.0.0.1:6379/0"
    timeout_ms: int = Field(default=2_000, ge=1, le=60_000)
    key_prefix: str = "hotfeed:"


class ServicesSettings(BaseSettings):
    """Where `hotfeed services` installs and runs the local engines and Redis."""

    model_config = _section("HOTFEED_SERVICES_")

    dir: Path = REPO_ROOT / ".services"
    redis_port: int = Field(default=6379, ge=1, le=65535)
    opensearch_port: int = Field(default=9200, ge=1, le=65535)
    elasticsearch_port: int = Field(default=9201, ge=1, le=65535)
    heap_mb: int = Field(default=768, ge=256, le=16_384)
    java_home: Path | None = None
    start_timeout_s: int = Field(default=180, ge=5, le=1800)
    # Engines refuse to run as root; when we are root they run as this system user.
    run_as_user: str = "hotfeed"


class PathsSettings(BaseSettings):
    model_config = _section("HOTFEED_PATHS_")

    data_dir: Path = REPO_ROOT / "data"
    artifacts_dir: Path = REPO_ROOT / "artifacts"
    shared_data_dir: Path = REPO_ROOT.parent / "shared" / "data"
    mappings_dir: Path = REPO_ROOT / "es_mappings"


class IndexerSettings(BaseSettings):
    model_config = _section("HOTFEED_INDEXER_")

    bulk_chunk_docs: int = Field(default=5_000, ge=1, le=100_000)
    bulk_max_retries: int = Field(default=5, ge=0, le=50)
    # Bulk requests in flight at once during a full rebuild: 2 lets Python build the next chunk
    # while the engine indexes the last one (bench/bench_index_full.py measures the choice).
    bulk_concurrency: int = Field(default=2, ge=1, le=16)
    retention_indexes: int = Field(default=2, ge=1, le=20)
    # Segments a rebuilt index is merged down to before the alias swap; 0 skips the merge.
    merge_segments: int = Field(default=1, ge=0, le=100)
    # Data import and cleaning (indexer/importers.py, indexer/weblogs.py).
    session_gap_min: float = Field(default=30, gt=0, le=24 * 60)
    burst_min_hits: int = Field(default=3, ge=2, le=1000)
    burst_window_s: float = Field(default=10, gt=0, le=3600)
    nginx_item_regex: str = r"^/items?/(?P<item_id>[A-Za-z0-9_\-]+)/?(?:\?|$)"
    # Cohort popularity (indexer/popularity.py): weight per event type, unknown types weigh 0.
    # A 6 h half-life keeps the score "hot": most marketplace views go to items under 8 h old.
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 1.0, "like": 3.0, "cart": 4.0, "chat": 5.0, "purchase": 8.0}
    )
    popularity_half_life_h: float = Field(default=6.0, gt=0, le=24 * 365)
    popularity_lookback_days: float = Field(default=14.0, gt=0, le=365)
    # Extra cohorts crossing two user attributes, "<axis>+<axis>" with axes g, age, region, platform,
    # e.g. ["region+age"]; off by default because each one multiplies the child documents.
    combined_cohorts: list[str] = Field(default_factory=list)
    popular_fallback_size: int = Field(default=100, ge=1, le=10_000)


class ClusteringSettings(BaseSettings):
    model_config = _section("HOTFEED_CLUSTERING_")

    every_minutes: int = Field(default=10, ge=1, le=24 * 60)
    # A user's segment hash expires segment_ttl_s after their last activity; users idle
    # longer are not written at all.
    segment_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    # Category affinity: event weight halves every half_life_h hours.
    half_life_h: float = Field(default=72.0, gt=0, le=24 * 365)
    # Interest per event type for affinity; a purchase says more than a view. Unknown types weigh 0.
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "like": 3.0, "cart": 4.0, "chat": 4.0, "purchase": 6.0}
    )
    top_categories: int = Field(default=3, ge=1, le=20)
    # Item-embedding user vectors average the last recent_events events of each user.
    recent_events: int = Field(default=50, ge=1, le=10_000)
    # Behaviour clusters: k=0 picks k by best silhouette over a grid capped at
    # min(k_max, sqrt(n/2)); any other value fixes k.
    k: int = Field(default=0, ge=0, le=1024)
    k_max: int = Field(default=32, ge=2, le=1024)
    affinity_dims: int = Field(default=64, ge=2, le=4096)
    silhouette_sample: int = Field(default=2_000, ge=100, le=50_000)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    write_batch_users: int = Field(default=2_000, ge=1, le=100_000)
    # torch intra-op threads for the job; 0 keeps torch's default. On a busy small host 1 is
    # far faster: the k-means batches are small and spinning OpenMP threads fight for cores.
    torch_threads: int = Field(default=0, ge=0, le=256)


class ModelSettings(BaseSettings):
    model_config = _section("HOTFEED_MODEL_")

    # "auto" picks cuda when torch sees a GPU, else cpu.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # The one default that `hotfeed train`, the demo, `index full` and `serve` share. "none"
    # serves without a model (engine order, no session vectors). A checkpoint set here that
    # does not exist stops `serve`; only the unset default may be missing (with a warning).
    checkpoint: Path | None = REPO_ROOT / "artifacts" / "model" / "model.pt"

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _checkpoint_off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "off"):
            return None
        return value
    # torch intra-op threads of the recommender process. 1: a feed's model calls are small,
    # and more threads spin on cores the engine and the other requests need.
    serving_threads: int = Field(default=1, ge=0, le=256)
    # Hyper-parameter overrides as JSON, e.g. HOTFEED_MODEL_PARAMS='{"epochs": 3, "lr": 0.002}'.
    # They beat the model's YAML file and lose to command-line flags (recommender/model/config.py).
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    # How often `serve` polls Redis for a newly published checkpoint (`hotfeed model publish`,
    # `hotfeed train`) and swaps it in without a restart; 0 switches the watching off.
    poll_ms: int = Field(default=2_000, ge=0, le=3_600_000)


class ServerSettings(BaseSettings):
    model_config = _section("HOTFEED_SERVER_")

    host: str = "127.0.0.1"
    # 0 picks a free port (tests).
    port: int = Field(default=50051, ge=0, le=65535)
    # Empty: no token needed. Otherwise callers send metadata "authorization: Bearer <token>".
    service_token: str = ""
    workers: int = Field(default=16, ge=1, le=256)
    # Feeds computed at once (the rest wait up to queue_timeout_ms, then get the flagged
    # popular fallback). 0: twice the CPU count. A feed is mostly CPU (model, ranking, parsing
    # the engine's answer) and on a small box shared with the engine, 16 at once thrashed 2
    # cores: 4 cut p99 at 50 feeds/s by a quarter and removed the deadline fallbacks
    # (docs/performance.md). The wait bound keeps an overload from queueing without limit.
    concurrent_feeds: int = Field(default=0, ge=0, le=1024)
    queue_timeout_ms: int = Field(default=80, ge=1, le=60_000)
    # The engine search's deadline; past it the popular fallback serves the page.
    engine_timeout_ms: int = Field(default=80, ge=1, le=60_000)
    # Signs page cursors; set a long random value in production (cursors from other keys are rejected).
    # `serve` refuses to start with this default outside dev mode.
    cursor_secret: str = DEV_CURSOR_SECRET
    # HOTFEED_DEV_MODE=1 (make demo, make test, local experiments) lets `serve` and `gateway`
    # start with the default cursor secret and no service token; without it they refuse.
    dev_mode: bool = Field(default=False, validation_alias=AliasChoices("dev_mode", "HOTFEED_DEV_MODE"))
    feed_ttl_s: int = Field(default=1800, ge=10, le=7 * 86_400)
    session_ttl_s: int = Field(default=6 * 3600, ge=60, le=30 * 86_400)
    session_max_items: int = Field(default=50, ge=1, le=1000)
    max_events_per_call: int = Field(default=1000, ge=1, le=100_000)
    # Redis timeout of the recommender (one round trip per feed takes ~1 ms): past it a feed
    # degrades to default segments instead of waiting out HOTFEED_REDIS_TIMEOUT_MS.
    redis_timeout_ms: int = Field(default=100, ge=1, le=60_000)
    profile_poll_ms: int = Field(default=250, ge=10, le=60_000)
    # A/B experiment counts (impressions, exposed viewers, clicks, ...) are added up in memory and
    # written to Redis in one round trip this often; a crash loses at most one interval of counts.
    experiment_flush_ms: int = Field(default=1000, ge=10, le=60_000)
    # 0 switches the Prometheus endpoint off.
    metrics_port: int = Field(default=9464, ge=0, le=65535)


_ADMIN_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+\-]{1,64}$")
# Long enough that guessing one over the network is hopeless.
MIN_ADMIN_TOKEN_LENGTH = 16


def parse_admin_tokens(value: str) -> dict[str, str]:
    """Return admin name -> token from ``"name:token,name:token"`` (empty: no admins).

    Raises ValueError naming the entry by position and name, never quoting a token.
    """
    out: dict[str, str] = {}
    seen: set[str] = set()
    for n, entry in enumerate((e.strip() for e in value.split(",")), start=1):
        if not entry:
            continue
        name, sep, token = entry.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not _ADMIN_NAME_RE.match(name):
            raise ValueError(f"entry {n} must be name:token with a name of 1-64 letters, digits or _.@+- "
                             f"(got a name of {name[:64]!r})")
        if len(token) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"the token of {name!r} (entry {n}) is shorter than {MIN_ADMIN_TOKEN_LENGTH} "
                             f"characters; use `openssl rand -hex 32`")
        if name in out:
            raise ValueError(f"admin {name!r} is listed twice; give each admin one token")
        if token in seen:
            raise ValueError(f"the token of {name!r} (entry {n}) is also another admin's; give each admin their own")
        out[name] = token
        seen.add(token)
    return out


class GatewaySettings(BaseSettings):
    model_config = _section("HOTFEED_GATEWAY_")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # The gRPC recommender the gateway forwards to ("host:port").
    grpc_target: str = Field(default="127.0.0.1:50051", min_length=3)
    # Deadline of each gRPC call; past it the gateway answers 504.
    deadline_ms: int = Field(default=1_000, ge=1, le=60_000)
    # The engine search deadline of the admin console's previews, carried to the recommender
    # instead of its production deadline (HOTFEED_SERVER_ENGINE_TIMEOUT_MS), so a busy box
    # still ranks both sides rather than serving the popular fallback; the preview's gRPC
    # calls get this plus deadline_ms. At most the recommender's HOTFEED_ENGINE_TIMEOUT_MS.
    preview_deadline_ms: int = Field(default=2_000, ge=1, le=60_000)
    # Page size of a feed request that names none (the recommender refuses page_size 0).
    default_page_size: int = Field(default=20, ge=1, le=1_000)
    # Who the viewer is comes only from a signed token (Authorization: Bearer <JWT>, the user
    # in "sub"): HS256 with jwt_secret, or RS256/ES256 with the PEM public key in
    # jwt_public_key_file. With neither set, every viewer is logged out and tokens are refused.
    jwt_secret: str = ""
    jwt_public_key_file: Path | None = None
    jwt_audience: str = "hotfeed"
    # Empty: any issuer.
    jwt_issuer: str = ""
    # Events one caller (signed-in user, else client address) may post per minute; 0: no limit.
    events_per_minute: int = Field(default=600, ge=0, le=1_000_000)
    # Who may use /admin: comma-separated "name:token" pairs ("alice:3f9a…,bob:77c1…"). Each
    # person gets their own token so the audit trail records who did what. Empty: the gateway
    # refuses to start outside dev mode (HOTFEED_DEV_MODE=1, where /admin is then open).
    admin_tokens: str = ""

    @field_validator("admin_tokens")
    @classmethod
    def _check_admin_tokens(cls, value: str) -> str:
        parse_admin_tokens(value)
        return value

    def admin_identities(self) -> dict[str, str]:
        """Return admin token -> admin name, from ``admin_tokens``."""
        return {token: name for name, token in parse_admin_tokens(self.admin_tokens).items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    engine: EngineSettings = Field(default_factory=EngineSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    services: ServicesSettings = Field(default_factory=ServicesSettings)
    paths: PathsSettings = Field(default_factory=PathsSettings)
    indexer: IndexerSettings = Field(default_factory=IndexerSettings)
    clustering: ClusteringSettings = Field(default_factory=ClusteringSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)


def env_var(section: type[BaseSettings], field: str) -> str:
    """Return the environment variable a section's field is read from ("HOTFEED_ENGINE_URL")."""
    info = section.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info is not None else None
    choices = getattr(alias, "choices", ()) or ()
    named = [c for c in choices if isinstance(c, str) and c.startswith("HOTFEED_")]
    if named:
        return named[0]
    return f"{section.model_config.get('env_prefix', 'HOTFEED_')}{field}".upper()


_SECRET_VARIABLE = re.compile(r"TOKEN|SECRET|PASSWORD", re.I)


def load_settings() -> Settings:
    """Return settings read from ``HOTFEED_*`` environment variables.

    Raises ConfigError naming every variable that does not validate, its value (passwords in
    URLs masked) and what is wrong with it.
    """
    sections: dict[str, BaseSettings] = {}
    problems: list[str] = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        try:
            sections[name] = section()
        except ValidationError as exc:
            for err in exc.errors():
                where = env_var(section, str(err["loc"][0])) if err["loc"] else f"HOTFEED_{name.upper()}_*"
                # A secret's value never reaches the message, even a malformed one.
                shown = "<hidden>" if _SECRET_VARIABLE.search(where) else repr(redact(err.get("input")))
                problems.append(f"{where}={shown}: {err['msg']}")
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems))
    return Settings(**sections)

"""Local Redis, OpenSearch and Elasticsearch: installed into ``settings.services.dir`` and run there.

Used by `hotfeed services up|down|status`, by .ci/run and by the demo. Each service is
idempotent: `up` on a running service only reports it, `down` on a stopped one is a no-op.

OpenSearch is assembled from Maven Central: the integration-test distribution (server +
transport only) plus the parent-join and lang-painless modules and the k-NN plugin, whose
Maven zip carries no native libraries, so indexes use k-NN's pure-Java lucene engine.
Elasticsearch is its integration-test distribution: kNN and function_score, no parent-join.
Both refuse to run as root, so as root they run as a system user (settings.services.run_as_user).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from recommender.errors import ServiceSetupError
from devservices import versions
from devservices.maven import fetch_artifact
from recommender.settings import ServicesSettings

__all__ = ["ServiceStatus", "LocalService", "RedisService", "OpenSearchNode", "ElasticsearchNode", "local_services"]

_log = logging.getLogger(__name__)
_MIN_JAVA = 17


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    address: str
    version: str = ""
    components: list[str] = field(default_factory=list)
    detail: str = ""

    def line(self) -> str:
        """Return one human line: name, state, address, version and components."""
        state = "up" if self.running else "down"
        extra = f" [{', '.join(self.components)}]" if self.components else ""
        version = f" {self.version}" if self.version else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.name:<14} {state:<5} {self.address}{version}{extra}{detail}"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_json(url: str, *, timeout_s: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def _stop_pid(pid_file: Path, name: str, *, timeout_s: float = 60) -> bool:
    pid = _pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    else:
        _log.warning("%s (pid %d) did not stop in %.0fs; killing it", name, pid, timeout_s)
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def _searchable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def _reachable_dir(configured: Path) -> Path:
    """Return the services folder, or a stand-in under /var/tmp when we are root and the
    configured one sits below a folder the engines' service user cannot enter (a checkout
    in /root, say). The stand-in is derived from the configured path, so `status` and
    `down` find what `up` started."""
    if os.geteuid() != 0 or _searchable_by_others(configured.parent):
        return configured
    digest = hashlib.sha1(str(configured.resolve()).encode()).hexdigest()[:10]
    standin = Path("/var/tmp/hotfeed-services") / digest
    _log.info("%s is not reachable by the engines' service user; using %s", configured, standin)
    standin.mkdir(parents=True, exist_ok=True)
    for p in (standin.parent, standin):
        p.chmod(0o755)
    return standin


class LocalService:
    """One local service: install, start (waits for health), stop, status."""

    name: str = ""

    def up(self) -> ServiceStatus:
        raise NotImplementedError

    def down(self) -> bool:
        raise NotImplementedError

    def status(self) -> ServiceStatus:
        raise NotImplementedError


class RedisService(LocalService):
    """Redis 7 from Debian's redis-server package, with AOF, on 127.0.0.1."""

    name = "redis"

    def __init__(self, settings: ServicesSettings):
        self.port = settings.redis_port
        self.home = settings.dir / "redis"
        self.timeout_s = settings.start_timeout_s

    def _binary(self) -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        if os.geteuid() != 0:
            raise ServiceSetupError(
                "redis-server not found and we are not root to install it; run: "
                "sudo apt-get update && sudo apt-get install -y redis-server"
            )
        _log.info("installing redis-server from Debian (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "redis-server"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise ServiceSetupError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")
        found = shutil.which("redis-server")
        if not found:
            raise ServiceSetupError("apt-get installed redis-server but the binary is not on PATH")
        return found

    def _info(self) -> dict[str, str] | None:
        """Return the fields of Redis's INFO reply, or None when no Redis answers on the port.

        INFO is answered while Redis is still loading its AOF (other commands get LOADING).
        """
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.settimeout(2)
                s.sendall(b"INFO\r\n")
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        return None
                    data += chunk
                head, _, body = data.partition(b"\r\n")
                if not head.startswith(b"$"):
                    return None
                size = int(head[1:])
                while len(body) < size:
                    chunk = s.recv(65536)
                    if not chunk:
                        return None
                    body += chunk
        except (OSError, ValueError):
            return None
        fields = {}
        for line in body[:size].decode(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key] = value
        return fields

    def _ping(self) -> str | None:
        """Return the server version if a Redis answers on the port, else None."""
        info = self._info()
        return info.get("redis_version") if info else None

    def status(self) -> ServiceStatus:
        """Up only once Redis has loaded its data: a Redis still reading its AOF is reported "loading"."""
        info = self._info()
        if info is None:
            return ServiceStatus(self.name, False, f"127.0.0.1:{self.port}")
        loading = info.get("loading", "0") != "0" or info.get("async_loading", "0") != "0"
        return ServiceStatus(self.name, not loading, f"127.0.0.1:{self.port}", info.get("redis_version", ""),
                             detail="loading its data" if loading else "")

    def up(self) -> ServiceStatus:
        if self._ping():
            deadline = time.monotonic() + self.timeout_s
            while not (status := self.status()).running and time.monotonic() < deadline:
                time.sleep(0.2)  # already started, still loading its AOF
            return status
        if _port_open(self.port):
            raise ServiceSetupError(
                f"port {self.port} is in use by something that is not Redis; "
                f"free it or set HOTFEED_SERVICES_REDIS_PORT (and HOTFEED_REDIS_URL) to another port"
            )
        binary = self._binary()
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self.home / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.home}",
                    "daemonize yes",
                    f"pidfile {self.home / 'redis.pid'}",
                    f"logfile {self.home / 'redis.log'}",
                    "appendonly yes",
                    "save ''",
                    # Feed pages, sessions and segments expire; under memory pressure only keys
                    # with a TTL are evicted, never profiles, preferences or the event stream.
                    "maxmemory 1gb",
                    "maxmemory-policy volatile-lru",
                    "protected-mode yes",
                ]
            )
            + "\n"
        )
        proc = subprocess.run([binary, str(conf)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceSetupError(f"redis-server failed to start: {proc.stderr.strip() or proc.stdout.strip()}")
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            status = self.status()
            if status.running:  # answering and done loading the AOF
                return status
            time.sleep(0.2)
        raise ServiceSetupError(f"redis did not finish starting on port {self.port} within {self.timeout_s:.0f}s "
                                f"(answering: {self._ping() is not None}); see {self.home / 'redis.log'}")

    def down(self) -> bool:
        return _stop_pid(self.home / "redis.pid", self.name)


class _JavaNode(LocalService):
    """A search-engine node unpacked from a Maven zip and run as a detached process."""

    port_setting = ""

    port_field = ""  # the ServicesSettings field holding this node's HTTP port

    def __init__(self, settings: ServicesSettings):
        self.settings = settings
        self.port = getattr(settings, self.port_field)
        self.transport_port = self.port + 100
        self.root = _reachable_dir(settings.dir) / self.name
        self.home = self.root / "home"
        self.pid_file = self.root / "node.pid"
        self.log_file = self.root / "stdout.log"

    # -- hooks for each engine ------------------------------------------------------------
    version = ""

    def _assemble(self, home: Path) -> None:
        raise NotImplementedError

    extra_config: tuple[str, ...] = ()
    cluster_name = ""

    def _config_lines(self) -> list[str]:
        return [
            f"cluster.name: {self.cluster_name}",
            f"node.name: hotfeed-{self.name}",
            "discovery.type: single-node",
            "network.host: 127.0.0.1",
            f"http.port: {self.port}",
            f"transport.port: {self.transport_port}",
            f"path.data: {self.root / 'data'}",
            f"path.logs: {self.root / 'logs'}",
            # A nearly full dev disk must not turn the indexes read-only.
            "cluster.routing.allocation.disk.threshold_enabled: false",
            *self.extra_config,
        ]

    def _java_env(self, java_home: Path) -> dict[str, str]:
        raise NotImplementedError


    # -- shared -----------------------------------------------------------------------------
    def _java_home(self) -> Path:
        configured = self.settings.java_home
        java = (configured / "bin" / "java") if configured else shutil.which("java")
        if not java or not Path(java).exists():
            raise ServiceSetupError(
                f"Java {_MIN_JAVA}+ not found (needed by {self.name}); install it "
                f"(apt-get install -y openjdk-17-jre-headless) or set HOTFEED_SERVICES_JAVA_HOME"
            )
        java_path = Path(java).resolve()
        proc = subprocess.run([str(java_path), "-version"], capture_output=True, text=True)
        match = re.search(r'version "(\d+)', proc.stderr + proc.stdout)
        major = int(match.group(1)) if match else 0
        if major < _MIN_JAVA:
            raise ServiceSetupError(
                f"{java_path} is Java {major or '?'}; {self.name} needs Java {_MIN_JAVA}+ "
                f"(set HOTFEED_SERVICES_JAVA_HOME to a newer JDK)"
            )
        return java_path.parent.parent

    def _installed_marker(self) -> Path:
        return self.root / f"installed-{self.version}"

    def install(self) -> None:
        """Unpack and assemble the node once per version; later calls return at once."""
        if self._installed_marker().exists() and self.home.exists():
            return
        _log.info("%s: assembling %s from Maven Central into %s", self.name, self.version, self.home)
        staging = self.root / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self._assemble(staging)
        shutil.rmtree(self.home, ignore_errors=True)
        staging.rename(self.home)
        for old in self.root.glob("installed-*"):
            old.unlink()
        self._installed_marker().touch()

    def _unzip_distribution(self, coordinates: str, dest: Path) -> None:
        archive = fetch_artifact(coordinates)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
        (top,) = [p for p in dest.iterdir() if p.is_dir()]
        for child in top.iterdir():
            child.rename(dest / child.name)
        top.rmdir()
        for script in (dest / "bin").iterdir():
            script.chmod(0o755)

    def _write_config(self) -> None:
        conf_dir = self.home / "config"
        (conf_dir / f"{self.name}.yml").write_text("\n".join(self._config_lines()) + "\n")
        options = conf_dir / "jvm.options.d"
        options.mkdir(exist_ok=True)
        heap = self.settings.heap_mb
        (options / "hotfeed-heap.options").write_text(f"-Xms{heap}m\n-Xmx{heap}m\n")

    def _health(self) -> dict | None:
        return _http_json(f"http://127.0.0.1:{self.port}/_cluster/health")

    def _ready(self) -> tuple[bool, dict | None]:
        """Return (ready, health): ready once the cluster is green or yellow with no shard initializing
        (after a crash the indices replay their translogs first; until then searches fail)."""
        health = _http_json(f"http://127.0.0.1:{self.port}/_cluster/health?wait_for_no_initializing_shards=true"
                            "&timeout=1s")
        ready = bool(health) and not health.get("timed_out") and health.get("status") in ("green", "yellow")
        return ready, health

    def _warm(self, rounds: int = 10) -> None:
        """Search every items index a few times so the first feeds after a (re)start do not pay for the
        JVM's compilation and cold caches: match_all, the parent-join (global ordinals) and a sort."""
        queries = [{"size": 200, "query": {"match_all": {}}},
                   {"size": 200, "query": {"has_child": {"type": "popularity", "score_mode": "sum",
                                                         "query": {"function_score": {"field_value_factor": {
                                                             "field": "decayed_weight", "missing": 0}}}}}},
                   {"size": 50, "sort": [{"created_at": "desc"}], "query": {"term": {"status": "active"}}}]
        url = f"http://127.0.0.1:{self.port}/hotfeed*/_search?ignore_unavailable=true&allow_no_indices=true"
        for _ in range(rounds):
            for body in queries:
                request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                                 headers={"Content-Type": "application/json"})
                try:
                    urllib.request.urlopen(request, timeout=10).read()
                except (OSError, ValueError):
                    pass  # an index without the join or the field: the other queries still warm the node

    def _node_info(self) -> tuple[str, list[str]]:
        """Return (version, modules and plugins) of the node on the port."""
        # The integration-test distributions have no `GET /`, so the version comes from _nodes.
        info = _http_json(f"http://127.0.0.1:{self.port}/_nodes/_local?filter_path=nodes.*.version,"
                          "nodes.*.modules.name,nodes.*.plugins.name") or {}
        nodes = list((info.get("nodes") or {}).values())
        if not nodes:
            return "", []
        node = nodes[0]
        modules = [m["name"] for m in node.get("modules", [])]
        plugins = [p["name"] for p in node.get("plugins", [])]
        return node.get("version", ""), modules + plugins

    def status(self) -> ServiceStatus:
        """Up only when searches can be served: the cluster green or yellow and no shard initializing."""
        ready, health = self._ready()
        address = f"http://127.0.0.1:{self.port}"
        if health is None:
            return ServiceStatus(self.name, False, address)
        version, components = self._node_info()
        detail = f"cluster {health.get('status', '?')}"
        if not ready:
            detail += f", {health.get('initializing_shards', '?')} shards initializing: not ready"
        return ServiceStatus(self.name, ready, address, version, components, detail=detail)

    def _run_as(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        user = self.settings.run_as_user
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            proc = subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise ServiceSetupError(f"could not create system user {user!r} to run {self.name}: {proc.stderr}")
            entry = pwd.getpwnam(user)
        return entry.pw_uid, entry.pw_gid

    def up(self) -> ServiceStatus:
        if self._health() is not None:
            status = self.status()
            if status.version and not status.version.startswith(self.version.split(".")[0]):
                raise ServiceSetupError(
                    f"port {self.port} answers as a search engine {status.version!r}, not {self.name} "
                    f"{self.version}; stop it or set {self.port_setting}"
                )
            return status
        if _port_open(self.port):
            raise ServiceSetupError(
                f"port {self.port} is in use by another program; free it or set {self.port_setting}"
            )
        java_home = self._java_home()
        self.install()
        self._write_config()
        ids = self._run_as()
        if ids:
            for path in [self.root, *self.root.rglob("*")]:
                os.lchown(path, *ids)

        def _drop_privileges() -> None:
            os.setsid()
            if ids:
                os.setgroups([])
                os.setgid(ids[1])
                os.setuid(ids[0])

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root), **self._java_env(java_home)}
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [str(self.home / "bin" / self.name)],
                cwd=self.home,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_drop_privileges,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceSetupError(
                    f"{self.name} exited with code {proc.returncode} while starting; last log lines:\n"
                    + self._log_tail()
                )
            if self._ready()[0]:
                self._warm()
                return self.status()
            time.sleep(1)
        raise ServiceSetupError(
            f"{self.name} did not become healthy on port {self.port} in {self.settings.start_timeout_s}s; "
            f"see {self.log_file}:\n" + self._log_tail()
        )

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        important = [ln for ln in text if "ERROR" in ln or "Exception" in ln] or text
        return "\n".join(ln[:300] for ln in important[-lines:])

    def down(self) -> bool:
        return _stop_pid(self.pid_file, self.name)


class OpenSearchNode(_JavaNode):
    name = "opensearch"
    cluster_name = "hotfeed-local"
    port_setting = "HOTFEED_SERVICES_OPENSEARCH_PORT (and HOTFEED_ENGINE_URL)"
    version = versions.OPENSEARCH_VERSION

    port_field = "opensearch_port"

    def _assemble(self, home: Path) -> None:
        self._unzip_distribution(versions.OPENSEARCH_DISTRIBUTION, home)
        descriptor = (
            "description={description}\nversion={v}\nname={name}\nclassname={cls}\n"
            "java.version=11\nopensearch.version={v}\nextended.plugins=\nhas.native.controller=false\n"
        )
        join_dir = home / "modules" / "parent-join"
        join_dir.mkdir(parents=True)
        shutil.copy(fetch_artifact(versions.OPENSEARCH_PARENT_JOIN), join_dir)
        (join_dir / "plugin-descriptor.properties").write_text(
            descriptor.format(
                description="Parent-child (join field) queries",
                v=versions.OPENSEARCH_VERSION,
                name="parent-join",
                cls="org.opensearch.join.ParentJoinPlugin",
            )
        )
        painless_dir = home / "modules" / "lang-painless"
        painless_dir.mkdir(parents=True)
        for coords in (versions.OPENSEARCH_PAINLESS, *versions.OPENSEARCH_PAINLESS_DEPENDENCIES):
            shutil.copy(fetch_artifact(coords), painless_dir)
        (painless_dir / "plugin-descriptor.properties").write_text(
            descriptor.format(
                description="Painless scripting language",
                v=versions.OPENSEARCH_VERSION,
                name="lang-painless",
                cls="org.opensearch.painless.PainlessPlugin",
            )
        )
        # Painless compiles scripts into classes at run time.
        (painless_dir / "plugin-security.policy").write_text(
            'grant {\n  permission java.lang.RuntimePermission "createClassLoader";\n'
            '  permission java.lang.RuntimePermission "getClassLoader";\n};\n'
        )
        knn_zip = fetch_artifact(versions.OPENSEARCH_KNN)
        proc = subprocess.run(
            [str(home / "bin" / "opensearch-plugin"), "install", "--batch", f"file://{knn_zip}"],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), **self._java_env(self._java_home())},
        )
        if proc.returncode != 0:
            raise ServiceSetupError(
                f"installing {versions.OPENSEARCH_KNN!r} failed: {(proc.stdout + proc.stderr).strip()[-400:]}"
            )


    def _java_env(self, java_home: Path) -> dict[str, str]:
        return {"OPENSEARCH_JAVA_HOME": str(java_home), "JAVA_HOME": str(java_home)}



class ElasticsearchNode(_JavaNode):
    name = "elasticsearch"
    cluster_name = "hotfeed-local-es"
    port_setting = "HOTFEED_SERVICES_ELASTICSEARCH_PORT (and HOTFEED_ENGINE_URL)"
    version = versions.ELASTICSEARCH_VERSION

    port_field = "elasticsearch_port"

    def _assemble(self, home: Path) -> None:
        self._unzip_distribution(versions.ELASTICSEARCH_DISTRIBUTION, home)

    # Local use only: no TLS or users (the node listens on loopback).
    extra_config = ("xpack.security.enabled: false",)

    def _java_env(self, java_home: Path) -> dict[str, str]:
        return {"ES_JAVA_HOME": str(java_home), "JAVA_HOME": str(java_home)}



def local_services(settings: ServicesSettings, names: list[str] | None = None) -> list[LocalService]:
    """Return the local services by name (all of them by default), in start order.

    Raises ServiceSetupError for an unknown name.
    """
    known: dict[str, type[LocalService]] = {
        "redis": RedisService,
        "opensearch": OpenSearchNode,
        "elasticsearch": ElasticsearchNode,
    }
    chosen = names or list(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ServiceSetupError(f"unknown service(s) {unknown!r}; known: {list(known)}")
    return [known[n](settings) for n in chosen]

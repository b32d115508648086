#!/usr/bin/env bash
# Smoke test of the compose stack, for a machine with a Docker engine and Compose v2
# (`docker compose`; docker-compose 1.29 works too):
#   1. deploy/hotfeed.env: created from deploy/hotfeed.env.example with fresh random secrets
#      when it does not exist (an existing one is used as it is)
#   2. `docker compose up -d --build` as project "hotfeed-smoke", then wait until `init` has
#      exited 0 and every long-running service is healthy
#   3. Elasticsearch answers as version 8 with the items alias, and a home feed comes back
#      through the gateway (http://127.0.0.1:18080), served from the engine
#   4. the integration tests that need only an engine and Redis run against the stack's
#      Elasticsearch (127.0.0.1:19200) and Redis (127.0.0.1:16379); arguments replace that
#      selection, e.g. `scripts/compose-smoke.sh tests/integration/engine -k elasticsearch`
#      (the rest of tests/integration also needs the local OpenSearch: `hotfeed services up`)
#   5. `docker compose down --volumes`, also on failure (KEEP_STACK=1 leaves it running)
# Needs: docker, curl, openssl, python3, and the project's .venv (`make install`) for the tests.
# The host needs vm.max_map_count >= 262144 for Elasticsearch (docker-compose.yml).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=hotfeed-smoke
ENV_FILE=deploy/hotfeed.env
GATEWAY=http://127.0.0.1:18080
ES=http://127.0.0.1:19200
WAIT_S=${WAIT_S:-1800}  # the first run builds the image and trains a model

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose -p "$PROJECT")
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose -p "$PROJECT")
else
  echo "compose-smoke: neither \`docker compose\` nor docker-compose is installed" >&2
  exit 2
fi

say() { echo "compose-smoke: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
env_value() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1; }

finish() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    "${compose[@]}" ps || true
    "${compose[@]}" logs --tail 50 || true
  fi
  if [ "${KEEP_STACK:-0}" = 1 ]; then
    say "KEEP_STACK=1: the stack keeps running; stop it with: ${compose[*]} down --volumes"
  else
    "${compose[@]}" down --volumes --remove-orphans || true
  fi
  exit "$status"
}

if [ ! -f "$ENV_FILE" ]; then
  say "creating $ENV_FILE with fresh random secrets"
  cp deploy/hotfeed.env.example "$ENV_FILE"
  chmod 600 "$ENV_FILE"
  for p in ELASTIC REDIS SERVICE_TOKEN CURSOR_SECRET JWT_SECRET; do
    sed -i "s/CHANGE_ME_$p/$(openssl rand -hex 32)/g" "$ENV_FILE"
  done
  # Admin tokens are "name:token" pairs: the name goes into the audit trail.
  sed -i "s/CHANGE_ME_ADMIN_TOKENS/admin:$(openssl rand -hex 32)/" "$ENV_FILE"
fi
grep -q CHANGE_ME_ "$ENV_FILE" && fail "$ENV_FILE still has CHANGE_ME_ placeholders (see deploy/hotfeed.env.example)"
elastic_password=$(env_value ELASTIC_PASSWORD)
redis_password=$(env_value REDIS_PASSWORD)
[ "$(env_value HOTFEED_ENGINE_PASSWORD)" = "$elastic_password" ] \
  || fail "HOTFEED_ENGINE_PASSWORD differs from ELASTIC_PASSWORD in $ENV_FILE"
case "$(env_value HOTFEED_REDIS_URL)" in
  *":$redis_password@"*) ;;
  *) fail "HOTFEED_REDIS_URL in $ENV_FILE does not carry REDIS_PASSWORD" ;;
esac

trap finish EXIT
say "building and starting the stack (project $PROJECT)"
"${compose[@]}" up -d --build

container_state() {
  local id
  id=$("${compose[@]}" ps -q "$1")
  [ -n "$id" ] || { echo missing; return; }
  docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id"
}

deadline=$((SECONDS + WAIT_S))
say "waiting for init to finish"
while true; do
  read -r status code _ <<<"$(container_state init)"
  [ "$status" = exited ] && break
  [ $SECONDS -lt $deadline ] || fail "init still running after ${WAIT_S}s"
  sleep 10
done
[ "$code" = 0 ] || { "${compose[@]}" logs init; fail "init exited with $code"; }

for service in elasticsearch redis recommender gateway indexer scheduler prometheus; do
  say "waiting for $service to be healthy"
  until [ "$(container_state "$service" | awk '{print $3}')" = healthy ]; do
    [ $SECONDS -lt $deadline ] || fail "$service is not healthy after ${WAIT_S}s: $(container_state "$service")"
    sleep 5
  done
done

say "checking Elasticsearch 8 and the items index"
es_version=$(curl -fsS -u "elastic:$elastic_password" "$ES/" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"]["number"])')
case "$es_version" in 8.*) ;; *) fail "Elasticsearch answers as version $es_version, not 8" ;; esac
curl -fsS -u "elastic:$elastic_password" "$ES/_alias/hotfeed-items" >/dev/null || fail "no hotfeed-items alias in Elasticsearch"

say "asking the gateway for a home feed"
curl -fsS "$GATEWAY/v1/feed/home?page_size=10" | python3 -c '
import json, sys
feed = json.load(sys.stdin)
items, source, model = feed["items"], feed["served_from"], feed["model_version"]
assert items, f"the feed is empty: {feed}"
assert source == "engine", f"served from {source!r}, not the engine: {feed}"
print(f"compose-smoke: {len(items)} items from the engine, model {model!r}", file=sys.stderr)
' || fail "no feed from the engine through the gateway"

say "integration tests against the stack's Elasticsearch and Redis"
if [ $# -eq 0 ]; then
  set -- tests/integration/engine tests/integration/clustering tests/integration/profiles \
    tests/integration/cli tests/integration/api/test_gateway_admin.py -k "not opensearch"
fi
# The engine fixtures build the Elasticsearch URL from HOTFEED_SERVICES_ELASTICSEARCH_PORT.
HOTFEED_ENGINE=elasticsearch \
HOTFEED_ENGINE_URL="$ES" \
HOTFEED_SERVICES_ELASTICSEARCH_PORT=19200 \
HOTFEED_ENGINE_USERNAME=elastic \
HOTFEED_ENGINE_PASSWORD="$elastic_password" \
HOTFEED_REDIS_URL="redis://:$redis_password@127.0.0.1:16379/0" \
  .venv/bin/pytest -q "$@"

say "passed"

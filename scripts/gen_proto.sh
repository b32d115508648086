#!/usr/bin/env bash
# Regenerate the gRPC stubs in recommender/_generated/ from proto/ (protoc via grpcio-tools).
# Importing recommender._generated does the same when the stubs are missing or stale; this
# script forces it, e.g. after switching grpcio-tools versions.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" - <<'PYEOF'
from recommender._generated import STUBS_DIR, generate_stubs

written = generate_stubs()
print(f"generated {len(written)} stub files under {STUBS_DIR}")
PYEOF

#!/usr/bin/env bash
# First run of the compose stack (service `init`, one-shot): the long-running services start
# only after it exits 0. Each step is skipped when its result is already there, so a later
# `docker compose up` passes quickly, and a step that failed is tried again on the next one.
#   1. a data folder: `hotfeed data synth` (for a real sample, run `hotfeed data import ...`
#      into the same folder instead: docs/your-data.md)
#   2. the first session model: `hotfeed train`, published to Redis for every recommender
#   3. user segments and behaviour clusters: `hotfeed cluster run`
#   4. the items index: `hotfeed index full` (index from es_mappings/, alias swap)
# Clustering comes before the index because `index full` reads the behaviour clusters from Redis.
# Sizes: SYNTH_ITEMS, SYNTH_USERS, SYNTH_DAYS and TRAIN_EPOCHS (docker-compose.yml sets them).
set -euo pipefail

data="$HOTFEED_PATHS_DATA_DIR/synth"
checkpoint="$HOTFEED_MODEL_CHECKPOINT"

say() { echo "init: $*" >&2; }

live_index() {
  hotfeed index status | python -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["live"] else 1)'
}

if [ -f "$data/events.parquet" ]; then
  say "data folder $data exists: kept"
else
  say "generating a synthetic marketplace into $data"
  hotfeed data synth --items "${SYNTH_ITEMS:-20000}" --users "${SYNTH_USERS:-10000}" --days "${SYNTH_DAYS:-14}" --end now --out "$data"
fi

if [ -f "$checkpoint" ]; then
  # Not published again: the scheduler's retraining may have published a newer model since.
  say "checkpoint $checkpoint exists: kept"
else
  say "training the first session model into $checkpoint"
  hotfeed train --events "$data/events.parquet" --epochs "${TRAIN_EPOCHS:-5}" --out "$checkpoint" --publish
fi

if live_index; then
  say "the items index is live: kept (the scheduler rebuilds it nightly)"
else
  say "segmenting users, then building the items index"
  hotfeed cluster run --data "$data" --no-progress
  hotfeed index full --data "$data" --quiet
fi
say "done"

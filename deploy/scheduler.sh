#!/usr/bin/env bash
# The scheduled jobs of the compose stack (service `scheduler`), one process each:
#   - behaviour clusters every HOTFEED_CLUSTERING_EVERY_MINUTES: `hotfeed cluster schedule`
#   - continual retraining every RETRAIN_EVERY_HOURS: `hotfeed retrain --every-hours`. Its first
#     round would run at once, right after init trained the model, so it starts one interval late.
#   - the served blend's counting parts rebuilt from the events every REFRESH_EVERY_HOURS, between
#     retrains: `hotfeed model refresh --every-hours`, also one interval late.
#   - a nightly full index rebuild at REBUILD_AT_UTC (HH:MM). The only built-in schedule for it,
#     `hotfeed index schedule`, also runs the event consumer that the `indexer` service already
#     runs, so a small shell loop calls `hotfeed index full` here instead.
# If any of them exits, the others are stopped and this script exits non-zero, so that the
# container's restart policy starts the set again; SIGTERM (docker stop) stops all of them.
set -euo pipefail

data="$HOTFEED_PATHS_DATA_DIR/synth"
retrain_hours="${RETRAIN_EVERY_HOURS:-24}"
refresh_hours="${REFRESH_EVERY_HOURS:-1}"
rebuild_at="${REBUILD_AT_UTC:-03:00}"

say() { echo "scheduler: $*" >&2; }

seconds_until_utc() {
  local now next
  now=$(date -u +%s)
  next=$(date -u -d "today $1" +%s)
  [ "$next" -gt "$now" ] || next=$(date -u -d "tomorrow $1" +%s)
  echo $((next - now))
}

nightly_rebuild() {
  while true; do
    sleep "$(seconds_until_utc "$rebuild_at")"
    say "nightly full rebuild from $data"
    # A failed night leaves the alias on the previous index; the next night tries again.
    hotfeed index full --data "$data" --quiet || say "nightly full rebuild failed (exit $?)"
  done
}

sleep_hours() {
  sleep "$(python -c "print(int(float('$1') * 3600))")"
}

delayed_retrain() {
  sleep_hours "$retrain_hours"
  exec hotfeed retrain --events "$data/events.parquet" --every-hours "$retrain_hours"
}

delayed_refresh() {
  sleep_hours "$refresh_hours"
  exec hotfeed model refresh --events "$data/events.parquet" --every-hours "$refresh_hours"
}

stop_all() {
  trap - TERM INT
  kill $(jobs -p) 2>/dev/null || true
  wait || true
}
trap 'say "stopping"; stop_all; exit 0' TERM INT

hotfeed cluster schedule --data "$data" --no-progress &
delayed_retrain &
delayed_refresh &
nightly_rebuild &
say "cluster schedule, retraining every ${retrain_hours} h, a blend refresh every ${refresh_hours} h and a full rebuild at ${rebuild_at} UTC running"

status=0
wait -n || status=$?
say "a scheduled job exited (status $status); stopping the others"
stop_all
exit $((status == 0 ? 1 : status))

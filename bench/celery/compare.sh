#!/usr/bin/env bash
# Fleet and Celery side by side on this machine: `make bench-compare`.
#
#   1. infra/local/install.sh and bench/celery/install.sh (the servers, Debian's python3-celery & co., each only
#      if missing), then selfcheck.py: the Python workloads against its reference vectors
#   2. build Fleet; stop Fleet's API and workers if they run (so Celery has the machine); start the servers
#   3. Celery: bench/celery/bench.py per workload, each with its own worker that it starts and stops
#      (prefork x cores for noop and the CPU workloads, CELERY_SLEEP_POOL x CELERY_SLEEP_THREADS for sleep)
#   4. Fleet: fleet.sh up with WORKERS workers, fleet-bench (bench/Fleet.Bench) per workload with the same counts
#      (sleep: ONE worker with Worker__IoConcurrency=SLEEP_IO, as make bench does), then the workers put back to
#      WORKERS
#   5. compare.py: one table, Fleet / Celery per workload and metric
#
# Settings (environment): COUNT (scale factor on the counts below, 1), RUNS (3), WORKERS (2), SLEEP_IO (1024),
# CELERY_SLEEP_POOL (threads), CELERY_SLEEP_THREADS (200), COMPARE_WORKLOADS ("noop sha256 sieve heat sleep"),
# FLEET_SKIP_BUILD=1 (use the existing build).
# Counts at COUNT=1: noop 15,000, sha256 500, sieve 600, heat 200, sleep 4,000 -- smaller than make bench's
# (100,000 / 1,000 / 5,000 / 1,000 / 50,000) because Celery needs minutes for what Fleet does in seconds: the
# whole compare takes about 15 minutes on two idle cores, nearly all of it Celery's.
# Results: bench/results/<UTC time>-{celery,fleet}-<workload>.{json,md} and <UTC time>-compare.{json,md}.
# Every Celery process this script starts is stopped by pid at the end, also on an error or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/bench/celery
FLEET_HOME=${FLEET_HOME:-$ROOT/.fleet}
CONFIGURATION=${CONFIGURATION:-Release}
WORKERS=${WORKERS:-2}
COUNT=${COUNT:-1}
RUNS=${RUNS:-3}
SLEEP_IO=${SLEEP_IO:-1024}
CELERY_SLEEP_POOL=${CELERY_SLEEP_POOL:-threads}
CELERY_SLEEP_THREADS=${CELERY_SLEEP_THREADS:-200}
COMPARE_WORKLOADS=${COMPARE_WORKLOADS:-noop sha256 sieve heat sleep}
PYTHON=/usr/bin/python3
BENCH=(dotnet "$ROOT/bench/Fleet.Bench/bin/$CONFIGURATION/net10.0/fleet-bench.dll")
OUT=$ROOT/bench/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
PID_FILE=$FLEET_HOME/run/celery-bench.pids
export CONFIGURATION CELERY_SLEEP_POOL

declare -A BASE=([noop]=15000 [sha256]=500 [sieve]=600 [heat]=200 [sleep]=4000)

log() { printf 'bench-compare: %s\n' "$*" >&2; }

# scaled N: the standard count times COUNT, at least 10
scaled() { awk -v n="$1" -v s="$COUNT" 'BEGIN { v = int(n * s + 0.5); if (v < 10) v = 10; print v }'; }

for w in $COMPARE_WORKLOADS; do
  [[ -n ${BASE[$w]-} ]] || { log "unknown workload $w (known: ${!BASE[*]})"; exit 2; }
done

# ------------------------------------------------------------------------------- stopping what we started

# Celery processes still alive from the pid file (the worker and its pool processes), by pid, and only while the
# pid still runs celery, in case it was reused: after bench.py died without stopping its worker.
stop_celery_leftovers() {
  local pids pid children
  [[ -f $PID_FILE ]] || return 0
  read -r -a pids <"$PID_FILE" || true
  # Pool processes forked after the file was written are found as children of the listed pids; they go first.
  for pid in "${pids[@]}"; do
    read -r -a children < <(ps -o pid= --ppid "$pid" 2>/dev/null | tr '\n' ' ') || true
    pids=("${children[@]}" "${pids[@]}")
  done
  for pid in "${pids[@]}"; do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q celery; then
      log "SIGKILL to leftover Celery process $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$PID_FILE"
}

bench_pid=''
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  # bench.py stops its own worker on SIGTERM; give it the time a warm shutdown takes.
  if [[ -n $bench_pid ]] && kill -0 "$bench_pid" 2>/dev/null; then
    log "stopping the Celery bench (pid $bench_pid)"
    kill -TERM "$bench_pid" 2>/dev/null || true
    for ((i = 0; i < 400; i++)); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$bench_pid" 2>/dev/null && kill -KILL "$bench_pid" 2>/dev/null
  fi
  stop_celery_leftovers
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------------------------------------------------- runs

celery_bench() { # WORKLOAD N
  local w=$1 n=$2 args=()
  [[ $w == sleep ]] && args=(--pool "$CELERY_SLEEP_POOL" --concurrency "$CELERY_SLEEP_THREADS")
  log "celery: $w x $n, $RUNS run(s)"
  (
    set -a
    # shellcheck disable=SC1091
    . "$FLEET_HOME/env"
    set +a
    exec "$PYTHON" "$HERE/bench.py" --workload "$w" --count "$n" --runs "$RUNS" "${args[@]}" \
      --pid-file "$PID_FILE" --worker-log "$FLEET_HOME/logs/celery-worker.log" \
      --json "$OUT/$STAMP-celery-$w.json" --markdown "$OUT/$STAMP-celery-$w.md" >/dev/null
  ) &
  bench_pid=$!
  wait "$bench_pid" || log "warning: the Celery bench of $w exited with $? (see above; failed tasks are in the table)"
  bench_pid=''
  stop_celery_leftovers
}

fleet_bench() { # WORKLOAD N WORKERS
  local w=$1 n=$2 workers=$3
  log "fleet: $w x $n, $RUNS run(s)"
  (
    set -a
    # shellcheck disable=SC1091
    . "$FLEET_HOME/env"
    set +a
    "${BENCH[@]}" --workload "$w" --count "$n" --runs "$RUNS" --workers "$workers" \
      --json "$OUT/$STAMP-fleet-$w.json" --markdown "$OUT/$STAMP-fleet-$w.md" >/dev/null
  ) || log "warning: fleet-bench $w exited with $?"
}

mkdir -p "$OUT" "$FLEET_HOME/run" "$FLEET_HOME/logs"
"$ROOT/infra/local/install.sh" # PostgreSQL and RabbitMQ, if missing (a no-op where make test ran)
"$HERE/install.sh"
(cd "$HERE" && "$PYTHON" selfcheck.py) >&2 || { log "the Python workloads do not match their reference vectors"; exit 1; }
"$ROOT/infra/local/fleet.sh" build
# Celery runs alone: Fleet's API and workers (if any run) stop; PostgreSQL and RabbitMQ stay.
if [[ -f $FLEET_HOME/env ]]; then KEEP_SERVICES=1 "$ROOT/infra/local/fleet.sh" down; fi
"$ROOT/infra/local/services.sh" start

for w in $COMPARE_WORKLOADS; do celery_bench "$w" "$(scaled "${BASE[$w]}")"; done

WORKERS=$WORKERS FLEET_SKIP_BUILD=1 "$ROOT/infra/local/fleet.sh" up
for w in $COMPARE_WORKLOADS; do
  if [[ $w == sleep ]]; then
    log "fleet sleep runs on ONE worker process with Worker__IoConcurrency=$SLEEP_IO"
    KEEP_SERVICES=1 "$ROOT/infra/local/fleet.sh" down
    Worker__IoConcurrency=$SLEEP_IO WORKERS=1 FLEET_SKIP_BUILD=1 "$ROOT/infra/local/fleet.sh" up
    fleet_bench sleep "$(scaled "${BASE[sleep]}")" 1
    KEEP_SERVICES=1 "$ROOT/infra/local/fleet.sh" down
    WORKERS=$WORKERS FLEET_SKIP_BUILD=1 "$ROOT/infra/local/fleet.sh" up
  else
    fleet_bench "$w" "$(scaled "${BASE[$w]}")" "$WORKERS"
  fi
done

shopt -s nullglob
celery_reports=("$OUT/$STAMP"-celery-*.json)
fleet_reports=("$OUT/$STAMP"-fleet-*.json)
((${#celery_reports[@]} + ${#fleet_reports[@]} > 0)) || { log "no reports were written"; exit 1; }
sources=()
((${#celery_reports[@]} == 0)) || sources+=(--celery "${celery_reports[@]}")
((${#fleet_reports[@]} == 0)) || sources+=(--fleet "${fleet_reports[@]}")
"$PYTHON" "$HERE/compare.py" "${sources[@]}" --json "$OUT/$STAMP-compare.json" --markdown "$OUT/$STAMP-compare.md"
log "results: ${OUT#"$ROOT"/}/$STAMP-compare.md (and $STAMP-{celery,fleet}-*.{json,md})"

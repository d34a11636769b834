#!/usr/bin/env bash
# The standard benchmark against the local fleet: `make bench`. The benchmark program is fleet-bench
# (bench/Fleet.Bench), built with the solution beside the `fleet` CLI.
#
#   1. fleet.sh up with WORKERS workers (build, migrate)
#   2. fleet-bench: noop (closed loop with the raw-broker baseline, then open loop at half the max rate),
#      sha256, sieve, heat
#   3. the workers restarted as ONE worker with Worker__IoConcurrency=SLEEP_IO, then fleet-bench sleep
#   4. the workers put back to WORKERS (the servers keep running; make down stops everything)
#
# Settings (environment): COUNT (scale factor on every task count, 1; e.g. 0.1 for a quick run), RUNS (3),
# WORKERS (2), SLEEP_IO (1024), BENCH_WORKLOADS ("noop sha256 sieve heat sleep"), OPEN_SECONDS (20),
# BENCH_ARGS (extra arguments for every fleet-bench call). Results: bench/results/<UTC time>-*.{json,md} and
# bench/results/<UTC time>.md (all tables).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_HOME=${FLEET_HOME:-$ROOT/.fleet}
[[ $FLEET_HOME == /* ]] || FLEET_HOME=$PWD/$FLEET_HOME
export FLEET_HOME
CONFIGURATION=${CONFIGURATION:-Release}
WORKERS=${WORKERS:-2}
COUNT=${COUNT:-1}
RUNS=${RUNS:-3}
SLEEP_IO=${SLEEP_IO:-1024}
OPEN_SECONDS=${OPEN_SECONDS:-20}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-noop sha256 sieve heat sleep}
read -r -a EXTRA <<<"${BENCH_ARGS:-}"
BENCH=(dotnet "$ROOT/bench/Fleet.Bench/bin/$CONFIGURATION/net10.0/fleet-bench.dll")
OUT=$ROOT/bench/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
export CONFIGURATION

SCRIPT=bench
# shellcheck source=infra/local/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/errors.sh"

# scaled N: the standard count times COUNT, at least 10
scaled() { awk -v n="$1" -v s="$COUNT" 'BEGIN { v = int(n * s + 0.5); if (v < 10) v = 10; print v }'; }

bench() { # NAME ARGS...: one fleet-bench invocation, its JSON and Markdown under bench/results
  local name=$1
  shift
  log "fleet-bench $*"
  (
    set -a
    # shellcheck disable=SC1091
    . "$FLEET_HOME/env"
    set +a
    "${BENCH[@]}" --runs "$RUNS" "$@" "${EXTRA[@]}" \
      --json "$OUT/$STAMP-$name.json" --markdown "$OUT/$STAMP-$name.md"
  ) || log "warning: fleet-bench $name exited with $?"
}

mkdir -p "$OUT"
WORKERS=$WORKERS "$ROOT/infra/local/fleet.sh" up || exit # fleet.sh said why
[[ -f ${BENCH[1]} ]] || die "${BENCH[1]} not found (build first: make build)"
for w in $BENCH_WORKLOADS; do
  case $w in
    noop) bench noop --workload noop --count "$(scaled 100000)" --rate half --open-seconds "$OPEN_SECONDS" --workers "$WORKERS" ;;
    sha256) bench sha256 --workload sha256 --count "$(scaled 1000)" --workers "$WORKERS" ;;
    sieve) bench sieve --workload sieve --count "$(scaled 5000)" --workers "$WORKERS" ;;
    heat) bench heat --workload heat --count "$(scaled 1000)" --workers "$WORKERS" ;;
    sleep)
      log "sleep runs on ONE worker process with Worker__IoConcurrency=$SLEEP_IO"
      KEEP_SERVICES=1 "$ROOT/infra/local/fleet.sh" down || exit
      Worker__IoConcurrency=$SLEEP_IO WORKERS=1 FLEET_SKIP_BUILD=1 "$ROOT/infra/local/fleet.sh" up || exit # fleet.sh said why
      bench sleep --workload sleep --count "$(scaled 50000)" --workers 1
      KEEP_SERVICES=1 "$ROOT/infra/local/fleet.sh" down || exit
      WORKERS=$WORKERS FLEET_SKIP_BUILD=1 "$ROOT/infra/local/fleet.sh" up || exit # fleet.sh said why
      ;;
    *) log "unknown workload $w (known: noop sha256 sieve heat sleep)"; exit 2 ;;
  esac
done

shopt -s nullglob
parts=("$OUT/$STAMP"-*.md)
if ((${#parts[@]} > 0)); then
  cat "${parts[@]}" >"$OUT/$STAMP.md"
  log "results: ${OUT#"$ROOT"/}/$STAMP.md (and $STAMP-*.json)"
fi

#!/usr/bin/env bash
# The standard benchmark against the local fleet: `make bench`. The benchmark program is fleet-bench
# (bench/Fleet.Bench), built with the solution beside the `fleet` CLI.
#
#   1. fleet.sh up with WORKERS workers (build, migrate)
#   2. fleet-bench: noop (closed loop with the raw-broker baseline, then open loop at half the max rate),
#      sha256, sieve, heat
#   3. away: sha256, sieve and heat again with the workers AWAY_MS (round trip) from PostgreSQL and RabbitMQ,
#      through `fleet-bench delay-proxy` (AWAY_MS/2 each way; the round trip it measures is in the table's title)
#   4. process: sha256, sieve and heat again with the workers running them in their process lane (child processes)
#   5. the workers restarted as ONE worker with Worker__IoConcurrency=SLEEP_IO, then fleet-bench sleep
#   6. the workers put back to WORKERS (the servers keep running; make down stops everything)
#
# Settings (environment): COUNT (scale factor on every task count, 1; e.g. 0.1 for a quick run), RUNS (3),
# WORKERS (2), SLEEP_IO (1024), BENCH_WORKLOADS ("noop sha256 sieve heat away process sleep"), AWAY_MS (1), OPEN_SECONDS (20),
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
AWAY_MS=${AWAY_MS:-1}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-noop sha256 sieve heat away process sleep}
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

# fleet-bench delay-proxy in front of PostgreSQL and RabbitMQ (AWAY_MS/2 each way), then the workers restarted with
# their connection strings pointed at it. Sets PROXY_PID and PROXY_RTT (the round trip the proxy measured).
PROXY_PID=
start_away() {
  local pg amqp pg_host pg_port amqp_host amqp_port ports i
  pg=$(. "$FLEET_HOME/env" && printf '%s' "$FLEET_WORKER_PG_CONNECTION")
  amqp=$(. "$FLEET_HOME/env" && printf '%s' "$FLEET_WORKER_AMQP_URL")
  [[ $pg =~ Host=([^\;]+)\;Port=([0-9]+) ]] || die "no Host=...;Port=... in FLEET_WORKER_PG_CONNECTION (run make up)"
  pg_host=${BASH_REMATCH[1]} pg_port=${BASH_REMATCH[2]}
  [[ $amqp =~ @([^:/]+):([0-9]+)/ ]] || die "no @host:port/ in FLEET_WORKER_AMQP_URL (run make up)"
  amqp_host=${BASH_REMATCH[1]} amqp_port=${BASH_REMATCH[2]}
  ports=$FLEET_HOME/run/delay-proxy.ports
  rm -f "$ports"
  "${BENCH[@]}" delay-proxy --one-way-ms "$(awk -v r="$AWAY_MS" 'BEGIN { print r / 2 }')" \
    --to "$pg_host:$pg_port" --to "$amqp_host:$amqp_port" --ports-file "$ports" \
    >>"$FLEET_HOME/logs/delay-proxy.log" 2>&1 &
  PROXY_PID=$!
  for ((i = 0; i < 100; i++)); do [[ -s $ports ]] && break; sleep 0.1; done
  [[ -s $ports ]] || die "delay-proxy did not start (log: $FLEET_HOME/logs/delay-proxy.log)"
  PROXY_RTT=$(sed -n 's/^# //p' "$ports")
  log "delay-proxy (pid $PROXY_PID): $PROXY_RTT"
  restart_workers "FLEET_WORKER_PG=${pg/Port=$pg_port/Port=$(awk -v p="$pg_port" '$1 == p { print $2 }' "$ports")}" \
    "FLEET_WORKER_AMQP=${amqp/:$amqp_port\//:$(awk -v p="$amqp_port" '$1 == p { print $2 }' "$ports")/}"
}

# The workers back on direct connections, then the proxy stopped (by its pid: it is this script's child).
stop_away() {
  restart_workers
  if [[ -n $PROXY_PID ]]; then
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
  fi
  rm -f "$FLEET_HOME/run/delay-proxy.ports"
}
# cpu_trio SUFFIX LABEL: sha256, sieve and heat with the standard counts, labelled, results named <workload>-SUFFIX.
cpu_trio() {
  bench "sha256-$1" --workload sha256 --count "$(scaled 1000)" --workers "$WORKERS" --label "$2"
  bench "sieve-$1" --workload sieve --count "$(scaled 5000)" --workers "$WORKERS" --label "$2"
  bench "heat-$1" --workload heat --count "$(scaled 1000)" --workers "$WORKERS" --label "$2"
}

# restart_workers [VAR=value ...]: the workers stopped and started again with these settings (the servers keep running).
restart_workers() {
  KEEP_SERVICES=1 "$ROOT/infra/local/fleet.sh" down || exit
  env "$@" WORKERS="${WORKERS_NOW:-$WORKERS}" FLEET_SKIP_BUILD=1 "$ROOT/infra/local/fleet.sh" up || exit # fleet.sh said why
}

trap '[[ -z $PROXY_PID ]] || kill "$PROXY_PID" 2>/dev/null || true' EXIT

mkdir -p "$OUT"
WORKERS=$WORKERS "$ROOT/infra/local/fleet.sh" up || exit # fleet.sh said why
[[ -f ${BENCH[1]} ]] || die "${BENCH[1]} not found (build first: make build)"
for w in $BENCH_WORKLOADS; do
  case $w in
    noop) bench noop --workload noop --count "$(scaled 100000)" --rate half --open-seconds "$OPEN_SECONDS" --workers "$WORKERS" ;;
    sha256) bench sha256 --workload sha256 --count "$(scaled 1000)" --workers "$WORKERS" ;;
    sieve) bench sieve --workload sieve --count "$(scaled 5000)" --workers "$WORKERS" ;;
    heat) bench heat --workload heat --count "$(scaled 1000)" --workers "$WORKERS" ;;
    away)
      log "sha256, sieve and heat with the workers $AWAY_MS ms (round trip) from PostgreSQL and RabbitMQ"
      start_away
      label="workers ${AWAY_MS} ms (round trip) from PostgreSQL and RabbitMQ through fleet-bench delay-proxy, $PROXY_RTT"
      cpu_trio away "$label"
      stop_away
      ;;
    process)
      log "sha256, sieve and heat in the workers' process lane (one child process per CPU-lane thread)"
      restart_workers Worker__ProcessTypes__0=sha256 Worker__ProcessTypes__1=sieve Worker__ProcessTypes__2=heat
      label="process lane: each task in a child process of its worker (Worker:ProcessTypes = sha256, sieve, heat)"
      cpu_trio process "$label"
      restart_workers
      ;;
    sleep)
      log "sleep runs on ONE worker process with Worker__IoConcurrency=$SLEEP_IO"
      WORKERS_NOW=1 restart_workers Worker__IoConcurrency="$SLEEP_IO"
      bench sleep --workload sleep --count "$(scaled 50000)" --workers 1
      restart_workers
      ;;
    *) log "unknown workload $w (known: noop sha256 sieve heat away process sleep)"; exit 2 ;;
  esac
done

shopt -s nullglob
parts=("$OUT/$STAMP"-*.md)
if ((${#parts[@]} > 0)); then
  cat "${parts[@]}" >"$OUT/$STAMP.md"
  log "results: ${OUT#"$ROOT"/}/$STAMP.md (and $STAMP-*.json)"
fi

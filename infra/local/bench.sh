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
#   queues (only when named in BENCH_WORKLOADS): classic against quorum lanes on the same broker, interleaved
#      (classic, quorum, classic, quorum, ... QUEUE_ROUNDS times): before each, the workers stopped, the lane queues of
#      the other type deleted (they are empty between runs) and the workers started with RabbitMq__QueueType; then
#      fleet-bench QUEUE_WORKLOADS (noop closed loop with the raw-broker baseline on a queue of the same type, and
#      sha256), the broker's memory sampled, and a backlog of the noop run's size left in a queue of the type to read
#      what it costs the broker's memory; a summary table with the load average of each invocation
#      (<UTC time>-queues.md). BROKERS=3 runs it on a three-node loopback cluster (infra/local/rabbit-cluster.sh,
#      started if it is not running and stopped afterwards): the workers, the API and fleet-bench get the cluster's
#      multi-node addresses, and the broker's CPU and memory are those of its three nodes.
#
# Settings (environment): COUNT (scale factor on every task count, 1; e.g. 0.1 for a quick run), RUNS (3),
# WORKERS (2), SLEEP_IO (1024), BENCH_WORKLOADS ("noop sha256 sieve heat away process sleep"), AWAY_MS (1), OPEN_SECONDS (20),
# BENCH_ARGS (extra arguments for every fleet-bench call), QUEUE_ROUNDS (2), QUEUE_WORKLOADS ("noop sha256"),
# QUEUE_TYPES ("classic quorum"), BROKERS (1, or 3 for the queues comparison on a cluster). Results: bench/results/<UTC time>-*.{json,md} and
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
QUEUE_ROUNDS=${QUEUE_ROUNDS:-2}
QUEUE_WORKLOADS=${QUEUE_WORKLOADS:-noop sha256}
QUEUE_TYPES=${QUEUE_TYPES:-classic quorum}
BROKERS=${BROKERS:-1}
# With BROKERS=3: the cluster's addresses, for fleet-bench (bench) and the management API (drop_other_lanes).
BENCH_AMQP_URL=
BENCH_MANAGEMENT_URL=
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
    [[ -z $BENCH_AMQP_URL ]] || export ConnectionStrings__rabbitmq=$BENCH_AMQP_URL
    [[ -z $BENCH_MANAGEMENT_URL ]] || export FLEET_RABBITMQ_MANAGEMENT_URL=$BENCH_MANAGEMENT_URL
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

# The lane queues (and their _error, _skipped and retry-rung queues) that are not of type $1, deleted through the
# management API, so that workers started with RabbitMq__QueueType=$1 declare them anew. Only with the workers
# stopped, and only empty queues: a message in one would be lost, so the script stops instead. The counts are read
# after the broker's statistics interval (5 s) has passed since the workers stopped: before that they can be stale.
LANE_QUEUES='^fleet-(cpu|io)(\.dispatch)?(_error|_skipped|\.retry\.[0-9]+s)?$'
drop_other_lanes() {
  local type=$1 mgmt name qtype messages
  mgmt=${BENCH_MANAGEMENT_URL:-$(. "$FLEET_HOME/env" && printf '%s' "$FLEET_RABBITMQ_MANAGEMENT_URL")}
  [[ -n $mgmt ]] || die "FLEET_RABBITMQ_MANAGEMENT_URL is not in $FLEET_HOME/env (run make up)"
  sleep 6
  while IFS=$'\t' read -r name qtype messages; do
    [[ $name =~ $LANE_QUEUES && $qtype != "$type" ]] || continue
    ((${messages:-0} == 0)) || die "queue $name ($qtype) holds $messages messages: not deleted; drain it (start the workers), then run again"
    log "deleting the $qtype queue $name (the workers declare it again as $type)"
    curl -fsS -o /dev/null -X DELETE "${mgmt%/}/api/queues/fleet/$name" ||
      die "deleting queue $name through the management API at FLEET_RABBITMQ_MANAGEMENT_URL failed"
  done < <(curl -fsS "${mgmt%/}/api/queues/fleet?columns=name,type,messages" | jq -r '.[] | [.name, .type, (.messages // 0)] | @tsv') ||
    die "listing the queues through the management API at FLEET_RABBITMQ_MANAGEMENT_URL failed"
}

# queue_types: the classic/quorum comparison (see the header), results <STAMP>-queues-*.{json,md} and the summary.
queue_types() {
  local round type w name load summary=$OUT/$STAMP-queues.md cluster_started=0
  local -a fleet_env=()
  case $BROKERS in
    1) ;;
    3)
      local cluster=$ROOT/infra/local/rabbit-cluster.sh
      "$cluster" status >/dev/null 2>&1 || { "$cluster" start 3 || exit; cluster_started=1; } # it said why
      # shellcheck disable=SC1091
      . "${RABBIT_CLUSTER_DIR:-$FLEET_HOME/rabbit-cluster}/env"
      BENCH_AMQP_URL=$RABBIT_CLUSTER_AMQP_URL BENCH_MANAGEMENT_URL=$RABBIT_CLUSTER_MANAGEMENT_URL
      fleet_env=("FLEET_WORKER_AMQP=$RABBIT_CLUSTER_WORKER_AMQP_URL" "FLEET_API_AMQP=$RABBIT_CLUSTER_API_AMQP_URL")
      ;;
    *) die "BROKERS must be 1 or 3, not '$BROKERS'" ;;
  esac
  for ((round = 1; round <= QUEUE_ROUNDS; round++)); do
    for type in $QUEUE_TYPES; do
      KEEP_SERVICES=1 "$ROOT/infra/local/fleet.sh" down || exit
      drop_other_lanes "$type"
      env ${fleet_env[@]+"${fleet_env[@]}"} RabbitMq__QueueType="$type" FLEET_SKIP_BUILD=1 WORKERS="$WORKERS" "$ROOT/infra/local/fleet.sh" up || exit
      for w in $QUEUE_WORKLOADS; do
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        case $w in
          noop) set -- --count "$(scaled 100000)" ;;
          # No Parallel.For ceiling here: the comparison is between queue types, and it would cost 5 s per invocation.
          sha256) set -- --count "$(scaled 1000)" --parallel-for-seconds 0 ;;
          sieve) set -- --count "$(scaled 5000)" --parallel-for-seconds 0 ;;
          heat) set -- --count "$(scaled 1000)" --parallel-for-seconds 0 ;;
          *) die "QUEUE_WORKLOADS: unknown workload $w (known: noop sha256 sieve heat)" ;;
        esac
        RabbitMq__QueueType=$type bench "queues-$w-$type-$round" --workload "$w" "$@" --workers "$WORKERS" \
          --queue-type "$type" --label "$type lanes, $BROKERS broker node(s), round $round, load average before $load"
      done
    done
  done
  # The fleet as it was: on its own broker (the cluster stopped if this run started it), its lanes of the type its
  # .fleet/env says, which its next `make up` starts the workers with.
  KEEP_SERVICES=1 "$ROOT/infra/local/fleet.sh" down || exit
  ((cluster_started == 0)) || "$ROOT/infra/local/rabbit-cluster.sh" stop || exit
  BENCH_AMQP_URL= BENCH_MANAGEMENT_URL=
  drop_other_lanes "$(. "$FLEET_HOME/env" && printf '%s' "${RabbitMq__QueueType:-classic}")"
  FLEET_SKIP_BUILD=1 WORKERS=$WORKERS "$ROOT/infra/local/fleet.sh" up || exit
  # The summary: one line per invocation, from its JSON.
  shopt -s nullglob
  {
    printf '| lanes | nodes | round | workload | N | tasks/s (median) | p50 ms | p95 ms | raw broker msg/s | backlog of N: queue MB | backlog of N: mem_used MB before, after | broker mem_used peak MB | broker RSS peak MB | load before |\n'
    printf '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
    for name in "$OUT/$STAMP"-queues-*.json; do
      jq -r '
        def med: sort | if length == 0 then null else .[(length / 2 | floor)] end;
        def mb: if . == null then "-" else (. / 1048576 | round | tostring) end;
        def r0: if . == null then "-" else (round | tostring) end;
        .workloads[0] as $w |
        [ (.queueType | ascii_downcase), (.brokerNodes | tostring), (.label | capture("round (?<r>[0-9]+)").r), $w.workload,
          ($w.count | tostring), ([$w.runs[].throughput] | med | r0), ([$w.runs[].latencyP50Ms] | med | r0),
          ([$w.runs[].latencyP95Ms] | med | r0), ([.rawBroker[].ratePerSecond] | med | r0),
          (.backlog.queueMemoryBytes | mb),
          (if .backlog == null then "-" else "\(.backlog.memUsedBeforeBytes | mb), \(.backlog.memUsedAfterBytes | mb)" end),
          ([$w.runs[].brokerMemory.memUsedPeakBytes, .rawBroker[].brokerMemory.memUsedPeakBytes] | map(select(. != null)) | max | mb),
          ([$w.runs[].brokerMemory.peakRssBytes, .rawBroker[].brokerMemory.peakRssBytes] | map(select(. != null)) | max | mb),
          (.label | capture("load average before (?<l>.*)").l) ] | "| " + join(" | ") + " |"' "$name"
    done
  } >"$summary" || die "writing $summary failed"
  cat "$summary"
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
    queues) queue_types ;;
    *) log "unknown workload $w (known: noop sha256 sieve heat away process sleep queues)"; exit 2 ;;
  esac
done

shopt -s nullglob
parts=("$OUT/$STAMP"-*.md)
if ((${#parts[@]} > 0)); then
  cat "${parts[@]}" >"$OUT/$STAMP.md"
  log "results: ${OUT#"$ROOT"/}/$STAMP.md (and $STAMP-*.json)"
fi

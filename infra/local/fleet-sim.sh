#!/usr/bin/env bash
# make fleet-sim HOSTS=3: a fleet of HOSTS simulated servers on this machine (network namespaces, see
# netsim.sh), each with its own address and its own worker process, against a private PostgreSQL and RabbitMQ
# that listen on the simulation's bridge. Runs the heat demo (COUNT tasks, 1,000 by default) across them,
# prints from SQL how many tasks each server ran and its throughput, then removes everything it made: workers,
# namespaces, links, servers and their data. Ctrl-C or an error tears down the same way.
#
# BROKERS=3 (1 by default: one RabbitMQ node on the bridge, as above) gives each of the first BROKERS servers a
# RabbitMQ node of its own (infra/local/rabbit-cluster.sh, placement netns), clustered, with quorum lanes replicated
# on every node; the workers and the demo get every node's address. The queues per node are printed before and
# after, and with FAULTS=1 (the default when BROKERS >= 3) the run loses node 1 to SIGKILL at a fifth of the run
# (restarted once the run went on without it), then server 2 (its worker and its node) to a 30 s network cut at
# half of it: every task still ends succeeded (COUNT is then 2,000 by default).
# Settings: HOSTS (3), COUNT (1000), SIM_CPU (CPU-lane threads per server; default cores / HOSTS, at least 1),
# FLEET_SKIP_BUILD=1 (use the existing build), CONFIGURATION (Release), FLEET_SIM_KEEP_DATA=1 (leave
# .fleet/sim/ for inspection). The servers take the first free ports from 55700 (PostgreSQL), 5900 (AMQP) and
# 15900 (management), so a `make up` fleet keeps running untouched. Needs root (ip netns). A failing step says
# why in one line on stderr before the teardown.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HOSTS=${HOSTS:-3}
BROKERS=${BROKERS:-1}
# With faults the run must outlast a node's restart (up to a minute on a loaded machine) and a 30 s cut.
COUNT=${COUNT:-$((BROKERS >= 3 && ${FAULTS:-1} == 1 ? 2000 : 1000))}
CONFIGURATION=${CONFIGURATION:-Release}
NETSIM=$ROOT/infra/local/netsim.sh
CLUSTER=$ROOT/infra/local/rabbit-cluster.sh
SERVICES=$ROOT/infra/local/services.sh
CLI_DLL=$ROOT/src/Fleet.Cli/bin/$CONFIGURATION/net10.0/fleet.dll
WORKER_DLL=$ROOT/src/Fleet.Worker/bin/$CONFIGURATION/net10.0/Fleet.Worker.dll
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

export NETSIM_OWNER=$$

SCRIPT=fleet-sim
# shellcheck source=infra/local/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/errors.sh"

# The first port from $1 up that nothing accepts connections on at 127.0.0.1 and that is not among $2...
free_port() {
  local p=$1
  shift
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || [[ " $* " == *" $p "* ]]; do p=$((p + 1)); done
  printf '%s' "$p"
}

if ! [[ $HOSTS =~ ^[0-9]+$ ]] || ((HOSTS < 1 || HOSTS > 50)); then die "HOSTS must be 1 to 50"; fi
if ! [[ $COUNT =~ ^[0-9]+$ ]] || ((COUNT < 1)); then die "COUNT must be a positive number"; fi
if ! [[ $BROKERS =~ ^[0-9]+$ ]] || ((BROKERS < 1 || BROKERS > HOSTS)); then die "BROKERS must be 1 to HOSTS ($HOSTS)"; fi
FAULTS=${FAULTS:-$((BROKERS >= 3 ? 1 : 0))}
[[ $FAULTS == [01] ]] || die "FAULTS must be 0 or 1"
((FAULTS == 0 || BROKERS >= 3)) || die "FAULTS=1 needs BROKERS=3 or more: a cluster that loses one node of two stops (pause_minority)"
((EUID == 0)) || die "needs root: the simulated servers are network namespaces (ip netns)"

# The simulation's own servers: own FLEET_HOME, node name and free ports (other fleets of this machine keep theirs).
export FLEET_HOME=$ROOT/.fleet/sim

# One simulation per clone at a time (fd 9 is closed for every long-lived process started below). What a run
# that could not tear down left in .fleet/sim (its servers) is removed first.
mkdir -p "$ROOT/.fleet"
exec 9>"$ROOT/.fleet/sim.lock"
flock -n 9 || die "another make fleet-sim runs in this clone"
if [[ -d $FLEET_HOME ]]; then
  log "removing what an earlier run left in ${FLEET_HOME#"$ROOT"/}"
  "$SERVICES" purge || exit # services.sh said why
fi

FLEET_PG_PORT=$(free_port 55700)
FLEET_AMQP_PORT=$(free_port 5900)
FLEET_AMQP_MGMT_PORT=$(free_port 15900)
FLEET_AMQP_PROMETHEUS_PORT=$(free_port 15920 "$FLEET_AMQP_MGMT_PORT")
FLEET_AMQP_DIST_PORT=$(free_port 25900)
export FLEET_PG_PORT FLEET_AMQP_PORT FLEET_AMQP_MGMT_PORT FLEET_AMQP_PROMETHEUS_PORT FLEET_AMQP_DIST_PORT
export FLEET_RABBITMQ_NODE=fleetsim$$@localhost

SIM_CPU=${SIM_CPU:-$(($(nproc) / HOSTS > 0 ? $(nproc) / HOSTS : 1))}
# SIGTERM to SIGKILL for the workers: longer than a worker's own shutdown timeout (DrainSeconds 30 + 15 s).
STOP_TIMEOUT=${FLEET_STOP_TIMEOUT:-60}
[[ $STOP_TIMEOUT =~ ^[0-9]+$ ]] || die "FLEET_STOP_TIMEOUT must be a number of seconds, not '$STOP_TIMEOUT'"

declare -A WORKER_PID=()
NET_UP=0 SERVICES_UP=0 CLUSTER_UP=0

stop_workers() {
  local h pid i
  for h in "${!WORKER_PID[@]}"; do kill -TERM "${WORKER_PID[$h]}" 2>/dev/null || true; done
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    for h in "${!WORKER_PID[@]}"; do kill -0 "${WORKER_PID[$h]}" 2>/dev/null || unset 'WORKER_PID[$h]'; done
    ((${#WORKER_PID[@]} == 0)) && return 0
    sleep 0.1
  done
  for pid in "${WORKER_PID[@]}"; do log "worker $pid did not stop within $STOP_TIMEOUT s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; done
}

teardown() {
  local rc=$?
  # Nothing stops the teardown: not a second Ctrl-C, not a closed terminal, not the end of a `| tee` that the
  # same Ctrl-C ended (writes then fail instead of killing this script, and the output goes to /dev/null).
  trap '' PIPE INT TERM HUP
  trap - EXIT ERR
  set +e
  exec 3>&2
  # Why it failed was said just above (the failing command, or die's message); the exit status says how.
  local why=''
  ((rc == 0)) || why=" (exit $rc)"
  if ! printf 'fleet-sim: tearing down%s\n' "$why" >&3 2>/dev/null; then exec >/dev/null 2>&1; fi
  exec 3>&-
  [[ -n ${DEMO_PID-} ]] && kill -TERM "$DEMO_PID" 2>/dev/null
  stop_workers
  ((CLUSTER_UP)) && { "$CLUSTER" stop || true; }
  ((NET_UP)) && { "$NETSIM" down || true; }
  if ((SERVICES_UP)); then
    if [[ ${FLEET_SIM_KEEP_DATA:-0} == 1 ]]; then "$SERVICES" stop || true; log "kept $FLEET_HOME"; else "$SERVICES" purge || true; fi
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP


# --------------------------------------------------------------------------------------------- network
"$NETSIM" sweep || exit # netsim.sh said why
declare -A NS=() ADDR=()
NET_UP=1
while IFS='=' read -r key value; do
  case $key in
    NETSIM_BRIDGE_ADDR) BRIDGE=$value ;;
    NETSIM_HOST_*) read -r ns addr _ <<<"$value"; NS[${key#NETSIM_HOST_}]=$ns ADDR[${key#NETSIM_HOST_}]=$addr ;;
  esac
done < <("$NETSIM" up "$HOSTS" 9>&-)
[[ -n ${BRIDGE-} && ${#NS[@]} == "$HOSTS" ]] || die "netsim.sh up did not report the bridge and $HOSTS hosts"

# --------------------------------------------------------------------------------------------- servers
SERVICES_UP=1
if ((BROKERS == 1)); then
  FLEET_LISTEN_EXTRA=$BRIDGE/24 "$SERVICES" start || exit # services.sh said why
else
  FLEET_LISTEN_EXTRA=$BRIDGE/24 "$SERVICES" start postgresql || exit # services.sh said why
  export RABBIT_CLUSTER_PLACEMENT=netns RABBIT_CLUSTER_QUEUE_TYPE=quorum
  CLUSTER_UP=1
  "$CLUSTER" start "$BROKERS" 9>&- || exit # rabbit-cluster.sh said why
  # shellcheck disable=SC1091
  . "$FLEET_HOME/rabbit-cluster/env"
fi
if [[ ${FLEET_SKIP_BUILD:-0} != 1 ]]; then
  log "dotnet build Fleet.sln -c $CONFIGURATION"
  (cd "$ROOT" && dotnet build Fleet.sln -c "$CONFIGURATION" -v q -nologo) >&2 || die "the build failed"
fi
[[ -f $CLI_DLL && -f $WORKER_DLL ]] || die "build output missing ($CLI_DLL, $WORKER_DLL)"
set -a
# shellcheck disable=SC1091
. "$FLEET_HOME/env"
set +a
if ((BROKERS > 1)); then
  # The demo's producer (the CLI) gets every node too.
  export ConnectionStrings__rabbitmq=$RABBIT_CLUSTER_AMQP_URL RabbitMq__QueueType=quorum
fi
dotnet "$CLI_DLL" migrate >&2

# --------------------------------------------------------------------------------------------- workers
# Inside a host the servers are at the bridge address, not 127.0.0.1: another host, so the database connection says
# that this private bridge runs without TLS (Fleet refuses an unverified TLS mode toward another host).
# shellcheck disable=SC2154 # both come from .fleet/sim/env
{
  # The workers' own logins (fleet_worker), as make up's workers use; the private bridge runs without TLS.
  PG_IN_HOST="${FLEET_WORKER_PG_CONNECTION/Host=127.0.0.1/Host=$BRIDGE};SSL Mode=Disable"
  AMQP_IN_HOST=${FLEET_WORKER_AMQP_URL/@127.0.0.1:/@$BRIDGE:}
}
QUEUE_TYPE=classic
((BROKERS > 1)) && QUEUE_TYPE=quorum
# The cluster's worker URL with server N's own node first (a server without a node keeps the order).
amqp_for_host() {
  ((BROKERS > 1)) || { printf '%s' "$AMQP_IN_HOST"; return; }
  local url=$RABBIT_CLUSTER_WORKER_AMQP_URL own=${ADDR[$1]}:5672 hosts
  hosts=${url##*@} hosts=${hosts%%/*}
  if [[ ,$hosts, == *,$own,* ]]; then
    hosts=$own$(printf ',%s' $(tr ',' '\n' <<<"$hosts" | grep -vx "$own"))
  fi
  printf '%s@%s/%s' "${url%@*}" "$hosts" "${url##*/}"
}
mkdir -p "$FLEET_HOME/logs"
for ((n = 1; n <= HOSTS; n++)); do
  logf=$FLEET_HOME/logs/server-$n.log
  # Own session, so that Ctrl-C reaches this script only and the workers get an orderly SIGTERM from teardown.
  setsid ip netns exec "${NS[$n]}" env \
    ConnectionStrings__fleetdb="$PG_IN_HOST" ConnectionStrings__rabbitmq="$(amqp_for_host "$n")" RabbitMq__QueueType=$QUEUE_TYPE \
    Worker__HostName="server-$n" Worker__CpuConcurrency="$SIM_CPU" Logging__LogLevel__Default=Warning \
    dotnet "$WORKER_DLL" </dev/null >"$logf" 2>&1 9>&- &
  WORKER_PID[$n]=$!
  log "server-$n: ${ADDR[$n]} (namespace ${NS[$n]}), worker pid ${WORKER_PID[$n]}, $SIM_CPU CPU-lane thread(s), log ${logf#"$ROOT"/}"
done

psql_q() { psql "$FLEET_PG_DSN" -X -q -v ON_ERROR_STOP=1 "$@"; }
for ((i = 0; ; i++)); do
  live=$(psql_q -At -c "SELECT count(DISTINCT host) FROM fleet.workers WHERE state = 'running' AND last_seen_at > now() - interval '30 seconds'")
  ((live == HOSTS)) && break
  for n in "${!WORKER_PID[@]}"; do
    kill -0 "${WORKER_PID[$n]}" 2>/dev/null || { tail -n 20 "$FLEET_HOME/logs/server-$n.log" >&2; die "the worker of server-$n exited"; }
  done
  ((i < 240)) || die "only $live of $HOSTS servers registered in fleet.workers within 120 s"
  sleep 0.5
done
log "$HOSTS servers registered; their connections come from their own addresses:"
psql_q -c "SELECT client_addr, count(*) AS connections FROM pg_stat_activity WHERE datname = current_database() AND client_addr <> '127.0.0.1' GROUP BY 1 ORDER BY 1" >&2

# --------------------------------------------------------------------------------------------- the run
# Per node: running or not, the worker connections on it, and the queues it leads with their messages (management
# API of the first node that answers; a quorum queue's messages are held by every member, served by its leader).
node_table() {
  local i mgmt url queues conns
  for ((i = 1; i <= BROKERS; i++)); do
    url=${RABBIT_CLUSTER_MANAGEMENT_URL/@*:/@${ADDR[$i]}:}
    queues=$(curl -sf -m 5 "${url}api/queues/fleet?columns=name,type,node,members,messages" 2>/dev/null) || continue
    conns=$(curl -sf -m 5 "${url}api/connections?columns=node,client_properties" 2>/dev/null) || conns='[]'
    printf 'node                       state    connections  queues led (messages)\n'
    for ((n = 1; n <= BROKERS; n++)); do
      local name=fleet@${ADDR[$n]} state=down
      "$CLUSTER" ctl "$n" ping >/dev/null 2>&1 && state=running
      printf '%-26s %-8s %-12s %s\n' "$name" "$state" \
        "$(jq --arg n "$name" '[.[] | select(.node == $n)] | length' <<<"$conns")" \
        "$(jq -r --arg n "$name" '[.[] | select(.node == $n and (.name | contains("fleet-control") | not)) | "\(.name) (\(.messages // 0))"] | join(", ")' <<<"$queues")"
    done
    # Without the workers' own control queues (classic, auto-delete, one per worker).
    "$CLUSTER" queues "$i" 2>/dev/null | grep -v fleet-control | column -t -s $'\t' || true
    return 0
  done
  echo "(no node's management API answered)"
}

succeeded() { psql_q -At -c "SELECT count(*) FROM fleet.tasks WHERE status = 'succeeded'"; }
wait_succeeded() {
  while (($(succeeded) < $1)); do
    kill -0 "$DEMO_PID" 2>/dev/null || return 0
    sleep 0.5
  done
}

if ((BROKERS > 1)); then
  echo
  echo "The broker cluster before the run:"
  node_table
fi
dotnet "$CLI_DLL" demo --count "$COUNT" 9>&- &
DEMO_PID=$!
if ((FAULTS)); then
  wait_succeeded $((COUNT / 5))
  log "$(succeeded) of $COUNT succeeded: SIGKILL to broker node 1 (server-1)"
  "$CLUSTER" kill 1
  at=$(succeeded)
  wait_succeeded $((at + COUNT / 10))
  log "$(succeeded) of $COUNT succeeded without node 1; restarting it on its data"
  "$CLUSTER" restart 1 9>&-
  for ((i = 0; i < 120; i++)); do "$CLUSTER" members >/dev/null 2>&1 && break; sleep 1; done
  wait_succeeded $((COUNT / 2))
  log "$(succeeded) of $COUNT succeeded: cutting server-2 (its worker and broker node 2) off the network for 30 s"
  "$NETSIM" cut 2
  sleep 30
  "$NETSIM" heal 2
  log "server-2 back: $(succeeded) of $COUNT succeeded"
fi
wait "$DEMO_PID" || die "fleet demo failed (exit $?)"
DEMO_PID=''
if ((BROKERS > 1)); then
  for ((i = 0; i < 120; i++)); do "$CLUSTER" members >/dev/null 2>&1 && break; sleep 1; done
  # The management API's message counts are statistics refreshed every 5 s: read right after the last task they
  # could still show a lane's backlog from the run's end.
  sleep 6
  echo
  echo "The broker cluster after the run:"
  node_table
  echo
  echo "Every task's state, and the tasks that ran more than once:"
  psql_q -P footer=off -c "SELECT status, count(*) AS tasks FROM fleet.tasks GROUP BY status ORDER BY status"
  psql_q -At -c "SELECT count(*) || ' tasks ran more than once (in flight on a lost node or the cut server)' FROM (SELECT task_id FROM fleet.task_attempts GROUP BY task_id HAVING count(*) > 1) d"
fi

echo
echo "Per server (from fleet.task_attempts; tasks/s = tasks / (its last finish - its first start)):"
psql_q -P footer=off -c "
  SELECT w.host AS server,
         count(*) AS tasks,
         round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS share_pct,
         round(extract(epoch FROM max(a.finished_at) - min(a.started_at))::numeric, 2) AS busy_s,
         round((count(*) / nullif(extract(epoch FROM max(a.finished_at) - min(a.started_at)), 0))::numeric, 1) AS tasks_per_s,
         round(avg(a.wall_ms)::numeric, 1) AS avg_run_ms,
         max(w.cpu_concurrency) AS cpu_threads
  FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id
  WHERE a.outcome = 'succeeded'
  GROUP BY w.host ORDER BY w.host"
psql_q -At -F ' ' -c "
  SELECT 'all servers: ' || count(*) || ' executions of ' || count(DISTINCT task_id) || ' tasks in '
         || round(extract(epoch FROM max(finished_at) - min(started_at))::numeric, 2) || ' s = '
         || round((count(*) / nullif(extract(epoch FROM max(finished_at) - min(started_at)), 0))::numeric, 1) || ' tasks/s'
  FROM fleet.task_attempts WHERE outcome = 'succeeded'"

#!/usr/bin/env bash
# A RabbitMQ cluster of N nodes for tests, benchmarks and the fleet-sim demo: the repository's rabbitmq.conf and
# definitions (users, vhost fleet, the lanes) with the passwords of the fleet in FLEET_HOME (services.sh's secrets),
# quorum lanes replicated on every node.
#
#   rabbit-cluster.sh start [N]    start N nodes (3; remembered), join them to node 1, then load the lanes and check
#                                  that every quorum queue has a member on each node (idempotent: running nodes stay)
#   rabbit-cluster.sh stop         SIGTERM every node (SIGKILL after 60 s) and the epmd this script started, by pid
#   rabbit-cluster.sh kill I       SIGKILL node I's Erlang VM and its children (a crash; its data stays)
#   rabbit-cluster.sh restart I    start node I again on its data: it rejoins, its quorum members catch up
#   rabbit-cluster.sh status       each node: running or not, pid, address; then the cluster as node 1 sees it
#   rabbit-cluster.sh queues [I]   the queues as node I (first running node) sees them: type, leader, members, messages
#   rabbit-cluster.sh members      exit 0 only if every quorum queue has all N members online (grows missing ones)
#   rabbit-cluster.sh env          print the cluster's shell settings (also in the state dir's env file)
#   rabbit-cluster.sh ctl I ARGS   rabbitmqctl ARGS against node I (from node I's own host)
#   rabbit-cluster.sh purge        stop, then delete the state dir
#
# Placement (RABBIT_CLUSTER_PLACEMENT, remembered):
#   loopback (default): node I is fleetc<I>_<base>@localhost on 127.0.0.1, AMQP port base+I-1 (RABBIT_CLUSTER_AMQP_PORT,
#     first free from 5760), management RABBIT_CLUSTER_MGMT_PORT+I-1 (15760), distribution
#     RABBIT_CLUSTER_DIST_PORT+I-1 (25760), and one epmd of the cluster's own on RABBIT_CLUSTER_EPMD_PORT (4380): the
#     machine's shared epmd on 4369 is never used.
#   netns: node I runs inside simulated server I of the network owned by NETSIM_OWNER (netsim.sh), named
#     fleet@<its address> (Erlang long names by IP: no /etc/hosts), AMQP 5672, management 15672, distribution 25672
#     and an epmd of its own on 4369, all on that server's address (each namespace has its own ports).
# Settings: FLEET_HOME (.fleet; the secrets come from there, services.sh writes them if missing),
#   RABBIT_CLUSTER_DIR (FLEET_HOME/rabbit-cluster: state, logs, data, env), RABBIT_CLUSTER_QUEUE_TYPE (quorum; or
#   classic) for the lanes loaded after the join, FLEET_RABBITMQ_BIN (/usr/lib/rabbitmq/bin).
# Small-machine settings of every node: cluster_partition_handling = pause_minority (a cut-off node stops serving
# instead of diverging), net_ticktime = 10 (a 30 s cut is seen as a partition), raft.wal_max_size_bytes = 64 MiB.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_HOME=${FLEET_HOME:-$ROOT/.fleet}
[[ $FLEET_HOME == /* ]] || FLEET_HOME=$PWD/$FLEET_HOME
DIR=${RABBIT_CLUSTER_DIR:-$FLEET_HOME/rabbit-cluster}
[[ $DIR == /* ]] || DIR=$PWD/$DIR
RMQ_BIN=${FLEET_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
NETSIM=$ROOT/infra/local/netsim.sh
SETTINGS=$DIR/settings

SCRIPT=rabbit-cluster
# shellcheck source=infra/local/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/errors.sh"

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# The first port from $1 up that nothing accepts connections on at 127.0.0.1, with $2 ports free in a row.
free_ports() {
  local p=$1 n=$2 i ok
  while :; do
    ok=1
    for ((i = 0; i < n; i++)); do port_open 127.0.0.1 $((p + i)) && { ok=0; break; }; done
    ((ok)) && { printf '%s' "$p"; return 0; }
    p=$((p + n))
  done
}

# Percent-encode a URI userinfo component.
urlenc() {
  local LC_ALL=C s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [a-zA-Z0-9._~-]) out+=$c ;; *) printf -v c '%%%02X' "'$c"; out+=$c ;; esac
  done
  printf '%s' "$out"
}

# ------------------------------------------------------------------------------------------------ settings

load_settings() {
  local given_n=${1-} given_placement=${RABBIT_CLUSTER_PLACEMENT-}
  NODES='' PLACEMENT='' AMQP_BASE='' MGMT_BASE='' DIST_BASE='' EPMD_PORT='' OWNER='' QUEUE_TYPE=''
  # shellcheck disable=SC1090
  [[ -f $SETTINGS ]] && source "$SETTINGS"
  if [[ -n $NODES ]]; then
    [[ -z $given_n || $given_n == "$NODES" ]] || die "the cluster in $DIR has $NODES nodes, not $given_n: run purge first"
    [[ -z $given_placement || $given_placement == "$PLACEMENT" ]] || die "the cluster in $DIR is placed '$PLACEMENT', not '$given_placement'"
    return 0
  fi
  NODES=${given_n:-3}
  [[ $NODES =~ ^[0-9]+$ ]] && ((NODES >= 1 && NODES <= 9)) || die "the number of nodes must be 1 to 9, not '$NODES'"
  PLACEMENT=${given_placement:-loopback}
  QUEUE_TYPE=${RABBIT_CLUSTER_QUEUE_TYPE:-quorum}
  [[ $QUEUE_TYPE == @(quorum|classic) ]] || die "RABBIT_CLUSTER_QUEUE_TYPE must be quorum or classic, not '$QUEUE_TYPE'"
  case $PLACEMENT in
    loopback)
      AMQP_BASE=${RABBIT_CLUSTER_AMQP_PORT:-$(free_ports 5760 "$NODES")}
      MGMT_BASE=${RABBIT_CLUSTER_MGMT_PORT:-$(free_ports 15760 "$NODES")}
      DIST_BASE=${RABBIT_CLUSTER_DIST_PORT:-$(free_ports 25760 "$NODES")}
      EPMD_PORT=${RABBIT_CLUSTER_EPMD_PORT:-$(free_ports 4380 1)}
      ;;
    netns)
      [[ ${NETSIM_OWNER-} =~ ^[0-9]+$ ]] || die "placement netns needs NETSIM_OWNER (the pid owning the simulated servers)"
      OWNER=$NETSIM_OWNER AMQP_BASE=5672 MGMT_BASE=15672 DIST_BASE=25672 EPMD_PORT=4369
      ;;
    *) die "RABBIT_CLUSTER_PLACEMENT must be loopback or netns, not '$PLACEMENT'" ;;
  esac
}

save_settings() {
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  printf 'NODES=%s\nPLACEMENT=%s\nAMQP_BASE=%s\nMGMT_BASE=%s\nDIST_BASE=%s\nEPMD_PORT=%s\nOWNER=%s\nQUEUE_TYPE=%s\n' \
    "$NODES" "$PLACEMENT" "$AMQP_BASE" "$MGMT_BASE" "$DIST_BASE" "$EPMD_PORT" "$OWNER" "$QUEUE_TYPE" >"$SETTINGS"
}

# Node I's address (HOST), AMQP port (PORT), management port (MGMT), distribution port (DIST), name (NAME), dir (NDIR).
node_vars() {
  local i=$1
  [[ $i =~ ^[0-9]+$ ]] && ((i >= 1 && i <= NODES)) || die "no node '$i' (nodes 1 to $NODES)"
  NDIR=$DIR/node$i
  if [[ $PLACEMENT == loopback ]]; then
    HOST=127.0.0.1 PORT=$((AMQP_BASE + i - 1)) MGMT=$((MGMT_BASE + i - 1)) DIST=$((DIST_BASE + i - 1))
    NAME=fleetc${i}_$AMQP_BASE@localhost
  else
    HOST=$(netns_addr "$i") PORT=$AMQP_BASE MGMT=$MGMT_BASE DIST=$DIST_BASE
    NAME=fleet@$HOST
  fi
}

# The address of simulated server I (netsim.sh's state of the owner).
netns_addr() {
  local line
  line=$(sed -n "s/^NETSIM_HOST_$1=//p" "/run/fleet-netsim/flt$OWNER.env" 2>/dev/null) || line=''
  [[ -n $line ]] || die "simulated server $1 of owner $OWNER does not exist (netsim.sh up first)"
  read -r _ addr _ <<<"$line"
  printf '%s' "$addr"
}

# Runs a command where node I lives: inside its simulated server, or here.
on_host() {
  local i=$1
  shift
  if [[ $PLACEMENT == netns ]]; then NETSIM_OWNER=$OWNER "$NETSIM" exec "$i" "$@"; else "$@"; fi
}

# The fleet's passwords (services.sh's secrets; `services.sh env` creates them if this fleet has none yet).
load_secrets() {
  if [[ ! -f $FLEET_HOME/secrets || ! -f $FLEET_HOME/role-secrets ]]; then
    FLEET_HOME=$FLEET_HOME "$ROOT/infra/local/services.sh" env >/dev/null || die "creating the secrets of $FLEET_HOME failed"
  fi
  # shellcheck disable=SC1091
  . "$FLEET_HOME/secrets"
  # shellcheck disable=SC1091
  . "$FLEET_HOME/role-secrets"
}

# ------------------------------------------------------------------------------------------------ one node

# Node I's environment (the same for the server and for rabbitmqctl).
node_env() {
  node_vars "$1"
  local ip_tuple=${HOST//./,}
  export HOME=$NDIR # Erlang cookie: $NDIR/.erlang.cookie, the same for every node
  export RABBITMQ_NODENAME=$NAME RABBITMQ_NODE_IP_ADDRESS=$HOST RABBITMQ_NODE_PORT=$PORT RABBITMQ_DIST_PORT=$DIST
  export RABBITMQ_MNESIA_BASE=$NDIR/mnesia RABBITMQ_LOG_BASE=$NDIR/log
  export RABBITMQ_ENABLED_PLUGINS_FILE=$NDIR/enabled_plugins RABBITMQ_CONFIG_FILE=$NDIR/rabbitmq
  export RABBITMQ_CONF_ENV_FILE=$NDIR/rabbitmq-env.conf RABBITMQ_PID_FILE=$NDIR/rabbitmq.pid
  export RABBITMQ_ADVANCED_CONFIG_FILE=$NDIR/advanced.config ERL_CRASH_DUMP=$NDIR/log/erl_crash.dump
  export ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=$HOST
  if [[ $PLACEMENT == netns ]]; then export RABBITMQ_USE_LONGNAME=true; else unset RABBITMQ_USE_LONGNAME; fi
  # Busy-waiting schedulers off: N nodes share the machine's cores with PostgreSQL and the workers.
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {$ip_tuple} +sbwt none +sbwtdcpu none +sbwtdio none"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {$ip_tuple}"
}

ctl() {
  local i=$1
  shift
  (node_env "$i" && cd "$NDIR" && on_host "$i" timeout "${CTL_TIMEOUT:-120}" "$RMQ_BIN/rabbitmqctl" -q -n "$NAME" "$@")
}

queues_ctl() {
  local i=$1
  shift
  (node_env "$i" && cd "$NDIR" && on_host "$i" timeout "${CTL_TIMEOUT:-120}" "$RMQ_BIN/rabbitmq-queues" -q -n "$NAME" "$@")
}

# Node I's Erlang VM pid, if it runs (checked against its dir: a recycled pid is not ours).
node_pid() {
  local pid f=$DIR/node$1/rabbitmq.pid
  [[ -f $f ]] || return 1
  pid=$(tr -dc 0-9 <"$f")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-home $DIR/node$1 " || return 1
  printf '%s' "$pid"
}

write_node_config() {
  node_vars "$1"
  mkdir -p "$NDIR/mnesia" "$NDIR/log"
  chmod 700 "$NDIR"
  {
    cat "$ROOT/infra/rabbitmq/rabbitmq.conf"
    echo
    echo "# ---- added by infra/local/rabbit-cluster.sh"
    echo "management.tcp.ip = $HOST"
    echo "management.tcp.port = $MGMT"
    echo "load_definitions = $DIR/definitions.boot.json"
    echo "cluster_partition_handling = pause_minority"
    echo "net_ticktime = 10"
    echo "raft.wal_max_size_bytes = 67108864"
    # Several nodes on one small machine: each may use a share of the memory only.
    echo "vm_memory_high_watermark.relative = 0.2"
  } >"$NDIR/rabbitmq.conf"
  echo '[rabbitmq_management].' >"$NDIR/enabled_plugins"
  : >"$NDIR/rabbitmq-env.conf"
  install -m 400 "$DIR/.erlang.cookie" "$NDIR/.erlang.cookie.new" && mv -f "$NDIR/.erlang.cookie.new" "$NDIR/.erlang.cookie"
}

# An epmd of the cluster's own, started by this script and remembered by pid: the loopback cluster's one (I=0), or
# the one inside simulated server I. Never the machine's shared epmd.
ensure_epmd() {
  local i=$1 f=$DIR/epmd$1.pid pid host
  pid=$(cat "$f" 2>/dev/null) || pid=''
  [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "epmd.*-port $EPMD_PORT" && return 0
  if [[ $PLACEMENT == loopback ]]; then host=127.0.0.1; else node_vars "$i"; host=$HOST; fi
  port_open "$host" "$EPMD_PORT" && [[ $PLACEMENT == loopback ]] && die "port $EPMD_PORT (RABBIT_CLUSTER_EPMD_PORT) is taken by another program"
  # setsid, env, netsim.sh exec and ip netns exec all exec: the pid recorded is epmd's own.
  if [[ $PLACEMENT == loopback ]]; then
    ERL_EPMD_ADDRESS=$host setsid epmd -port "$EPMD_PORT" </dev/null >>"$DIR/epmd$i.log" 2>&1 9>&- &
  else
    setsid env ERL_EPMD_ADDRESS="$host" NETSIM_OWNER="$OWNER" "$NETSIM" exec "$i" epmd -port "$EPMD_PORT" \
      </dev/null >>"$DIR/epmd$i.log" 2>&1 9>&- &
  fi
  echo $! >"$f"
  local n
  for ((n = 0; n < 50; n++)); do port_open "$host" "$EPMD_PORT" && break; sleep 0.1; done
  port_open "$host" "$EPMD_PORT" || die "epmd did not start on $host:$EPMD_PORT (log: $DIR/epmd$i.log)"
}

launch_node() {
  local i=$1
  node_pid "$i" >/dev/null && return 0
  write_node_config "$i"
  if [[ $PLACEMENT == netns ]]; then ensure_epmd "$i"; else ensure_epmd 0; fi
  node_vars "$i"
  local p
  for p in "$PORT" "$MGMT" "$DIST"; do
    port_open "$HOST" "$p" && die "port $p on $HOST is already in use (node $i); choose other RABBIT_CLUSTER_* ports"
  done
  rm -f "$NDIR/rabbitmq.pid"
  log "starting node $i: $NAME, AMQP $HOST:$PORT, management http://$HOST:$MGMT/"
  (node_env "$i" && cd "$NDIR" && on_host "$i" "$RMQ_BIN/rabbitmq-server" -detached) >>"$NDIR/log/startup.log" 2>&1 9>&- ||
    die "rabbitmq-server -detached failed for node $i (log: $NDIR/log/)"
}

wait_node() {
  local i=$1 n
  node_vars "$i"
  for ((n = 0; n < 900; n++)); do
    node_pid "$i" >/dev/null && port_open "$HOST" "$PORT" && break
    if ((n > 100)) && ! node_pid "$i" >/dev/null; then break; fi
    sleep 0.1
  done
  if ! node_pid "$i" >/dev/null || ! port_open "$HOST" "$PORT"; then
    tail -n 30 "$NDIR/log/$NAME.log" >&2 2>/dev/null || true
    die "node $i ($NAME) did not come up on $HOST:$PORT within 90 s (logs: $NDIR/log/)"
  fi
}

# ------------------------------------------------------------------------------------------------ the cluster

# The definitions: at boot everything but the queues (and their bindings), so that no queue exists before all nodes
# joined; after the join the lanes with QueueTopology's arguments for the queue type (LaneArguments).
write_definitions() {
  load_secrets
  FLEET_AMQP_PASSWORD=$FLEET_AMQP_PASSWORD FLEET_AMQP_PRODUCER_PASSWORD=$FLEET_AMQP_PRODUCER_PASSWORD \
    FLEET_AMQP_API_PASSWORD=$FLEET_AMQP_API_PASSWORD FLEET_AMQP_WORKER_PASSWORD=$FLEET_AMQP_WORKER_PASSWORD \
    "$ROOT/infra/rabbitmq/render-definitions.sh" "$DIR/definitions.rendered.json" || die "rendering the definitions failed"
  local args='{}'
  [[ $QUEUE_TYPE == quorum ]] && args='{"x-queue-type":"quorum"}'
  (umask 077
    jq '.queues = [] | .bindings = [.bindings[] | select(.destination_type != "queue")]' \
      "$DIR/definitions.rendered.json" >"$DIR/definitions.boot.json"
    jq --argjson a "$args" '.queues = [.queues[] | .arguments = $a]' \
      "$DIR/definitions.rendered.json" >"$DIR/definitions.json") || die "writing the definitions failed"
  rm -f "$DIR/definitions.rendered.json"
}

write_env() {
  local i hosts='' mgmt=''
  for ((i = 1; i <= NODES; i++)); do
    node_vars "$i"
    hosts+=${hosts:+,}$HOST:$PORT
    mgmt+=${mgmt:+ }http://$HOST:$MGMT/
  done
  node_vars 1
  url() { printf 'amqp://%s:%s@%s/fleet' "$1" "$(urlenc "$2")" "$hosts"; }
  (umask 077
    {
      echo "# Written by infra/local/rabbit-cluster.sh: the cluster's addresses (several host:port, comma-separated)."
      printf "RABBIT_CLUSTER_NODES=%s\nRABBIT_CLUSTER_HOSTS='%s'\nRABBIT_CLUSTER_MANAGEMENT='%s'\nRABBIT_CLUSTER_QUEUE_TYPE=%s\n" \
        "$NODES" "$hosts" "$mgmt" "$QUEUE_TYPE"
      printf "RABBIT_CLUSTER_AMQP_URL='%s'\n" "$(url fleet "$FLEET_AMQP_PASSWORD")"
      printf "RABBIT_CLUSTER_WORKER_AMQP_URL='%s'\n" "$(url fleet_worker "$FLEET_AMQP_WORKER_PASSWORD")"
      printf "RABBIT_CLUSTER_API_AMQP_URL='%s'\n" "$(url fleet_api "$FLEET_AMQP_API_PASSWORD")"
      printf "RABBIT_CLUSTER_PRODUCER_AMQP_URL='%s'\n" "$(url fleet_producer "$FLEET_AMQP_PRODUCER_PASSWORD")"
      printf "RABBIT_CLUSTER_MANAGEMENT_URL='http://fleet:%s@%s:%s/'\n" "$(urlenc "$FLEET_AMQP_PASSWORD")" "$HOST" "$MGMT"
    } >"$DIR/env")
}

# Every quorum queue of vhost fleet with fewer members than nodes: `rabbitmq-queues grow` onto each node. Then exit 0
# only if every quorum queue has all NODES members online.
check_members() {
  local i first='' out bad
  # The first node that answers: a running VM may be paused (pause_minority) or still starting its app.
  for ((i = 1; i <= NODES; i++)); do
    node_pid "$i" >/dev/null || continue
    out=$(CTL_TIMEOUT=30 ctl "$i" list_queues -p fleet name type members online --formatter json 2>/dev/null) && { first=$i; break; }
  done
  [[ -n $first ]] || { log "no node answers list_queues"; return 1; }
  if jq -e --argjson n "$NODES" '[.[] | select(.type == "quorum" and (.members | length) < $n)] | length > 0' <<<"$out" >/dev/null; then
    for ((i = 1; i <= NODES; i++)); do
      node_vars "$i"
      node_pid "$i" >/dev/null && { queues_ctl "$first" grow "$NAME" all --vhost-pattern '^fleet$' --queue-pattern '.*' >/dev/null ||
        die "rabbitmq-queues grow $NAME failed"; }
    done
    out=$(ctl "$first" list_queues -p fleet name type members online --formatter json) || die "list_queues on node $first failed"
  fi
  bad=$(jq -r --argjson n "$NODES" '.[] | select(.type == "quorum" and ((.members | length) < $n or (.online | length) < $n))
    | "\(.name): \(.members | length) members, \(.online | length) online"' <<<"$out")
  [[ -z $bad ]] || { printf '%s\n' "$bad" >&2; return 1; }
  log "every quorum queue has $NODES members online ($(jq '[.[] | select(.type == "quorum")] | length' <<<"$out") queues)"
}

first_running() {
  local i
  for ((i = 1; i <= NODES; i++)); do node_pid "$i" >/dev/null && { printf '%s' "$i"; return 0; }; done
  return 1
}

cmd_start() {
  load_settings "${1-}"
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another rabbit-cluster.sh holds $DIR/.lock"
  [[ -x $RMQ_BIN/rabbitmq-server ]] || die "RabbitMQ not found in $RMQ_BIN (run infra/local/install.sh rabbitmq-server)"
  command -v jq >/dev/null || die "jq not found (apt-get install jq)"
  save_settings
  if [[ ! -s $DIR/.erlang.cookie ]]; then
    (umask 077 && head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' >"$DIR/.erlang.cookie")
  fi
  write_definitions
  local i fresh=()
  for ((i = 1; i <= NODES; i++)); do [[ -d $DIR/node$i/mnesia/$(node_vars "$i"; printf '%s' "$NAME") ]] || fresh+=("$i"); done
  # Node 1 first; a node that never ran joins it (explicitly: no peer-discovery race); one that ran before
  # rejoins by itself from its data.
  # A node that ran before may wait at boot for the tables of the others (the last one stopped has them): then all
  # start together.
  launch_node 1
  [[ " ${fresh[*]} " == *" 1 "* ]] && wait_node 1
  for ((i = 2; i <= NODES; i++)); do launch_node "$i"; done
  wait_node 1
  for ((i = 2; i <= NODES; i++)); do
    wait_node "$i"
    if [[ " ${fresh[*]} " == *" $i "* ]]; then
      node_vars 1
      local seed=$NAME
      # The CLI's own chatter (tracking tables of a node that is being reset) goes to the log unless it fails.
      local out
      out=$(ctl "$i" stop_app 2>&1) || { printf '%s\n' "$out" >&2; die "rabbitmqctl stop_app on node $i failed"; }
      out=$(ctl "$i" join_cluster "$seed" 2>&1) || { printf '%s\n' "$out" >&2; die "node $i could not join $seed (logs: $DIR/node$i/log/)"; }
      printf '%s\n' "$out" >>"$DIR/node$i/log/startup.log"
      out=$(ctl "$i" start_app 2>&1) || { printf '%s\n' "$out" >&2; die "rabbitmqctl start_app on node $i failed"; }
      log "node $i joined $seed"
    fi
  done
  local running
  running=$(ctl 1 eval 'length(rabbit_nodes:all_running()).') || die "asking node 1 for the running nodes failed"
  [[ $running == "$NODES" ]] || die "node 1 sees $running running nodes, not $NODES"
  ctl 1 import_definitions "$DIR/definitions.json" >/dev/null || die "loading the lanes ($DIR/definitions.json) failed"
  write_env
  if [[ $QUEUE_TYPE == quorum ]]; then check_members || die "some quorum queues lack members"; fi
  log "cluster of $NODES up ($PLACEMENT, $QUEUE_TYPE lanes); settings: $DIR/env"
}

kill_node() {
  local i=$1 pid children
  pid=$(node_pid "$i") || { log "node $i is not running"; return 0; }
  children=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ' || true)
  # shellcheck disable=SC2086
  kill -KILL "$pid" $children 2>/dev/null || true
  wait_gone "$pid" || die "node $i (pid $pid) survived SIGKILL for 10 s"
  log "node $i killed (pid $pid)"
}

# Waits up to $2 tenths of a second (100) for pid $1 to end (a zombie counts as ended).
wait_gone() {
  local n state
  for ((n = 0; n < ${2:-100}; n++)); do
    state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) || state=''
    [[ -z $state || $state == Z ]] && return 0
    sleep 0.1
  done
  return 1
}

stop_node() {
  local i=$1 pid
  pid=$(node_pid "$i") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 600; then
    log "node $i did not stop within 60 s of SIGTERM; SIGKILL to pid $pid"
    kill_node "$i"
  fi
  log "node $i stopped"
}

stop_epmds() {
  local f pid
  for f in "$DIR"/epmd*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "epmd.*-port $EPMD_PORT"; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

cmd_stop() {
  [[ -f $SETTINGS ]] || return 0
  load_settings
  local i
  for ((i = NODES; i >= 1; i--)); do stop_node "$i" & done
  wait
  stop_epmds
}

cmd_status() {
  load_settings
  local i pid rc=0 first
  for ((i = 1; i <= NODES; i++)); do
    node_vars "$i"
    if pid=$(node_pid "$i"); then
      printf 'node %s  running  pid %s  %s  amqp %s:%s  management http://%s:%s/\n' "$i" "$pid" "$NAME" "$HOST" "$PORT" "$HOST" "$MGMT"
    else
      printf 'node %s  stopped  %s  amqp %s:%s\n' "$i" "$NAME" "$HOST" "$PORT"
      rc=3
    fi
  done
  if first=$(first_running); then CTL_TIMEOUT=30 ctl "$first" cluster_status || rc=3; fi
  return $rc
}

cmd_queues() {
  load_settings
  local i=${1-}
  [[ -n $i ]] || i=$(first_running) || die "no node runs"
  CTL_TIMEOUT=${CTL_TIMEOUT:-30} ctl "$i" list_queues -p fleet name type leader members online messages messages_ready messages_unacknowledged
}

case ${1:-} in
  start) cmd_start "${2-}" ;;
  stop) cmd_stop ;;
  kill) load_settings; kill_node "${2:?node number}" ;;
  restart)
    load_settings
    exec 9>"$DIR/.lock"
    flock -w 300 9 || die "another rabbit-cluster.sh holds $DIR/.lock"
    if node_pid "${2:?node number}" >/dev/null; then log "node $2 already runs"; exit 0; fi
    launch_node "$2"
    wait_node "$2"
    log "node $2 restarted on its data"
    ;;
  status) cmd_status ;;
  queues) cmd_queues "${2-}" ;;
  members) load_settings; check_members || die "some quorum queues lack members online (above)" ;;
  env) load_settings; load_secrets; write_env; cat "$DIR/env" ;;
  ctl) load_settings; i=${2:?node number}; shift 2; ctl "$i" "$@" ;;
  purge)
    cmd_stop
    rm -rf "$DIR"
    log "deleted $DIR"
    ;;
  *)
    sed -n '2,/^set -Eeuo/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac

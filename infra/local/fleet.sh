#!/usr/bin/env bash
# The whole local fleet: private PostgreSQL + RabbitMQ (services.sh), the migrator, the API and N workers.
#
#   infra/local/fleet.sh up        services, build, migrate, API (if built) and WORKERS workers; idempotent
#   infra/local/fleet.sh down      stop API and workers (SIGTERM, 60 s, then SIGKILL), then the services
#                                  (KEEP_SERVICES=1 leaves PostgreSQL and RabbitMQ running)
#   infra/local/fleet.sh status    what runs, by pid file
#   infra/local/fleet.sh build     dotnet build Fleet.sln -c Release, then the worker published ReadyToRun
#   infra/local/fleet.sh migrate   services + build + `fleet migrate`
#
# Settings: WORKERS (2), CONFIGURATION (Release), FLEET_SKIP_BUILD=1 (use the existing build), DOTNET (dotnet),
# FLEET_STOP_TIMEOUT (60 s; Worker__DrainSeconds + 30 if that is set and more), FLEET_WORKER_PORT_BASE (5090;
# remembered in .fleet/settings by services.sh start, like the ports),
# FLEET_HOME (.fleet; another folder with other ports, see services.sh, is a second fleet beside the first),
# FLEET_WORKER_PG and FLEET_WORKER_AMQP (the workers' connection strings, instead of .fleet/env's
# FLEET_WORKER_PG_CONNECTION and FLEET_WORKER_AMQP_URL; make bench points them at a delay proxy to put the workers a
# round trip away from the servers), FLEET_API_AMQP (the API's, instead of FLEET_API_AMQP_URL; make bench BROKERS=3
# points it and the workers' at a broker cluster), RabbitMq__QueueType (instead of .fleet/env's).
# Each process logs in as its own component (least privilege): the migrator as the owner fleet, the API as fleet_api,
# the workers as fleet_worker (services.sh creates them and writes their connection strings to .fleet/env).
# Processes run detached (setsid) with .fleet/env exported; logs in .fleet/logs/, pid files in .fleet/run/.
set -Eeuo pipefail
shopt -s nullglob

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_HOME=${FLEET_HOME:-$ROOT/.fleet}
[[ $FLEET_HOME == /* ]] || FLEET_HOME=$PWD/$FLEET_HOME
export FLEET_HOME
RUN_DIR=$FLEET_HOME/run
LOG_DIR=$FLEET_HOME/logs
ENV_FILE=$FLEET_HOME/env
# services.sh start also installs the server packages when they are missing (install.sh), so that `make up` works on
# a fresh machine.
SERVICES=$ROOT/infra/local/services.sh
CONFIGURATION=${CONFIGURATION:-Release}
WORKERS=${WORKERS:-2}
# SIGTERM to SIGKILL: longer than a worker's own shutdown timeout (HostOptions.ShutdownTimeout = DrainSeconds + 15,
# 45 s by default), so that a worker finishing its drain is never killed halfway through it.
DRAIN_SECONDS=${Worker__DrainSeconds:-30}
[[ $DRAIN_SECONDS =~ ^[0-9]+$ ]] || DRAIN_SECONDS=30
STOP_TIMEOUT=${FLEET_STOP_TIMEOUT:-$((DRAIN_SECONDS + 30 > 60 ? DRAIN_SECONDS + 30 : 60))}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

OUT=net10.0
CLI_DLL=$ROOT/src/Fleet.Cli/bin/$CONFIGURATION/$OUT/fleet.dll
# The workers run a ReadyToRun publish of the worker: precompiled code instead of tier-0 JIT in a fresh worker's
# first seconds (docs/decisions/0006). Other architectures run the plain build.
case $(uname -m) in
  x86_64) WORKER_RID=linux-x64 ;;
  aarch64) WORKER_RID=linux-arm64 ;;
  *) WORKER_RID= ;;
esac
WORKER_BUILD_DLL=$ROOT/src/Fleet.Worker/bin/$CONFIGURATION/$OUT/Fleet.Worker.dll
WORKER_DLL=$WORKER_BUILD_DLL
[[ -z $WORKER_RID ]] || WORKER_DLL=$ROOT/src/Fleet.Worker/bin/$CONFIGURATION/ready-to-run/Fleet.Worker.dll
API_DLL=$ROOT/src/Fleet.Api/bin/$CONFIGURATION/$OUT/Fleet.Api.dll

SCRIPT=fleet
# shellcheck source=infra/local/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/errors.sh"

[[ $WORKERS =~ ^[0-9]+$ ]] || die "WORKERS must be a number, not '$WORKERS'"
[[ $STOP_TIMEOUT =~ ^[0-9]+$ ]] || die "FLEET_STOP_TIMEOUT must be a number of seconds, not '$STOP_TIMEOUT'"
DOTNET=$(command -v "${DOTNET:-dotnet}") || die "dotnet not found on PATH"

# One value from .fleet/env (read in a subshell, so nothing else leaks into this script).
env_get() {
  (
    # shellcheck disable=SC1090
    . "$ENV_FILE" 2>/dev/null && printf '%s' "${!1-}"
  )
}

# One value from .fleet/settings (services.sh start wrote it); empty if absent.
settings_get() {
  (
    # shellcheck disable=SC1090
    . "$FLEET_HOME/settings" 2>/dev/null && printf '%s' "${!1-}"
  ) || true
}

# --------------------------------------------------------------------------------------------- processes

# Prints the pid recorded in $1 if that process is alive and still runs our dll ($2); else fails.
live_pid() {
  local pidf=$1 dll=$2 pid
  [[ -f $pidf ]] || return 1
  pid=$(tr -dc 0-9 <"$pidf")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$dll" || return 1
  printf '%s' "$pid"
}

# live_proc PIDFILE: live_pid for the process its pid file names: the API, or a worker (started from the ReadyToRun
# publish or from the plain build).
live_proc() {
  case $(basename "$1" .pid) in
    api) live_pid "$1" "$API_DLL" ;;
    *) live_pid "$1" "$WORKER_DLL" || live_pid "$1" "$WORKER_BUILD_DLL" ;;
  esac
}

# start_proc NAME DLL [VAR=value ...]: runs `dotnet DLL` detached, with .fleet/env and the extra variables.
start_proc() {
  local name=$1 dll=$2
  shift 2
  local pidf=$RUN_DIR/$name.pid logf=$LOG_DIR/$name.log pid i
  if pid=$(live_proc "$pidf"); then
    log "$name already running (pid $pid)"
    return 0
  fi
  rm -f "$pidf"
  printf '==== %s starting %s\n' "$(date -Is)" "$name" >>"$logf"
  # setsid: own session, so the process outlives this shell and its terminal. The inner shell records its
  # own pid, then becomes dotnet (exec), so the pid file holds dotnet's pid.
  (
    cd "$ROOT"
    set -a
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    set +a
    for kv in "$@"; do export "${kv?}"; done
    # shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
    exec setsid -f bash -c 'echo $$ >"$1.tmp" && mv -f "$1.tmp" "$1" && shift && exec "$@"' \
      fleet-launch "$pidf" "$DOTNET" "$dll" </dev/null >>"$logf" 2>&1 9>&-
  )
  for ((i = 0; i < 50; i++)); do [[ -s $pidf ]] && break; sleep 0.1; done
  [[ -s $pidf ]] || die "$name did not start (log: $logf)"
  log "$name started (pid $(cat "$pidf"), log ${logf#"$ROOT"/})"
}

# stop_procs PIDFILE...: SIGTERM to each live one, wait up to STOP_TIMEOUT s, then SIGKILL the ones left.
stop_procs() {
  local -A pids=()
  local pidf pid name i
  for pidf in "$@"; do
    name=$(basename "$pidf" .pid)
    if pid=$(live_proc "$pidf"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids[$pidf]=$pid
      log "$name: SIGTERM sent (pid $pid)"
    else
      rm -f "$pidf"
    fi
  done
  for ((i = 0; i < STOP_TIMEOUT * 10 && ${#pids[@]} > 0; i++)); do
    for pidf in "${!pids[@]}"; do
      if ! kill -0 "${pids[$pidf]}" 2>/dev/null; then
        log "$(basename "$pidf" .pid) stopped"
        rm -f "$pidf"
        unset 'pids[$pidf]'
      fi
    done
    ((${#pids[@]} > 0)) && sleep 0.1
  done
  for pidf in "${!pids[@]}"; do
    log "$(basename "$pidf" .pid) did not stop within ${STOP_TIMEOUT}s: SIGKILL (pid ${pids[$pidf]})"
    kill -KILL "${pids[$pidf]}" 2>/dev/null || true
    rm -f "$pidf"
  done
}

# -------------------------------------------------------------------------------------------------- steps

build() {
  if [[ ${FLEET_SKIP_BUILD:-0} == 1 ]]; then log "build skipped (FLEET_SKIP_BUILD=1)"; return 0; fi
  log "dotnet build Fleet.sln -c $CONFIGURATION"
  (cd "$ROOT" && "$DOTNET" build Fleet.sln -c "$CONFIGURATION" -v q -nologo) ||
    die "the build failed; fix it, or run with FLEET_SKIP_BUILD=1 to use the existing binaries"
  if [[ -n $WORKER_RID ]]; then
    log "dotnet publish the worker ReadyToRun ($WORKER_RID) into $(dirname "$WORKER_DLL")"
    (cd "$ROOT" && "$DOTNET" publish src/Fleet.Worker/Fleet.Worker.csproj -c "$CONFIGURATION" -r "$WORKER_RID" \
      --self-contained false -p:PublishReadyToRun=true -o "$(dirname "$WORKER_DLL")" -v q -nologo) ||
      die "publishing the worker ReadyToRun failed"
  fi
}

migrate() {
  [[ -f $CLI_DLL ]] || die "$CLI_DLL not found (build first: make build)"
  log "fleet migrate"
  (
    cd "$ROOT"
    set -a
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    set +a
    exec "$DOTNET" "$CLI_DLL" migrate
  ) || die "fleet migrate failed"
}

wait_api() {
  local url i
  url=$(env_get FLEET_API_URL)
  command -v curl >/dev/null 2>&1 || return 0
  for ((i = 0; i < 60; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "$url/alive" 2>/dev/null; then log "API answers on $url"; return 0; fi
    live_proc "$RUN_DIR/api.pid" >/dev/null || { tail -n 20 "$LOG_DIR/api.log" >&2; die "the API exited (log: $LOG_DIR/api.log)"; }
    sleep 0.5
  done
  log "warning: the API does not answer on $url/alive yet (log: $LOG_DIR/api.log)"
}

up() {
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  "$SERVICES" start || exit # services.sh said why
  build
  migrate
  # A queue type given to this script wins over .fleet/env's (make bench compares classic and quorum lanes with it).
  local queue_type=()
  [[ -z ${RabbitMq__QueueType-} ]] || queue_type=("RabbitMq__QueueType=$RabbitMq__QueueType")
  if [[ -f $API_DLL ]]; then
    local url key
    url=$(env_get FLEET_API_URL)
    key=$(env_get FLEET_API_KEY)
    # Three keys, three scopes: FLEET_API_KEY reads and submits, the read key only reads (dashboard), the admin
    # key also cancels. Reads need a key (Api:ReadsRequireKey defaults to true).
    start_proc api "$API_DLL" "ASPNETCORE_URLS=$url" "Api__ApiKeys__0=$key" \
      "ConnectionStrings__fleetdb=$(env_get FLEET_API_PG_CONNECTION)" "ConnectionStrings__rabbitmq=${FLEET_API_AMQP:-$(env_get FLEET_API_AMQP_URL)}" \
      "Api__ReadKeys__0=$(env_get FLEET_API_READ_KEY)" "Api__AdminKeys__0=$(env_get FLEET_API_ADMIN_KEY)" \
      "Api__RabbitMqManagementUri=$(env_get FLEET_API_RABBITMQ_MANAGEMENT_URL)" ${queue_type[@]+"${queue_type[@]}"}
  fi
  local n pidf
  # Each worker gets its own loopback URL in case it serves HTTP (health, metrics): N workers must not all
  # claim ASP.NET's default port.
  # The workers of one machine share its cores: each gets cores/WORKERS CPU-lane threads (at least one), so
  # that N local workers do not oversubscribe the CPU. Worker__CpuConcurrency in the environment overrides it.
  local cpu_threads=${Worker__CpuConcurrency:-$(( $(nproc) / WORKERS > 0 ? $(nproc) / WORKERS : 1 ))}
  # worker-N: http://127.0.0.1:(base+N), if it serves HTTP; the base as given, else as services.sh remembered it
  local base=${FLEET_WORKER_PORT_BASE:-$(settings_get FLEET_WORKER_PORT_BASE)}
  base=${base:-5090}
  [[ $base =~ ^[0-9]+$ ]] || die "FLEET_WORKER_PORT_BASE must be a port number, not '$base'"
  for ((n = 1; n <= WORKERS; n++)); do
    start_proc "worker-$n" "$WORKER_DLL" "ASPNETCORE_URLS=http://127.0.0.1:$((base + n))" \
      "Worker__CpuConcurrency=$cpu_threads" \
      "ConnectionStrings__fleetdb=${FLEET_WORKER_PG:-$(env_get FLEET_WORKER_PG_CONNECTION)}" \
      "ConnectionStrings__rabbitmq=${FLEET_WORKER_AMQP:-$(env_get FLEET_WORKER_AMQP_URL)}" ${queue_type[@]+"${queue_type[@]}"}
  done
  # Fewer workers asked for than run: stop the extra ones.
  local extra=()
  for pidf in "$RUN_DIR"/worker-*.pid; do
    n=$(basename "$pidf" .pid)
    n=${n#worker-}
    [[ $n =~ ^[0-9]+$ ]] && ((n > WORKERS)) && extra+=("$pidf")
  done
  ((${#extra[@]} == 0)) || stop_procs "${extra[@]}"
  [[ -f $API_DLL ]] && wait_api
  # A worker that dies at once (bad settings, no broker) shows here rather than silently later.
  sleep 2
  local dead=0
  for ((n = 1; n <= WORKERS; n++)); do
    if ! live_proc "$RUN_DIR/worker-$n.pid" >/dev/null; then
      log "worker-$n exited right after start; last lines of $LOG_DIR/worker-$n.log:"
      tail -n 20 "$LOG_DIR/worker-$n.log" >&2 || true
      dead=1
    fi
  done
  ((dead == 0)) || die "some workers did not stay up"
  log "up: $WORKERS worker(s)$([[ -f $API_DLL ]] && echo ", API on $(env_get FLEET_API_URL)"). Settings: . ${ENV_FILE#"$ROOT"/}"
  [[ -f $API_DLL ]] && printf 'dashboard: %s/\n' "$(env_get FLEET_API_URL)"
  return 0
}

down() {
  local files=()
  [[ -f $RUN_DIR/api.pid ]] && files+=("$RUN_DIR/api.pid")
  local pidf
  for pidf in "$RUN_DIR"/worker-*.pid; do files+=("$pidf"); done
  ((${#files[@]} == 0)) || stop_procs "${files[@]}"
  if [[ ${KEEP_SERVICES:-0} == 1 ]]; then
    log "KEEP_SERVICES=1: PostgreSQL and RabbitMQ keep running"
  else
    "$SERVICES" stop || exit # services.sh said why
  fi
}

status() {
  local rc=0 pidf pid name
  "$SERVICES" status || rc=3
  if [[ -f $RUN_DIR/api.pid ]] || [[ -f $API_DLL ]]; then
    if pid=$(live_proc "$RUN_DIR/api.pid"); then
      printf 'api         running  pid %s  %s\n' "$pid" "$(env_get FLEET_API_URL)"
    else
      printf 'api         stopped\n'
    fi
  fi
  local any=0
  for pidf in "$RUN_DIR"/worker-*.pid; do
    any=1
    name=$(basename "$pidf" .pid)
    if pid=$(live_proc "$pidf"); then
      printf '%-11s running  pid %s  log %s\n' "$name" "$pid" "${LOG_DIR#"$ROOT"/}/$name.log"
    else
      printf '%-11s stopped  (stale pid file)\n' "$name"
      rc=3
    fi
  done
  ((any)) || printf 'workers     none running\n'
  return $rc
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status || exit $? ;; # 3: something does not run (not an error to report)
  build) build ;;
  migrate)
    "$SERVICES" start || exit # services.sh said why
    build
    migrate
    ;;
  *)
    sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac

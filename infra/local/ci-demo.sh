#!/usr/bin/env bash
# The README's main job, reduced, on a fleet of its own: `make demo DEMO_COUNT=50`, then `make down`. .ci/run
# runs it after the tests; it runs alone as well (infra/local/ci-demo.sh).
#
# Its own folder (FLEET_HOME=.fleet/ci), RabbitMQ node (fleetci<pid>@localhost) and ports: the first free ones
# from 55600 (PostgreSQL), 5800 (AMQP), 25800 (Erlang distribution), 15800 (management), 15820 (Prometheus),
# 5180 (API) and 5190 + N (worker N), so that it never meets a developer's `make up` (55432, 5673, 5080,
# 5091..), a `make fleet-sim` (55700, 5900, ...) or the tests' private servers (ports the system picks).
# Whatever happens (success, failure, Ctrl-C), `make down` stops that fleet's API, workers and servers, by
# their pid files; on success its folder is deleted, on failure it is kept (servers stopped) for its logs.
#
# Settings: DEMO_COUNT (50 heat tasks), WORKERS (2), FLEET_CI_HOME (.fleet/ci), FLEET_CI_KEEP_DATA=1 (keep the
# folder after a success too), FLEET_SKIP_BUILD=1 (use the existing build).
# Exit status: make demo's (0 when the fleet came up and every task succeeded), else make down's if that failed.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CI_HOME=${FLEET_CI_HOME:-$ROOT/.fleet/ci}
[[ $CI_HOME == /* ]] || CI_HOME=$PWD/$CI_HOME
DEMO_COUNT=${DEMO_COUNT:-50}
WORKERS=${WORKERS:-2}

SCRIPT=ci-demo
# shellcheck source=infra/local/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/errors.sh"

if ! [[ $DEMO_COUNT =~ ^[0-9]+$ ]] || ((DEMO_COUNT < 1)); then die "DEMO_COUNT must be a positive number"; fi
if ! [[ $WORKERS =~ ^[0-9]+$ ]] || ((WORKERS < 1)); then die "WORKERS must be a positive number"; fi

# Nothing of the caller's fleet may leak in: not its ports or node (services.sh would take them), not the
# settings of a sourced .fleet/env (its connection strings and API key).
unset FLEET_PG_PORT FLEET_AMQP_PORT FLEET_AMQP_DIST_PORT FLEET_AMQP_MGMT_PORT FLEET_AMQP_PROMETHEUS_PORT \
  FLEET_API_URL FLEET_RABBITMQ_NODE FLEET_PG_DATA FLEET_LISTEN_EXTRA FLEET_WORKER_PORT_BASE \
  FLEET_PG_PASSWORD FLEET_PG_READONLY_PASSWORD FLEET_AMQP_PASSWORD FLEET_API_KEY FLEET_API_READ_KEY FLEET_API_ADMIN_KEY FLEET_AMQP_URL \
  FLEET_PG_DSN FLEET_PG_READONLY_DSN FLEET_RABBITMQ_MANAGEMENT_URL ConnectionStrings__fleetdb ConnectionStrings__rabbitmq \
  FLEET_PG_WORKER_PASSWORD FLEET_PG_API_PASSWORD FLEET_AMQP_WORKER_PASSWORD FLEET_AMQP_API_PASSWORD FLEET_AMQP_PRODUCER_PASSWORD \
  FLEET_WORKER_PG_CONNECTION FLEET_WORKER_AMQP_URL FLEET_API_PG_CONNECTION FLEET_API_AMQP_URL FLEET_API_RABBITMQ_MANAGEMENT_URL \
  FLEET_PRODUCER_AMQP_URL FLEET_WORKER_PG FLEET_WORKER_AMQP
export FLEET_HOME=$CI_HOME WORKERS

# One CI demo per clone at a time.
mkdir -p "$(dirname "$CI_HOME")"
exec 9>"$CI_HOME.lock"
flock -n 9 || die "another ci-demo.sh runs in this clone ($CI_HOME.lock)"

make_down() { make -C "$ROOT" --no-print-directory down 9>&-; }

# A run that could not clean up (killed) left its fleet behind: stop it with the settings it recorded, then
# delete it, before this run picks its ports.
if [[ -d $CI_HOME ]]; then
  log "stopping and removing what an earlier run left in ${CI_HOME#"$ROOT"/}"
  make_down || exit
  "$ROOT/infra/local/services.sh" purge 9>&- || exit
fi

# The first port from $1 up that nothing accepts connections on at 127.0.0.1 and that is not among $2...
free_port() {
  local p=$1
  shift
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || [[ " $* " == *" $p "* ]]; do p=$((p + 1)); done
  printf '%s' "$p"
}
# The first base from $1 up (in steps of 10) with base+1 .. base+WORKERS all free.
free_worker_base() {
  local base=$1 n ok
  while :; do
    ok=1
    for ((n = 1; n <= WORKERS; n++)); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((base + n))") 2>/dev/null; then ok=0; break; fi
    done
    ((ok)) && break
    base=$((base + 10))
  done
  printf '%s' "$base"
}

FLEET_PG_PORT=$(free_port 55600)
FLEET_AMQP_PORT=$(free_port 5800)
FLEET_AMQP_DIST_PORT=$(free_port 25800)
FLEET_AMQP_MGMT_PORT=$(free_port 15800)
FLEET_AMQP_PROMETHEUS_PORT=$(free_port 15820 "$FLEET_AMQP_MGMT_PORT")
FLEET_API_URL=http://127.0.0.1:$(free_port 5180)
FLEET_WORKER_PORT_BASE=$(free_worker_base 5190)
FLEET_RABBITMQ_NODE=fleetci$$@localhost
export FLEET_PG_PORT FLEET_AMQP_PORT FLEET_AMQP_DIST_PORT FLEET_AMQP_MGMT_PORT FLEET_AMQP_PROMETHEUS_PORT \
  FLEET_API_URL FLEET_WORKER_PORT_BASE FLEET_RABBITMQ_NODE

finish() {
  local rc=$? down_rc=0
  trap - EXIT ERR
  trap '' INT TERM HUP
  set +e
  log "make down (${CI_HOME#"$ROOT"/})"
  make_down
  down_rc=$?
  if ((down_rc != 0)); then
    log "error: make down failed (exit $down_rc); what may still run is recorded in ${CI_HOME#"$ROOT"/}/run and its settings"
  elif ((rc == 0)) && [[ ${FLEET_CI_KEEP_DATA:-0} != 1 ]]; then
    "$ROOT/infra/local/services.sh" purge 9>&- 2>/dev/null
  else
    log "kept ${CI_HOME#"$ROOT"/} (logs in ${CI_HOME#"$ROOT"/}/logs)"
  fi
  ((rc != 0)) || rc=$down_rc
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

log "make demo DEMO_COUNT=$DEMO_COUNT WORKERS=$WORKERS in ${CI_HOME#"$ROOT"/}: PostgreSQL $FLEET_PG_PORT, AMQP $FLEET_AMQP_PORT, API $FLEET_API_URL, workers $((FLEET_WORKER_PORT_BASE + 1))+"
make -C "$ROOT" --no-print-directory demo DEMO_COUNT="$DEMO_COUNT" 9>&- || { rc=$?; log "error: make demo failed (exit $rc)"; exit "$rc"; }
log "the demo succeeded"

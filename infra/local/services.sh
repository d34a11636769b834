#!/usr/bin/env bash
# Private PostgreSQL and RabbitMQ servers for local development, on 127.0.0.1 only, with their data under the
# repository's git-ignored .fleet/ folder. They never touch a system-wide server (5432/5672/15672).
#
#   infra/local/services.sh start    install the server packages if missing (install.sh), start both (idempotent),
#                                    create users/vhost/database, write .fleet/env
#   infra/local/services.sh stop     stop what start started (pg_ctl stop -m fast, SIGTERM to our node)
#   infra/local/services.sh kill     SIGKILL the servers and their children, by pid (a crash; the data stays)
#   infra/local/services.sh status   show what runs where (exit 0 only if both run)
#   infra/local/services.sh env      (re)write .fleet/env from the stored settings and secrets
#   infra/local/services.sh purge    stop, then delete all local data, settings and secrets (.fleet/)
#   start, stop, kill and status take one server too (postgresql or rabbitmq), on the remembered port and data.
#
# Settings (environment; what `start` used is remembered in .fleet/settings and reused by later calls):
#   FLEET_PG_PORT (55432)  FLEET_AMQP_PORT (5673)  FLEET_AMQP_DIST_PORT (25673)  FLEET_AMQP_MGMT_PORT (15673)
#   FLEET_AMQP_PROMETHEUS_PORT (15693)  FLEET_API_URL (http://127.0.0.1:5080)  FLEET_RABBITMQ_NODE (fleet@localhost)
#   FLEET_PG_DATA (.fleet/pg)  FLEET_WORKER_PORT_BASE (5090; kept for fleet.sh: worker N gets base + N)
#   FLEET_EPMD_PORT (4369: the machine's shared epmd; another port gives the node an epmd of its own)
#   FLEET_QUEUE_TYPE (quorum; classic for a .fleet/ made before it was remembered): classic or quorum, the type of the lane queues (RabbitMq__QueueType in env, read by
#   the workers, the API and the CLI; the lanes in the broker's definitions). Changing it does not change existing
#   queues: stop the workers and run `fleet queues migrate --to TYPE` first (docs/queues.md)
#   FLEET_QUEUES (none): worker groups' queues, NAME=LANE entries separated by spaces or commas, e.g.
#   "reports=cpu emails=io" (docs/worker-groups.md): the broker's definitions declare them (render-definitions.sh) and
#   env gives the API their Api__Queues__NAME=LANE. Set but empty, it forgets the remembered ones. Names without '-'
#   here: env is a shell file, whose variable names cannot hold one
#   FLEET_HOME (.fleet: settings, secrets, env, logs, data; not remembered)
#   FLEET_SKIP_INSTALL=1: `start` does not run install.sh (servers installed otherwise: FLEET_PG_BIN, FLEET_RABBITMQ_BIN)
#   FLEET_LISTEN_EXTRA (none): ADDRESS/PREFIX of a local private subnet (e.g. 10.231.1.1/24, the bridge of
#   infra/local/netsim.sh) where both servers listen too, PostgreSQL accepting password logins from that subnet;
#   read by `start` only, from the environment (not remembered)
#   FLEET_TLS_CERT_FILE, FLEET_TLS_KEY_FILE (none): PEM server certificate (with its intermediates) and key; with
#   both, PostgreSQL also accepts TLS (ssl = on, same port) and RabbitMQ has TLS listeners on 127.0.0.1:
#   FLEET_AMQP_TLS_PORT (AMQP port + 1) and FLEET_AMQP_MGMT_TLS_PORT (management port + 1, HTTPS). Read by `start`
#   only, from the environment (not remembered)
#   FLEET_THROWAWAY=1: servers whose data is thrown away (the integration tests'): PostgreSQL without fsync and
#   full_page_writes, 300 connections, and a password for the superuser postgres (FLEET_PG_SUPERUSER_CONNECTION in
#   env); RabbitMQ's management counters refreshed every second. Read by `start` only, from the environment (not
#   remembered)
# Secrets: generated once into .fleet/secrets (mode 600); FLEET_PG_PASSWORD, FLEET_PG_READONLY_PASSWORD,
# FLEET_AMQP_PASSWORD, FLEET_API_KEY, FLEET_API_READ_KEY and FLEET_API_ADMIN_KEY given to `start` replace the stored ones. The components' own logins (see
# "Users and roles" below) keep their passwords in .fleet/role-secrets (mode 600) the same way.
#
# Users and roles: each component logs in with only the rights it needs (docs/deployment.md, "Credentials").
#   RabbitMQ (vhost fleet): fleet (administrator: operators, purges; FLEET_AMQP_PASSWORD), fleet_producer (publishes
#   to the lanes), fleet_api (the producer's rights, cancels, queue depths), fleet_worker (consumes the lanes,
#   retries). PostgreSQL: fleet (owner: migrations, retention), fleet_worker, fleet_api, fleet_readonly (analysts).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_HOME=${FLEET_HOME:-$ROOT/.fleet}
[[ $FLEET_HOME == /* ]] || FLEET_HOME=$PWD/$FLEET_HOME # the servers run from other folders
PG_BIN=${FLEET_PG_BIN:-/usr/lib/postgresql/15/bin}
RMQ_BIN=${FLEET_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
SETTINGS_FILE=$FLEET_HOME/settings
SECRETS_FILE=$FLEET_HOME/secrets
ENV_FILE=$FLEET_HOME/env
LOG_DIR=$FLEET_HOME/logs
RMQ_DIR=$FLEET_HOME/rabbitmq
RMQ_PID_FILE=$RMQ_DIR/rabbitmq.pid
RMQ_DEFS=$RMQ_DIR/definitions.json
EPMD_MARKER=$RMQ_DIR/epmd.started-by-fleet

SCRIPT=services
# shellcheck source=infra/local/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/errors.sh"

# ---------------------------------------------------------------------------------------------------- helpers

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

random_hex() { head -c "${1:-16}" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Quote a value for a shell file: 'it'\''s'
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Percent-encode a URI userinfo component.
urlenc() {
  local LC_ALL=C s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [a-zA-Z0-9._~-]) out+=$c ;; *) printf -v c '%%%02X' "'$c"; out+=$c ;; esac
  done
  printf '%s' "$out"
}

# libpq keyword/value: quote when needed, escaping ' and \.
libpq_val() {
  if [[ $1 =~ ^[A-Za-z0-9._~:/+@-]+$ ]]; then printf '%s' "$1"; else
    local v=${1//\\/\\\\}; v=${v//\'/\\\'}; printf "'%s'" "$v"; fi
}

# Npgsql (ADO.NET) value: double-quote when needed, doubling ".
npgsql_val() {
  if [[ $1 =~ ^[A-Za-z0-9._~:/+@-]+$ ]]; then printf '%s' "$1"; else printf '"%s"' "${1//\"/\"\"}"; fi
}

# psql meta-command argument in single quotes (\set): double ' and \.
psql_meta_quote() { local v=${1//\\/\\\\}; v=${v//\'/\'\'}; printf "'%s'" "$v"; }

# Runs a command as the postgres user when we are root (initdb refuses root), from / so that a cwd the postgres
# user cannot enter does not matter.
as_postgres() {
  if ((EUID == 0)); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# --------------------------------------------------------------------------------------- settings and secrets

load_settings() {
  # Values given in the environment win; else what an earlier `start` stored; else the defaults.
  local -A given=()
  local k
  for k in FLEET_PG_PORT FLEET_AMQP_PORT FLEET_AMQP_DIST_PORT FLEET_AMQP_MGMT_PORT FLEET_AMQP_PROMETHEUS_PORT \
    FLEET_API_URL FLEET_RABBITMQ_NODE FLEET_PG_DATA FLEET_WORKER_PORT_BASE FLEET_EPMD_PORT FLEET_QUEUE_TYPE; do
    [[ -n ${!k-} ]] && given[$k]=${!k}
  done
  [[ -v FLEET_QUEUES ]] && given[FLEET_QUEUES]=$FLEET_QUEUES # empty too: that forgets the groups
  # shellcheck disable=SC1090
  [[ -f $SETTINGS_FILE ]] && source "$SETTINGS_FILE"
  for k in "${!given[@]}"; do printf -v "$k" '%s' "${given[$k]}"; done

  PG_PORT=${FLEET_PG_PORT:-55432}
  AMQP_PORT=${FLEET_AMQP_PORT:-5673}
  AMQP_DIST_PORT=${FLEET_AMQP_DIST_PORT:-$((AMQP_PORT + 20000))}
  AMQP_MGMT_PORT=${FLEET_AMQP_MGMT_PORT:-15673}
  AMQP_PROM_PORT=${FLEET_AMQP_PROMETHEUS_PORT:-15693}
  API_URL=${FLEET_API_URL:-http://127.0.0.1:5080}
  RMQ_NODE=${FLEET_RABBITMQ_NODE:-fleet@localhost}
  PG_DATA=${FLEET_PG_DATA:-$FLEET_HOME/pg}
  WORKER_PORT_BASE=${FLEET_WORKER_PORT_BASE:-5090}
  EPMD_PORT=${FLEET_EPMD_PORT:-4369}
  THROWAWAY=${FLEET_THROWAWAY:-0}
  # Quorum by default (docs/benchmarks.md says why). A .fleet/ set up before the type was remembered has classic
  # lanes already: it keeps them (`fleet queues migrate --to quorum` moves them, then FLEET_QUEUE_TYPE=quorum).
  local default_type=quorum
  [[ -f $SETTINGS_FILE ]] && ! grep -q '^FLEET_QUEUE_TYPE=' "$SETTINGS_FILE" && default_type=classic
  QUEUE_TYPE=${FLEET_QUEUE_TYPE:-$default_type}
  QUEUE_TYPE=${QUEUE_TYPE,,}
  [[ $QUEUE_TYPE == @(classic|quorum) ]] || die "FLEET_QUEUE_TYPE must be classic or quorum, not '$QUEUE_TYPE'"
  # Checked here as well as by render-definitions.sh, so that a bad entry is never remembered.
  local queues=${FLEET_QUEUES-} entries=() e seen=' '
  read -ra entries <<<"${queues//[,$'\n']/ }" || true
  for e in ${entries[@]+"${entries[@]}"}; do
    # No '-' (unlike the API's names; the built-ins have one): .fleet/env could not export Api__Queues__NAME.
    [[ $e =~ ^[a-z][a-z0-9]{0,62}=(cpu|io)$ ]] ||
      die "FLEET_QUEUES: '$e' is not NAME=cpu or NAME=io with a NAME of lower-case letters and digits"
    [[ $seen != *" ${e%%=*} "* ]] || die "FLEET_QUEUES: '$e': ${e%%=*} is listed twice"
    seen+="${e%%=*} "
  done
  QUEUES=${entries[*]-}
  pg_log_path
  listen_extra
  tls_settings
  for k in PG_PORT AMQP_PORT AMQP_DIST_PORT AMQP_MGMT_PORT AMQP_PROM_PORT WORKER_PORT_BASE EPMD_PORT; do
    if ! [[ ${!k} =~ ^[0-9]+$ ]] || ((${!k} < 1 || ${!k} > 65535)); then die "$k is not a port: ${!k}"; fi
  done
  for k in 5432 5672 15672; do
    [[ " $PG_PORT $AMQP_PORT $AMQP_DIST_PORT $AMQP_MGMT_PORT $AMQP_PROM_PORT " == *" $k "* ]] &&
      die "port $k is a system default; Fleet's private servers stay off it"
  done
  return 0
}

# FLEET_LISTEN_EXTRA=A.B.C.D/N -> LISTEN_ADDR (A.B.C.D) and LISTEN_NET (its network, CIDR); both empty if unset.
listen_extra() {
  LISTEN_ADDR='' LISTEN_NET=''
  [[ -n ${FLEET_LISTEN_EXTRA-} ]] || return 0
  [[ $FLEET_LISTEN_EXTRA =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)/([0-9]+)$ ]] ||
    die "FLEET_LISTEN_EXTRA must be ADDRESS/PREFIX (IPv4), not '$FLEET_LISTEN_EXTRA'"
  local prefix=${BASH_REMATCH[5]} ip=0 i mask
  for i in 1 2 3 4; do ((BASH_REMATCH[i] <= 255)) || die "FLEET_LISTEN_EXTRA: bad address"; ip=$(((ip << 8) | BASH_REMATCH[i])); done
  ((prefix >= 8 && prefix <= 30)) || die "FLEET_LISTEN_EXTRA: prefix must be 8 to 30"
  mask=$(((0xffffffff << (32 - prefix)) & 0xffffffff))
  LISTEN_ADDR=${FLEET_LISTEN_EXTRA%/*}
  LISTEN_NET=$(printf '%d.%d.%d.%d/%d' $(((ip & mask) >> 24)) $((((ip & mask) >> 16) & 255)) $((((ip & mask) >> 8) & 255)) $((ip & mask & 255)) "$prefix")
  ip -4 -o addr show 2>/dev/null | grep -qF " $LISTEN_ADDR/" || die "FLEET_LISTEN_EXTRA: $LISTEN_ADDR is not an address of this machine"
}

# FLEET_TLS_CERT_FILE and FLEET_TLS_KEY_FILE -> TLS_CERT, TLS_KEY, AMQP_TLS_PORT, AMQP_MGMT_TLS_PORT; all empty
# without them.
tls_settings() {
  TLS_CERT=${FLEET_TLS_CERT_FILE-} TLS_KEY=${FLEET_TLS_KEY_FILE-} AMQP_TLS_PORT='' AMQP_MGMT_TLS_PORT=''
  [[ -z $TLS_CERT && -z $TLS_KEY ]] && return 0
  [[ -r $TLS_CERT && -r $TLS_KEY ]] || die "FLEET_TLS_CERT_FILE and FLEET_TLS_KEY_FILE must both name readable PEM files"
  AMQP_TLS_PORT=${FLEET_AMQP_TLS_PORT:-$((AMQP_PORT + 1))} AMQP_MGMT_TLS_PORT=${FLEET_AMQP_MGMT_TLS_PORT:-$((AMQP_MGMT_PORT + 1))}
  local k
  for k in AMQP_TLS_PORT AMQP_MGMT_TLS_PORT; do
    [[ ${!k} =~ ^[0-9]+$ ]] && ((${!k} >= 1 && ${!k} <= 65535)) || die "FLEET_$k is not a port: ${!k}"
  done
}

save_settings() {
  local tmp
  tmp=$(mktemp "$FLEET_HOME/.settings.XXXXXX")
  {
    echo "# Written by infra/local/services.sh start: the settings the local services run with."
    printf 'FLEET_PG_PORT=%s\nFLEET_AMQP_PORT=%s\nFLEET_AMQP_DIST_PORT=%s\nFLEET_AMQP_MGMT_PORT=%s\n' \
      "$PG_PORT" "$AMQP_PORT" "$AMQP_DIST_PORT" "$AMQP_MGMT_PORT"
    printf 'FLEET_AMQP_PROMETHEUS_PORT=%s\nFLEET_API_URL=%s\nFLEET_RABBITMQ_NODE=%s\nFLEET_WORKER_PORT_BASE=%s\n' \
      "$AMQP_PROM_PORT" "$(shq "$API_URL")" "$(shq "$RMQ_NODE")" "$WORKER_PORT_BASE"
    printf 'FLEET_EPMD_PORT=%s\nFLEET_QUEUE_TYPE=%s\nFLEET_QUEUES=%s\n' "$EPMD_PORT" "$QUEUE_TYPE" "$(shq "$QUEUES")"
    # Only a data dir away from the default is remembered (so the repository can move).
    [[ $PG_DATA == "$FLEET_HOME/pg" ]] || printf 'FLEET_PG_DATA=%s\n' "$(shq "$PG_DATA")"
  } >"$tmp"
  mv -f "$tmp" "$SETTINGS_FILE"
}

# Sets PG_PASSWORD, PG_RO_PASSWORD, AMQP_PASSWORD, API_KEY, API_READ_KEY, API_ADMIN_KEY. $1=1: passwords given in the environment replace
# the stored ones (only `start` does that, because it also applies them to the servers).
load_secrets() {
  local apply_overrides=${1:-0}
  local o_pg=${FLEET_PG_PASSWORD-} o_ro=${FLEET_PG_READONLY_PASSWORD-} o_amqp=${FLEET_AMQP_PASSWORD-} o_key=${FLEET_API_KEY-}
  local FLEET_PG_PASSWORD='' FLEET_PG_READONLY_PASSWORD='' FLEET_AMQP_PASSWORD='' FLEET_API_KEY='' FLEET_PG_SUPERUSER_PASSWORD=''
  # The API's read-only and admin keys (Api:ReadKeys:0, Api:AdminKeys:0), beside its read-write FLEET_API_KEY.
  local o_read=${FLEET_API_READ_KEY-} o_admin=${FLEET_API_ADMIN_KEY-} FLEET_API_READ_KEY='' FLEET_API_ADMIN_KEY=''
  if [[ -f $SECRETS_FILE ]]; then
    # shellcheck disable=SC1090
    source "$SECRETS_FILE"
  fi
  local changed=0
  if ((apply_overrides)); then
    [[ -n $o_pg && $o_pg != "$FLEET_PG_PASSWORD" ]] && FLEET_PG_PASSWORD=$o_pg && changed=1
    [[ -n $o_ro && $o_ro != "$FLEET_PG_READONLY_PASSWORD" ]] && FLEET_PG_READONLY_PASSWORD=$o_ro && changed=1
    [[ -n $o_amqp && $o_amqp != "$FLEET_AMQP_PASSWORD" ]] && FLEET_AMQP_PASSWORD=$o_amqp && changed=1
    [[ -n $o_key && $o_key != "$FLEET_API_KEY" ]] && FLEET_API_KEY=$o_key && changed=1
    [[ -n $o_read && $o_read != "$FLEET_API_READ_KEY" ]] && FLEET_API_READ_KEY=$o_read && changed=1
    [[ -n $o_admin && $o_admin != "$FLEET_API_ADMIN_KEY" ]] && FLEET_API_ADMIN_KEY=$o_admin && changed=1
  fi
  [[ -z $FLEET_PG_PASSWORD ]] && FLEET_PG_PASSWORD=$(random_hex 16) && changed=1
  [[ -z $FLEET_PG_READONLY_PASSWORD ]] && FLEET_PG_READONLY_PASSWORD=$(random_hex 16) && changed=1
  [[ -z $FLEET_AMQP_PASSWORD ]] && FLEET_AMQP_PASSWORD=$(random_hex 16) && changed=1
  [[ -z $FLEET_API_KEY ]] && FLEET_API_KEY=fleet_$(random_hex 24) && changed=1
  [[ -z $FLEET_API_READ_KEY ]] && FLEET_API_READ_KEY=fleet_read_$(random_hex 24) && changed=1
  [[ -z $FLEET_API_ADMIN_KEY ]] && FLEET_API_ADMIN_KEY=fleet_admin_$(random_hex 24) && changed=1
  ((apply_overrides && THROWAWAY)) && [[ -z $FLEET_PG_SUPERUSER_PASSWORD ]] && FLEET_PG_SUPERUSER_PASSWORD=$(random_hex 16) && changed=1
  if ((changed)); then
    local tmp
    tmp=$(umask 077 && mktemp "$FLEET_HOME/.secrets.XXXXXX")
    {
      echo "# Generated by infra/local/services.sh; never commit. Passwords of the local servers and the API key."
      printf 'FLEET_PG_PASSWORD=%s\n' "$(shq "$FLEET_PG_PASSWORD")"
      printf 'FLEET_PG_READONLY_PASSWORD=%s\n' "$(shq "$FLEET_PG_READONLY_PASSWORD")"
      printf 'FLEET_AMQP_PASSWORD=%s\n' "$(shq "$FLEET_AMQP_PASSWORD")"
      printf 'FLEET_API_KEY=%s\n' "$(shq "$FLEET_API_KEY")"
      printf 'FLEET_API_READ_KEY=%s\nFLEET_API_ADMIN_KEY=%s\n' "$(shq "$FLEET_API_READ_KEY")" "$(shq "$FLEET_API_ADMIN_KEY")"
      [[ -z $FLEET_PG_SUPERUSER_PASSWORD ]] || printf 'FLEET_PG_SUPERUSER_PASSWORD=%s\n' "$(shq "$FLEET_PG_SUPERUSER_PASSWORD")"
    } >"$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$SECRETS_FILE"
  fi
  PG_PASSWORD=$FLEET_PG_PASSWORD PG_RO_PASSWORD=$FLEET_PG_READONLY_PASSWORD
  AMQP_PASSWORD=$FLEET_AMQP_PASSWORD API_KEY=$FLEET_API_KEY PG_SU_PASSWORD=$FLEET_PG_SUPERUSER_PASSWORD
  API_READ_KEY=$FLEET_API_READ_KEY API_ADMIN_KEY=$FLEET_API_ADMIN_KEY
}

# The components' passwords (ROLE_SECRETS below), kept apart from .fleet/secrets. Sets each variable; one given in
# the environment replaces the stored one when $1=1 (`start`, which applies them to the servers).
ROLE_SECRETS=(FLEET_PG_WORKER_PASSWORD FLEET_PG_API_PASSWORD FLEET_AMQP_WORKER_PASSWORD FLEET_AMQP_API_PASSWORD FLEET_AMQP_PRODUCER_PASSWORD)
load_role_secrets() {
  local apply_overrides=${1:-0} file=$FLEET_HOME/role-secrets k changed=0
  local -A given=()
  for k in "${ROLE_SECRETS[@]}"; do [[ -n ${!k-} ]] && given[$k]=${!k}; printf -v "$k" '%s' ''; done
  # shellcheck disable=SC1090
  [[ -f $file ]] && source "$file"
  for k in "${ROLE_SECRETS[@]}"; do
    if ((apply_overrides)) && [[ -n ${given[$k]-} && ${given[$k]} != "${!k}" ]]; then printf -v "$k" '%s' "${given[$k]}"; changed=1; fi
    [[ -n ${!k} ]] || { printf -v "$k" '%s' "$(random_hex 16)"; changed=1; }
  done
  if ((changed)); then
    local tmp
    tmp=$(umask 077 && mktemp "$FLEET_HOME/.role-secrets.XXXXXX")
    {
      echo "# Generated by infra/local/services.sh; never commit. Passwords of the components' own logins."
      for k in "${ROLE_SECRETS[@]}"; do printf '%s=%s\n' "$k" "$(shq "${!k}")"; done
    } >"$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$file"
  fi
}

ensure_dirs() {
  mkdir -p "$FLEET_HOME" "$LOG_DIR" "$FLEET_HOME/run" "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
  # The postgres user must be able to pass through .fleet (not list it: secrets and env live here too).
  chmod 711 "$FLEET_HOME" "$LOG_DIR"
  chmod 700 "$RMQ_DIR" "$FLEET_HOME/run"
}

amqp_url_of() { printf 'amqp://%s:%s@127.0.0.1:%s/fleet' "$1" "$(urlenc "$2")" "$AMQP_PORT"; }
npgsql_of() { printf 'Host=127.0.0.1;Port=%s;Database=fleet;Username=%s;Password=%s' "$PG_PORT" "$1" "$(npgsql_val "$2")"; }

write_env() {
  local tmp amqp_url pg_dsn ro_dsn npgsql mgmt_url e
  amqp_url=$(amqp_url_of fleet "$AMQP_PASSWORD")
  # The management HTTP API (queue depths for the API's /stats; purges and users for operators).
  mgmt_url="http://fleet:$(urlenc "$AMQP_PASSWORD")@127.0.0.1:$AMQP_MGMT_PORT/"
  pg_dsn="host=127.0.0.1 port=$PG_PORT dbname=fleet user=fleet password=$(libpq_val "$PG_PASSWORD")"
  ro_dsn="host=127.0.0.1 port=$PG_PORT dbname=fleet user=fleet_readonly password=$(libpq_val "$PG_RO_PASSWORD")"
  npgsql=$(npgsql_of fleet "$PG_PASSWORD")
  tmp=$(umask 077 && mktemp "$FLEET_HOME/.env.XXXXXX")
  {
    echo "# Fleet local settings, written by infra/local/services.sh (make up). Source it: . .fleet/env"
    echo "# Holds passwords: never commit, never paste."
    printf 'export FLEET_API_URL=%s\n' "$(shq "$API_URL")"
    printf 'export FLEET_API_KEY=%s\n' "$(shq "$API_KEY")"
    printf 'export FLEET_API_READ_KEY=%s\nexport FLEET_API_ADMIN_KEY=%s\n' "$(shq "$API_READ_KEY")" "$(shq "$API_ADMIN_KEY")"
    printf 'export FLEET_AMQP_URL=%s\n' "$(shq "$amqp_url")"
    printf 'export FLEET_PG_DSN=%s\n' "$(shq "$pg_dsn")"
    printf 'export FLEET_PG_READONLY_DSN=%s\n' "$(shq "$ro_dsn")"
    printf 'export ConnectionStrings__fleetdb=%s\n' "$(shq "$npgsql")"
    printf 'export ConnectionStrings__rabbitmq=%s\n' "$(shq "$amqp_url")"
    printf 'export FLEET_RABBITMQ_MANAGEMENT_URL=%s\n' "$(shq "$mgmt_url")"
    # One queue type for every component that declares a lane (workers, API, CLI): they must all agree with the broker.
    printf 'export RabbitMq__QueueType=%s\n' "$QUEUE_TYPE"
    # The worker groups' queues the API declares (FLEET_QUEUES); workers serve one only if their Worker__Queues list it.
    for e in $QUEUES; do printf 'export Api__Queues__%s=%s\n' "${e%%=*}" "${e#*=}"; done
    # The variables above are the owner's and the broker administrator's (migrations, retention, operators). Each
    # component runs with its own (fleet.sh passes these as its ConnectionStrings__*).
    printf 'export FLEET_WORKER_PG_CONNECTION=%s\n' "$(shq "$(npgsql_of fleet_worker "$FLEET_PG_WORKER_PASSWORD")")"
    printf 'export FLEET_WORKER_AMQP_URL=%s\n' "$(shq "$(amqp_url_of fleet_worker "$FLEET_AMQP_WORKER_PASSWORD")")"
    printf 'export FLEET_API_PG_CONNECTION=%s\n' "$(shq "$(npgsql_of fleet_api "$FLEET_PG_API_PASSWORD")")"
    printf 'export FLEET_API_AMQP_URL=%s\n' "$(shq "$(amqp_url_of fleet_api "$FLEET_AMQP_API_PASSWORD")")"
    printf 'export FLEET_API_RABBITMQ_MANAGEMENT_URL=%s\n' "$(shq "http://fleet_api:$(urlenc "$FLEET_AMQP_API_PASSWORD")@127.0.0.1:$AMQP_MGMT_PORT/")"
    printf 'export FLEET_PRODUCER_AMQP_URL=%s\n' "$(shq "$(amqp_url_of fleet_producer "$FLEET_AMQP_PRODUCER_PASSWORD")")"
    [[ -z $PG_SU_PASSWORD ]] || printf 'export FLEET_PG_SUPERUSER_CONNECTION=%s\n' \
      "$(shq "Host=127.0.0.1;Port=$PG_PORT;Database=postgres;Username=postgres;Password=$(npgsql_val "$PG_SU_PASSWORD")")"
  } >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

# ------------------------------------------------------------------------------------------------ PostgreSQL

pg_choose_data_dir() {
  # The data dir must be reachable by the postgres user. A clone under /root (mode 700) is not: then keep the
  # data in /var/lib/fleet-local/<hash of the repo path>/pg and remember that choice in .fleet/settings.
  [[ -n ${FLEET_PG_DATA-} || -f $PG_DATA/PG_VERSION ]] && return 0
  if ((EUID == 0)) && ! runuser -u postgres -- test -x "$FLEET_HOME"; then
    local id
    # Keyed by the repository, or by FLEET_HOME when that is not the default (a second setup of the same clone).
    local key=$ROOT
    [[ $FLEET_HOME == "$ROOT/.fleet" ]] || key=$FLEET_HOME
    id=$(printf '%s' "$key" | cksum | cut -d' ' -f1)
    PG_DATA=/var/lib/fleet-local/$id/pg
    log "note: the postgres user cannot reach $FLEET_HOME; PostgreSQL data goes to $PG_DATA"
    mkdir -p "$(dirname "$PG_DATA")"
    pg_log_path
  fi
}

# The server log sits in .fleet/logs, or next to a data dir kept elsewhere (the postgres user must write it).
pg_log_path() {
  if [[ $PG_DATA == "$FLEET_HOME/pg" ]]; then PG_LOG=$LOG_DIR/postgres.log; else PG_LOG=$(dirname "$PG_DATA")/postgres.log; fi
}

pg_sock_dir() {
  # Unix socket inside the data dir (mode 700: only postgres and root reach it), unless the path is too long.
  local s=$PG_DATA
  if ((${#s} + 20 > 100)); then s=/tmp/fleet-pg-$(printf '%s' "$PG_DATA" | cksum | cut -d' ' -f1); fi
  printf '%s' "$s"
}

pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

# Port and socket dir of the running postmaster (lines 4 and 5 of postmaster.pid).
pg_live_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null; }
pg_live_sock() { sed -n 5p "$PG_DATA/postmaster.pid" 2>/dev/null; }

pg_start() {
  [[ -x $PG_BIN/pg_ctl ]] || die "PostgreSQL 15 not found in $PG_BIN (run infra/local/install.sh)"
  pg_choose_data_dir
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    log "initdb $PG_DATA"
    mkdir -p "$PG_DATA"
    ((EUID == 0)) && chown postgres:postgres "$PG_DATA"
    chmod 700 "$PG_DATA"
    # trust on the unix socket (its dir is the 700 data dir), scram-sha-256 passwords on TCP 127.0.0.1.
    local sync=()
    ((THROWAWAY)) && sync=(--no-sync)
    if ! as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --no-locale "${sync[@]}" >"$LOG_DIR/initdb.log" 2>&1; then
      tail -n 20 "$LOG_DIR/initdb.log" >&2
      die "initdb failed (log: $LOG_DIR/initdb.log)"
    fi
  fi
  if pg_running; then
    local live
    live=$(pg_live_port)
    [[ $live == "$PG_PORT" ]] || log "warning: PostgreSQL already runs on port $live, not $PG_PORT; stop it first to move it"
    PG_PORT=$live
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    return 0
  fi
  port_open "$PG_PORT" && die "port $PG_PORT (FLEET_PG_PORT) is already in use by another program"
  local sock
  sock=$(pg_sock_dir)
  if [[ $sock != "$PG_DATA" ]]; then
    mkdir -p "$sock" && chmod 700 "$sock"
    ((EUID == 0)) && chown postgres:postgres "$sock"
  fi
  touch "$PG_LOG"
  ((EUID == 0)) && chown postgres:postgres "$PG_LOG"
  local listen=127.0.0.1 extra_opts=''
  if [[ -n $LISTEN_ADDR ]]; then
    listen+=",$LISTEN_ADDR"
    grep -qF "host all all $LISTEN_NET scram-sha-256" "$PG_DATA/pg_hba.conf" ||
      printf '# added by services.sh (FLEET_LISTEN_EXTRA)\nhost all all %s scram-sha-256\n' "$LISTEN_NET" >>"$PG_DATA/pg_hba.conf"
    # Clients on other hosts can vanish without a FIN (a cut link): probe idle ones so their backends end (~20 s).
    extra_opts=' -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3'
  fi
  if [[ -n $TLS_CERT ]]; then
    # PostgreSQL wants its key owned by its own user with mode 600: copies in the data dir.
    install -m 600 "$TLS_CERT" "$PG_DATA/fleet-tls.crt" && install -m 600 "$TLS_KEY" "$PG_DATA/fleet-tls.key"
    ((EUID == 0)) && chown postgres:postgres "$PG_DATA/fleet-tls.crt" "$PG_DATA/fleet-tls.key"
    extra_opts+=' -c ssl=on -c ssl_cert_file=fleet-tls.crt -c ssl_key_file=fleet-tls.key'
  fi
  # Throwaway data: fsync and full_page_writes only guard against an OS crash. synchronous_commit stays on: without
  # it a killed server loses commits it had confirmed, and the crash tests check that none is lost.
  ((THROWAWAY)) && extra_opts+=' -c fsync=off -c full_page_writes=off -c max_connections=300'
  if ! as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
    -o "-p $PG_PORT -k '$sock' -c listen_addresses=$listen$extra_opts" start >/dev/null 9>&-; then
    tail -n 20 "$PG_LOG" >&2
    die "PostgreSQL did not start (log: $PG_LOG)"
  fi
  log "PostgreSQL started on $listen port $PG_PORT"
}

pg_bootstrap() {
  local port sock
  port=$(pg_live_port) sock=$(pg_live_sock)
  [[ -n $sock ]] || sock=$(pg_sock_dir)
  # Passwords travel on stdin, never on a command line.
  {
    printf '\\set fleet_password %s\n' "$(psql_meta_quote "$PG_PASSWORD")"
    printf '\\set readonly_password %s\n' "$(psql_meta_quote "$PG_RO_PASSWORD")"
    printf '\\set worker_password %s\n' "$(psql_meta_quote "$FLEET_PG_WORKER_PASSWORD")"
    printf '\\set api_password %s\n' "$(psql_meta_quote "$FLEET_PG_API_PASSWORD")"
    if [[ -n $PG_SU_PASSWORD ]]; then
      printf '\\set su_password %s\n' "$(psql_meta_quote "$PG_SU_PASSWORD")"
      echo "ALTER ROLE postgres PASSWORD :'su_password';"
    fi
    cat "$ROOT/infra/postgres/bootstrap.sql"
  } | PGOPTIONS='-c client_min_messages=warning' "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$sock" -p "$port" -U postgres -d postgres -f - >/dev/null ||
    die "creating the fleet roles and database failed"
}

pg_stop() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 0
  if pg_running; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 9>&- || die "pg_ctl stop failed"
    log "PostgreSQL stopped"
  fi
}

# Pids of the direct children of $1.
children_of() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true; }

# Waits up to $2 tenths of a second until pid $1 has ended; 0 if it did. A zombie counts as ended with $3=zombie.
wait_gone() {
  local i state
  for ((i = 0; i < $2; i++)); do
    state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) || state=''
    [[ -z $state || ($state == Z && ${3-} == zombie) ]] && return 0
    sleep 0.1
  done
  return 1
}

# A crash: SIGKILL to the postmaster and its backends at once (by pid, checked against the data dir), no shutdown
# checkpoint. The data stays; the next start recovers from the WAL.
pg_kill() {
  local pid children shmid
  pid=$(sed -n 1p "$PG_DATA/postmaster.pid" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PG_DATA" || return 0
  children=$(children_of "$pid")
  # shellcheck disable=SC2086
  kill -KILL "$pid" $children 2>/dev/null || true
  # PostgreSQL refuses to start while the old pid exists, and a zombie counts; an init that reaps orphans only now
  # and then leaves one: then the lock file is stale.
  if ! wait_gone "$pid" 100; then
    wait_gone "$pid" 1 zombie || die "PostgreSQL postmaster $pid survived SIGKILL for 10 s"
    log "postmaster $pid is a zombie nobody reaps; removing its stale postmaster.pid"
  fi
  # The shared memory segment a clean stop would remove (line 7 of postmaster.pid: key and id).
  shmid=$(sed -n '7s/^ *[0-9]* *\([0-9]*\).*/\1/p' "$PG_DATA/postmaster.pid" 2>/dev/null) || shmid=''
  [[ -n $shmid ]] && ipcrm -m "$shmid" 2>/dev/null
  rm -f "$PG_DATA/postmaster.pid"
  log "PostgreSQL killed (pid $pid)"
}

pg_status() {
  if pg_running; then
    printf 'postgresql  running  pid %s  127.0.0.1:%s  data %s\n' "$(sed -n 1p "$PG_DATA/postmaster.pid")" \
      "$(pg_live_port)" "$PG_DATA"
  else
    printf 'postgresql  stopped  (port %s, data %s)\n' "$PG_PORT" "$PG_DATA"
    return 1
  fi
}

# -------------------------------------------------------------------------------------------------- RabbitMQ

rmq_export() {
  export HOME=$RMQ_DIR                      # Erlang cookie: $RMQ_DIR/.erlang.cookie
  export RABBITMQ_NODENAME=$RMQ_NODE
  if [[ -z $LISTEN_ADDR ]]; then
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=$AMQP_PORT
  fi # else: two listeners.tcp lines in rabbitmq.conf (with these set as well the node would bind twice)
  export RABBITMQ_DIST_PORT=$AMQP_DIST_PORT
  export RABBITMQ_MNESIA_BASE=$RMQ_DIR/mnesia
  export RABBITMQ_LOG_BASE=$RMQ_DIR/log
  export RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ_DIR/enabled_plugins
  export RABBITMQ_CONFIG_FILE=$RMQ_DIR/rabbitmq # without .conf
  export RABBITMQ_ADVANCED_CONFIG_FILE=$RMQ_DIR/advanced.config
  export RABBITMQ_CONF_ENV_FILE=$RMQ_DIR/rabbitmq-env.conf # ours (empty), not /etc/rabbitmq's
  export RABBITMQ_PID_FILE=$RMQ_PID_FILE
  export ERL_CRASH_DUMP=$RMQ_DIR/log/erl_crash.dump
  # Erlang distribution (node <-> rabbitmqctl) and epmd on loopback only.
  export ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$EPMD_PORT
  # Scheduler busy-waiting off (FLEET_RABBITMQ_ERL_ARGS to change): the broker shares its cores with PostgreSQL,
  # the workers and the producer, and an idle Erlang scheduler that spins burns CPU they need (about a third of
  # all CPU samples under the noop bench was spinning schedulers).
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} ${FLEET_RABBITMQ_ERL_ARGS-+sbwt none +sbwtdcpu none +sbwtdio none}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

rmqctl() {
  (rmq_export && cd "$RMQ_DIR" && exec timeout "${RMQCTL_TIMEOUT:-120}" "$RMQ_BIN/rabbitmqctl" -q -n "$RMQ_NODE" "$@")
}

rmq_pid() {
  local pid
  [[ -f $RMQ_PID_FILE ]] || return 1
  pid=$(tr -dc 0-9 <"$RMQ_PID_FILE")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Make sure the pid is still our node (not a recycled pid): an Erlang VM whose HOME is our dir.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-home $RMQ_DIR " || return 1
  printf '%s' "$pid"
}

rmq_running() { rmq_pid >/dev/null; }

# Writes the node's config, plugins and definitions. Returns 0 if the definitions changed.
rmq_write_config() {
  {
    cat "$ROOT/infra/rabbitmq/rabbitmq.conf"
    echo
    echo "# ---- added by infra/local/services.sh"
    echo "management.tcp.ip = 127.0.0.1"
    echo "management.tcp.port = $AMQP_MGMT_PORT"
    echo "prometheus.tcp.ip = 127.0.0.1"
    echo "prometheus.tcp.port = $AMQP_PROM_PORT"
    echo "load_definitions = $RMQ_DEFS"
    if ((THROWAWAY)); then
      # The tests read queue depths through the management API, which refreshes them every 5 s by default: a short
      # run under load could pass between two refreshes and never show its backlog. Every second instead: the
      # queues' own reports (collect_statistics_interval; quorum queues: see advanced.config below) and the
      # management collector's, which takes the smallest interval of its sample retention policies (each key: keep
      # that many seconds, one sample every N s; all three sections must be given).
      echo "collect_statistics_interval = 1000"
      echo "management.sample_retention_policies.global.minute = 1"
      echo "management.sample_retention_policies.global.hour = 60"
      echo "management.sample_retention_policies.basic.minute = 1"
      echo "management.sample_retention_policies.basic.hour = 60"
      echo "management.sample_retention_policies.detailed.10 = 1"
    fi
    if [[ -n $LISTEN_ADDR ]]; then
      echo "listeners.tcp.1 = 127.0.0.1:$AMQP_PORT"
      echo "listeners.tcp.2 = $LISTEN_ADDR:$AMQP_PORT"
    fi
    if [[ -n $AMQP_TLS_PORT ]]; then
      # Server authentication only: clients check this certificate; the broker asks for none of theirs.
      echo "listeners.ssl.default = 127.0.0.1:$AMQP_TLS_PORT"
      echo "ssl_options.certfile = $TLS_CERT"
      echo "ssl_options.keyfile = $TLS_KEY"
      echo "ssl_options.verify = verify_none"
      echo "ssl_options.fail_if_no_peer_cert = false"
      echo "management.ssl.ip = 127.0.0.1"
      echo "management.ssl.port = $AMQP_MGMT_TLS_PORT"
      echo "management.ssl.certfile = $TLS_CERT"
      echo "management.ssl.keyfile = $TLS_KEY"
    fi
  } >"$RMQ_DIR/rabbitmq.conf"
  if ((THROWAWAY)); then
    # A quorum queue reports its message counts on its own tick, every 5 s by default (later under load), whatever
    # collect_statistics_interval says; a test's 10 s run saw its backlog only in its last 3 s. Read when a queue
    # is declared (the definitions' queues too); RabbitMQ 3.10's rabbitmq.conf has no key for it.
    echo '[{rabbit, [{quorum_tick_interval, 1000}]}].' >"$RMQ_DIR/advanced.config"
  fi
  echo '[rabbitmq_management,rabbitmq_prometheus].' >"$RMQ_DIR/enabled_plugins"
  : >"$RMQ_DIR/rabbitmq-env.conf"
  if [[ ! -s $RMQ_DIR/.erlang.cookie ]]; then
    (umask 077 && random_hex 20 | tr 'a-f' 'A-F' >"$RMQ_DIR/.erlang.cookie")
    chmod 400 "$RMQ_DIR/.erlang.cookie"
  fi
  # Definitions: vhost fleet, the lanes' topology (so that producers, who may not declare it, can publish before
  # any worker started), and one user per component with rights on that vhost only (password hashes only). Rewritten
  # when a password or the rights change (a digest of them in definitions.sum).
  local sum
  sum=$( (printf '%s\n' "$AMQP_PASSWORD" "$FLEET_AMQP_PRODUCER_PASSWORD" "$FLEET_AMQP_API_PASSWORD" "$FLEET_AMQP_WORKER_PASSWORD" "$QUEUE_TYPE" ${QUEUES:+"$QUEUES"}
    cat "$ROOT/infra/rabbitmq/definitions.template.json") | sha256sum | cut -c1-64)
  if [[ -f $RMQ_DEFS && $(cat "$RMQ_DIR/definitions.sum" 2>/dev/null) == "$sum" ]]; then
    return 1
  fi
  FLEET_AMQP_PASSWORD=$AMQP_PASSWORD FLEET_AMQP_PRODUCER_PASSWORD=$FLEET_AMQP_PRODUCER_PASSWORD \
    FLEET_AMQP_API_PASSWORD=$FLEET_AMQP_API_PASSWORD FLEET_AMQP_WORKER_PASSWORD=$FLEET_AMQP_WORKER_PASSWORD \
    FLEET_QUEUE_TYPE=$QUEUE_TYPE FLEET_QUEUES=$QUEUES "$ROOT/infra/rabbitmq/render-definitions.sh" "$RMQ_DEFS" || die "writing $RMQ_DEFS failed"
  printf '%s\n' "$sum" >"$RMQ_DIR/definitions.sum"
  return 0
}

epmd_cmd() { ERL_EPMD_PORT=$EPMD_PORT epmd -port "$EPMD_PORT" "$@"; }
epmd_has_names() { epmd_cmd -names 2>/dev/null | grep -q '^name '; }

# Boots the node in the background (rmq_wait waits for it), so that PostgreSQL can start meanwhile.
rmq_launch() {
  [[ -x $RMQ_BIN/rabbitmq-server ]] || die "RabbitMQ not found in $RMQ_BIN (run infra/local/install.sh)"
  RMQ_DEFS_CHANGED=0 RMQ_WAS_RUNNING=''
  rmq_write_config && RMQ_DEFS_CHANGED=1
  if rmq_running; then
    RMQ_WAS_RUNNING=$(rmq_pid)
    log "RabbitMQ node $RMQ_NODE already running (pid $RMQ_WAS_RUNNING)"
  else
    local p
    for p in "$AMQP_PORT" "$AMQP_DIST_PORT" "$AMQP_MGMT_PORT" "$AMQP_PROM_PORT" $AMQP_TLS_PORT $AMQP_MGMT_TLS_PORT; do
      port_open "$p" && die "port $p is already in use by another program (see the FLEET_AMQP_* settings)"
    done
    rm -f "$RMQ_PID_FILE"
    if ! epmd_cmd -names >/dev/null 2>&1; then
      # epmd is started by the node; remember it was us, so `stop` may end it again (only when no node uses it).
      touch "$EPMD_MARKER"
    fi
    log "starting RabbitMQ node $RMQ_NODE"
    (rmq_export && cd "$RMQ_DIR" && exec "$RMQ_BIN/rabbitmq-server" -detached) \
      >>"$RMQ_DIR/log/startup.log" 2>&1 9>&- || die "rabbitmq-server -detached failed (log: $RMQ_DIR/log/)"
    RMQ_DEFS_CHANGED=0 # a fresh boot loads the definitions file itself
  fi
}

rmq_wait() {
  # Ready when the AMQP port answers (rabbitmqctl await_startup fails if asked before the node registers).
  local i
  for ((i = 0; i < 600; i++)); do
    port_open "$AMQP_PORT" && rmq_running && break
    if ((i > 50)) && ! rmq_running && [[ -f $RMQ_PID_FILE ]]; then break; fi
    sleep 0.1
  done
  if ! port_open "$AMQP_PORT" || ! rmq_running; then
    tail -n 30 "$RMQ_DIR/log/$RMQ_NODE.log" 2>/dev/null >&2 || true
    die "RabbitMQ did not come up on 127.0.0.1:$AMQP_PORT within 60 s (logs: $RMQ_DIR/log/)"
  fi
  if ((RMQ_DEFS_CHANGED)); then
    rmqctl import_definitions "$RMQ_DEFS" >/dev/null || die "importing $RMQ_DEFS failed"
    log "RabbitMQ users and rights updated"
  fi
  [[ -z $RMQ_WAS_RUNNING ]] && log "RabbitMQ started on 127.0.0.1:$AMQP_PORT (management http://127.0.0.1:$AMQP_MGMT_PORT/)"
  return 0
}

# End epmd only if this script's node started it and no other node is registered with it (a node just killed
# stays listed for a moment).
rmq_end_epmd() {
  [[ -f $EPMD_MARKER ]] || return 0
  local i
  for ((i = 0; i < 10; i++)); do epmd_has_names || break; sleep 0.2; done
  if ! epmd_has_names; then epmd_cmd -kill >/dev/null 2>&1 || true; fi
  rm -f "$EPMD_MARKER"
}

# A crash: SIGKILL to the node and its children (by pid, checked against our dir). The data stays.
rmq_kill() {
  local pid children
  pid=$(rmq_pid) || { rmq_end_epmd; return 0; }
  children=$(children_of "$pid")
  # shellcheck disable=SC2086
  kill -KILL "$pid" $children 2>/dev/null || true
  wait_gone "$pid" 100 zombie || die "RabbitMQ node $pid survived SIGKILL for 10 s"
  rm -f "$RMQ_PID_FILE"
  log "RabbitMQ killed (pid $pid)"
  rmq_end_epmd
}

rmq_stop() {
  local pid
  if pid=$(rmq_pid); then
    # SIGTERM is the node's graceful shutdown, the same as `rabbitmqctl stop` without booting a CLI node first.
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 600 zombie; then
      log "node $RMQ_NODE did not stop within 60 s of SIGTERM; sending SIGKILL to pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 100 zombie || true
    fi
    rm -f "$RMQ_PID_FILE"
    log "RabbitMQ stopped"
  fi
  rmq_end_epmd
}

rmq_status() {
  local pid
  if pid=$(rmq_pid); then
    printf 'rabbitmq    running  pid %s  amqp 127.0.0.1:%s  management http://127.0.0.1:%s/  node %s\n' \
      "$pid" "$AMQP_PORT" "$AMQP_MGMT_PORT" "$RMQ_NODE"
    port_open "$AMQP_PORT" || { echo "            (AMQP port not answering yet)"; return 1; }
  else
    printf 'rabbitmq    stopped  (amqp port %s, node %s)\n' "$AMQP_PORT" "$RMQ_NODE"
    return 1
  fi
}

# ------------------------------------------------------------------------------------------------------ main

with_lock() {
  exec 9>"$FLEET_HOME/.lock"
  flock -w 180 9 || die "another services.sh holds $FLEET_HOME/.lock"
}

cmd=${1:-}
what=${2:-both}
[[ $what == @(both|postgresql|rabbitmq) ]] || die "unknown server '$what': postgresql or rabbitmq"
pg() { [[ $what != rabbitmq ]]; }
rmq() { [[ $what != postgresql ]]; }
case $cmd in
  start)
    # The packages first (silent when present): every path that starts the servers (make up, demo, migrate,
    # bench, fleet-sim) comes through here, on a fresh machine too.
    if [[ ${FLEET_SKIP_INSTALL:-0} != 1 ]]; then
      "$ROOT/infra/local/install.sh" postgresql rabbitmq-server || die "installing postgresql and rabbitmq-server failed"
    fi
    load_settings
    ensure_dirs
    with_lock
    load_secrets 1
    load_role_secrets 1
    pg_choose_data_dir
    save_settings # early, so that `stop` finds a half-started setup
    if rmq; then rmq_launch; fi
    if pg; then pg_start && pg_bootstrap; fi
    if rmq; then rmq_wait; fi
    save_settings
    write_env
    log "settings written to ${ENV_FILE#"$ROOT"/} (source it: . ${ENV_FILE#"$ROOT"/})"
    ;;
  stop)
    load_settings
    [[ -d $FLEET_HOME ]] || exit 0
    with_lock
    if rmq; then rmq_stop; fi
    if pg; then pg_stop; fi
    ;;
  kill)
    load_settings
    [[ -d $FLEET_HOME ]] || exit 0
    with_lock
    if rmq; then rmq_kill; fi
    if pg; then pg_kill; fi
    ;;
  status)
    load_settings
    rc=0
    if pg; then pg_status || rc=3; fi
    if rmq; then rmq_status || rc=3; fi
    exit $rc
    ;;
  purge)
    load_settings
    [[ -d $FLEET_HOME ]] || exit 0
    with_lock
    rmq_stop
    pg_stop
    # A data dir kept outside .fleet (see pg_choose_data_dir) goes too, but only one this script made.
    if [[ $PG_DATA == /var/lib/fleet-local/*/pg ]]; then rm -rf "$(dirname "$PG_DATA")"; fi
    rm -rf "$FLEET_HOME"
    log "deleted $FLEET_HOME"
    ;;
  env)
    load_settings
    ensure_dirs
    load_secrets 0
    load_role_secrets 0
    write_env
    printf '%s\n' "$ENV_FILE"
    ;;
  *)
    sed -n '2,/^set -Eeuo/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac

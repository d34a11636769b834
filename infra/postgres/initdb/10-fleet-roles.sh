#!/usr/bin/env bash
# docker-entrypoint-initdb.d hook of the postgres image (docker-compose.yml): creates Fleet's roles, database
# and schema with infra/postgres/bootstrap.sql, the same script infra/local/services.sh runs locally.
# Needs FLEET_PG_PASSWORD, FLEET_PG_READONLY_PASSWORD, FLEET_PG_WORKER_PASSWORD and FLEET_PG_API_PASSWORD in the
# container's environment.
set -euo pipefail
: "${FLEET_PG_PASSWORD:?FLEET_PG_PASSWORD is not set}"
: "${FLEET_PG_READONLY_PASSWORD:?FLEET_PG_READONLY_PASSWORD is not set}"
: "${FLEET_PG_WORKER_PASSWORD:?FLEET_PG_WORKER_PASSWORD is not set}"
: "${FLEET_PG_API_PASSWORD:?FLEET_PG_API_PASSWORD is not set}"
sql=${FLEET_BOOTSTRAP_SQL:-/fleet/bootstrap.sql}

# psql \set argument in single quotes: double ' and \ (passwords travel on stdin, never on a command line).
q() { local v=${1//\\/\\\\}; v=${v//\'/\'\'}; printf "'%s'" "$v"; }
{
  printf '\\set fleet_password %s\n' "$(q "$FLEET_PG_PASSWORD")"
  printf '\\set readonly_password %s\n' "$(q "$FLEET_PG_READONLY_PASSWORD")"
  printf '\\set worker_password %s\n' "$(q "$FLEET_PG_WORKER_PASSWORD")"
  printf '\\set api_password %s\n' "$(q "$FLEET_PG_API_PASSWORD")"
  cat "$sql"
} | PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 \
  --username "${POSTGRES_USER:-postgres}" --dbname postgres -f - >/dev/null
echo "fleet roles, database and schema ready"

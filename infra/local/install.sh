#!/usr/bin/env bash
# Installs the servers Fleet's local services and tests run on: rabbitmq-server and postgresql (Debian 12, apt),
# chromium, the headless browser the dashboard tests drive through Playwright (never a downloaded browser),
# iproute2 (the multi-host test bed's network namespaces), python3-pika, the AMQP client of the Python publishing
# sample (samples/python) that a test runs with /usr/bin/python3, and docker-compose (1.29), with which the tests
# validate docker-compose.yml (no Docker engine needed for that).
# Idempotent: installs only what is missing and prints nothing when everything is present.
# Needs root (or sudo) only when something has to be installed.
set -euo pipefail

# package -> a file that proves it is installed and usable (for a Python module: its directory)
declare -A probe=(
  [rabbitmq-server]=/usr/lib/rabbitmq/bin/rabbitmq-server
  [postgresql]=/usr/lib/postgresql/15/bin/pg_ctl
  [chromium]=/usr/bin/chromium
  [python3-pika]=/usr/lib/python3/dist-packages/pika
  [docker-compose]=/usr/bin/docker-compose
)

missing=()
for pkg in rabbitmq-server postgresql chromium python3-pika docker-compose; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || [[ ! -x ${probe[$pkg]} ]]; then
    missing+=("$pkg")
  fi
done
# psql is what the scripts talk to PostgreSQL with (postgresql depends on it, but check anyway).
command -v psql >/dev/null 2>&1 || [[ " ${missing[*]} " == *" postgresql "* ]] || missing+=(postgresql-client)
# ip (iproute2) builds the simulated hosts of the multi-host tests and `make fleet-sim` (network namespaces).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# openssl generates the local passwords (services.sh falls back to /dev/urandom, so this is optional).

((${#missing[@]} == 0)) && exit 0

sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
    echo "install.sh: missing packages (${missing[*]}) and not root; run as root or install them yourself" >&2
    exit 1
  fi
fi

echo "install.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Never start the packaged system services: Fleet runs private servers on its own ports.
# (Without systemd the packages' postinst would otherwise try `invoke-rc.d ... start`.)
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  made_policy=1
fi
cleanup() { ((made_policy)) && "${sudo[@]}" rm -f "$policy"; return 0; }
trap cleanup EXIT

"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install.sh: done" >&2

#!/usr/bin/env bash
# Installs the servers Fleet's local services and tests run on: rabbitmq-server and postgresql (Debian 12, apt),
# chromium, the headless browser the dashboard tests drive through Playwright (never a downloaded browser),
# iproute2 (the multi-host test bed's network namespaces), python3-pika, the AMQP client of the Python publishing
# sample (samples/python) that a test runs with /usr/bin/python3, and docker-compose (1.29), with which the tests
# validate docker-compose.yml (no Docker engine needed for that), and jq, with which rabbit-cluster.sh reads the
# broker cluster's queue lists.
#
#   infra/local/install.sh                 everything above (make test, make fleet-sim, .ci/run)
#   infra/local/install.sh PACKAGE...      only those of the list (services.sh start: postgresql rabbitmq-server)
#
# Idempotent: installs only what is missing and prints nothing when everything is present.
# Needs root (or sudo) only when something has to be installed.
set -Eeuo pipefail

SCRIPT=install.sh
# shellcheck source=infra/local/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/errors.sh"

# package -> a file that proves it is installed and usable (for a Python module: its directory)
declare -A probe=(
  [rabbitmq-server]=/usr/lib/rabbitmq/bin/rabbitmq-server
  [postgresql]=/usr/lib/postgresql/15/bin/pg_ctl
  [chromium]=/usr/bin/chromium
  [python3-pika]=/usr/lib/python3/dist-packages/pika
  [docker-compose]=/usr/bin/docker-compose
  [iproute2]=/usr/bin/ip # checked with command -v ip: any ip on PATH will do
  [jq]=/usr/bin/jq
)
all=(rabbitmq-server postgresql chromium python3-pika docker-compose iproute2 jq)

wanted=("$@")
((${#wanted[@]} > 0)) || wanted=("${all[@]}")
for pkg in "${wanted[@]}"; do
  [[ -n ${probe[$pkg]-} ]] || { log "error: unknown package '$pkg' (known: ${all[*]})"; exit 2; }
done

# Prints the packages of "${wanted[@]}" that are missing, one per line.
missing_packages() {
  local pkg
  for pkg in "${wanted[@]}"; do
    case $pkg in
      iproute2)
        # ip builds the simulated hosts of the multi-host tests and `make fleet-sim` (network namespaces).
        command -v ip >/dev/null 2>&1 || echo iproute2
        ;;
      *)
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || [[ ! -x ${probe[$pkg]} ]]; then
          echo "$pkg"
        elif [[ $pkg == postgresql ]] && ! command -v psql >/dev/null 2>&1; then
          # psql is what the scripts talk to PostgreSQL with (postgresql depends on it, but check anyway).
          echo postgresql-client
        fi
        ;;
    esac
  done
}
# openssl generates the local passwords (services.sh falls back to /dev/urandom, so this is optional).

mapfile -t missing < <(missing_packages)
((${#missing[@]} == 0)) && exit 0

sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
    log "error: missing packages (${missing[*]}) and not root; run as root or install them yourself"
    exit 1
  fi
fi

# One install at a time on this machine (a `make up` and a CI run may start together): wait for the other one,
# then look again at what is still missing.
if ((EUID == 0)); then
  mkdir -p /run/lock
  exec 8>/run/lock/fleet-install.lock
  flock -w 900 8 || { log "error: another install.sh held /run/lock/fleet-install.lock for 15 minutes"; exit 1; }
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]} == 0)) && exit 0
fi

log "installing ${missing[*]}"
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

# apt waits for a dpkg lock held by another apt (unattended upgrades) instead of failing at once.
apt_opts=(-o DPkg::Lock::Timeout=600)
"${sudo[@]}" apt-get "${apt_opts[@]}" update -qq
"${sudo[@]}" apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "done"

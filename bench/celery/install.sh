#!/usr/bin/env bash
# Installs what the Celery side of `make bench-compare` runs on, from Debian's packages only (apt; no pip, no PyPI):
# Celery 5.2 with kombu/py-amqp, SQLAlchemy and psycopg2 for its database result backend, and numpy for the heat
# stencil. With CELERY_SLEEP_POOL=gevent also python3-gevent. Idempotent: installs only what is missing and prints
# nothing when everything is present. Needs root (or sudo) only when something has to be installed.
# Kept apart from infra/local/install.sh so that `make test` never installs Celery.
set -euo pipefail

PYTHON=/usr/bin/python3
# package -> the module that proves it is importable by Debian's python3
declare -A module=(
  [python3-celery]=celery
  [python3-sqlalchemy]=sqlalchemy
  [python3-psycopg2]=psycopg2
  [python3-numpy]=numpy
)
[[ ${CELERY_SLEEP_POOL:-threads} == gevent ]] && module[python3-gevent]=gevent

missing=()
[[ -x $PYTHON ]] || missing+=(python3)
for pkg in "${!module[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
    ! "$PYTHON" -c "import ${module[$pkg]}" 2>/dev/null; then
    missing+=("$pkg")
  fi
done

((${#missing[@]} == 0)) && exit 0

sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
    echo "bench/celery/install.sh: missing packages (${missing[*]}) and not root; run as root or install them yourself" >&2
    exit 1
  fi
fi

echo "bench/celery/install.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
"$PYTHON" -c "import celery; assert celery.__version__.startswith('5.'), celery.__version__" ||
  { echo "bench/celery/install.sh: Debian's python3-celery is not Celery 5" >&2; exit 1; }
echo "bench/celery/install.sh: done" >&2

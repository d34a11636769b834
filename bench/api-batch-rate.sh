#!/usr/bin/env bash
# How fast the HTTP API accepts batches: POSTs ROUNDS batches of TASKS tasks to /tasks/batch and prints, for each,
# the time until the 202 (rows committed, messages confirmed by the broker, published_at stamped) and tasks/s.
#
#   make up && . .fleet/env && bench/api-batch-rate.sh [ROUNDS (5)] [TASKS (10000)] [TYPE (noop)]
#
# Needs FLEET_API_URL and FLEET_API_KEY (from .fleet/env), curl and awk. The key is sent, never printed.
set -euo pipefail
ROUNDS=${1:-5}
TASKS=${2:-10000}
TYPE=${3:-noop}
: "${FLEET_API_URL:?source .fleet/env first}" "${FLEET_API_KEY:?source .fleet/env first}"

body=$(mktemp)
trap 'rm -f "$body"' EXIT
# Task i gets seed i, so the payloads differ as they would in a real batch.
awk -v n="$TASKS" -v t="$TYPE" 'BEGIN {
  printf "{\"tasks\":["
  for (i = 0; i < n; i++) printf "%s{\"type\":\"%s\",\"payload\":{\"seed\":%d}}", (i ? "," : ""), t, i
  printf "]}"
}' >"$body"

printf 'POST %s/tasks/batch: %d rounds of %d %s tasks (%d KiB each)\n' "$FLEET_API_URL" "$ROUNDS" "$TASKS" "$TYPE" $(($(wc -c <"$body") / 1024))
results=$(
  for ((r = 1; r <= ROUNDS; r++)); do
    # The key goes through a header read from stdin, so it is not visible in the process list either.
    curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' -X POST "$FLEET_API_URL/tasks/batch" \
      -H @- -H 'Content-Type: application/json' --data-binary @"$body" <<<"Authorization: Bearer $FLEET_API_KEY"
  done
)
awk -v n="$TASKS" '{ if ($1 == 202) printf "round %d: %6.0f ms  %7.0f tasks/s\n", NR, $2 * 1000, n / $2; else printf "round %d: HTTP %s\n", NR, $1 }' <<<"$results"
rates=$(awk -v n="$TASKS" '$1 == 202 { printf "%.0f\n", n / $2 }' <<<"$results" | sort -n)
count=$(grep -c . <<<"$rates" || true)
((count > 0)) || { echo "no batch was accepted" >&2; exit 1; }
printf 'median: %s tasks/s accepted (%d of %d rounds answered 202)\n' "$(sed -n "$(((count + 1) / 2))p" <<<"$rates")" "$count" "$ROUNDS"
((count == ROUNDS))

#!/usr/bin/env bash
# Writes Fleet's RabbitMQ definitions (vhost fleet, the lanes' topology, one user per component with its rights:
# definitions.template.json next to this script) with each user's password hash, to OUTPUT (mode 600), for the
# node's load_definitions. infra/local/services.sh and docker-compose.yml's rabbitmq service both run it.
#   render-definitions.sh OUTPUT [TEMPLATE]
# Passwords from the environment (none may be empty): FLEET_AMQP_PASSWORD (fleet, the administrator),
# FLEET_AMQP_PRODUCER_PASSWORD (fleet_producer), FLEET_AMQP_API_PASSWORD (fleet_api), FLEET_AMQP_WORKER_PASSWORD
# (fleet_worker).
# FLEET_QUEUE_TYPE (quorum): the type of the lane queues the definitions declare, classic or quorum, as the
# components' RabbitMq__QueueType. Their arguments are QueueTopology's (Fleet.Client): none for classic,
# x-queue-type=quorum for quorum. A node ignores a definition for a queue that already exists, whatever its type:
# changing this setting never changes an existing queue (`fleet queues migrate` does, see docs/queues.md).
# FLEET_QUEUES (none): the worker groups' queues (docs/worker-groups.md), entries NAME=LANE separated by spaces
# and/or commas, e.g. "reports=cpu emails=io"; NAME as the API's Api:Queues takes it (^[a-z][a-z0-9-]{0,62}$, not
# a built-in queue), LANE cpu or io. Each NAME gets what a lane has: exchanges and queues NAME and NAME.dispatch
# (with the lanes' arguments) and their bindings; and every user's rights on fleet-cpu and fleet-io extend to it
# (the template's `fleet-(cpu|io)` becomes `(fleet-cpu|fleet-io|NAME...)`). The lane does not change the broker's
# side: it is checked here so that a typo fails at the broker too, not only at the API. Without FLEET_QUEUES the
# output is the template's, hashes and queue arguments apart.
set -euo pipefail
out=${1:?usage: render-definitions.sh OUTPUT [TEMPLATE]}
template=${2:-$(dirname "${BASH_SOURCE[0]}")/definitions.template.json}

hex_to_bytes() {
  local h=$1 i out=''
  for ((i = 0; i < ${#h}; i += 2)); do out+="\\x${h:i:2}"; done
  printf '%b' "$out"
}

# RabbitMQ's password hash (rabbit_password_hashing_sha256): base64(salt(4) || sha256(salt || password)).
hash_of() {
  local salt digest
  salt=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  digest=$({ hex_to_bytes "$salt"; printf '%s' "$1"; } | sha256sum | cut -c1-64)
  { hex_to_bytes "$salt"; hex_to_bytes "$digest"; } | base64 -w0
}

queue_type=${FLEET_QUEUE_TYPE:-quorum}
case ${queue_type,,} in
  classic) lane_arguments='{}' ;;
  quorum) lane_arguments='{ "x-queue-type": "quorum" }' ;;
  *) echo "render-definitions.sh: FLEET_QUEUE_TYPE must be classic or quorum, not '$queue_type'" >&2; exit 1 ;;
esac

# The worker groups' queues: names checked as the API checks them (dots and underscores are taken by the
# .dispatch, _error and _skipped queues), each at most once.
groups=()
queues=${FLEET_QUEUES-}
queues=${queues//[,$'\n']/ }
read -ra entries <<<"$queues" || true
for entry in ${entries[@]+"${entries[@]}"}; do
  name=${entry%%=*}
  [[ $entry == *=* ]] || { echo "render-definitions.sh: FLEET_QUEUES: '$entry' is not NAME=LANE (e.g. reports=cpu)" >&2; exit 1; }
  [[ $name =~ ^[a-z][a-z0-9-]{0,62}$ ]] ||
    { echo "render-definitions.sh: FLEET_QUEUES: '$entry': the name must match ^[a-z][a-z0-9-]{0,62}\$ (lower case, digits, '-')" >&2; exit 1; }
  [[ $name != @(fleet-cpu|fleet-io|fleet-control) ]] ||
    { echo "render-definitions.sh: FLEET_QUEUES: '$entry': $name is a built-in queue" >&2; exit 1; }
  [[ ${entry#*=} == @(cpu|io) ]] || { echo "render-definitions.sh: FLEET_QUEUES: '$entry': the lane must be cpu or io" >&2; exit 1; }
  [[ " ${groups[*]-} " != *" $name "* ]] || { echo "render-definitions.sh: FLEET_QUEUES: '$entry': $name is listed twice" >&2; exit 1; }
  groups+=("$name")
done

# Appends each group's entries, in the built-ins' form, to the end of the exchanges, queues and bindings lists (the
# line before a list's closing "  ]" is its last entry and gets the comma). With no group it copies the template.
add_groups() {
  awk -v names="${groups[*]-}" '
    function entries(list,    n, i, q, out, e) {
      n = split(names, q, " ")
      out = ""
      for (i = 1; i <= n; i++) {
        if (list == "exchanges") {
          e = sprintf("    { \"name\": \"%s\", \"vhost\": \"fleet\", \"type\": \"fanout\", \"durable\": true, \"auto_delete\": false, \"internal\": false, \"arguments\": {} },\n", q[i])
          e = e sprintf("    { \"name\": \"%s.dispatch\", \"vhost\": \"fleet\", \"type\": \"fanout\", \"durable\": true, \"auto_delete\": false, \"internal\": false, \"arguments\": {} }", q[i])
        } else if (list == "queues") {
          e = sprintf("    { \"name\": \"%s\", \"vhost\": \"fleet\", \"durable\": true, \"auto_delete\": false, \"arguments\": {} },\n", q[i])
          e = e sprintf("    { \"name\": \"%s.dispatch\", \"vhost\": \"fleet\", \"durable\": true, \"auto_delete\": false, \"arguments\": {} }", q[i])
        } else {
          e = sprintf("    { \"source\": \"%s\", \"vhost\": \"fleet\", \"destination\": \"%s\", \"destination_type\": \"queue\", \"routing_key\": \"\", \"arguments\": {} },\n", q[i], q[i])
          e = e sprintf("    { \"source\": \"%s.dispatch\", \"vhost\": \"fleet\", \"destination\": \"%s.dispatch\", \"destination_type\": \"queue\", \"routing_key\": \"\", \"arguments\": {} }", q[i], q[i])
        }
        out = out (i > 1 ? ",\n" : "") e
      }
      return out
    }
    /^  "[a-z]+": \[/ { list = $0; sub(/^  "/, "", list); sub(/".*/, "", list) }
    /^  \]/ && names != "" && (list == "exchanges" || list == "queues" || list == "bindings") && have {
      print held ","; have = 0; print entries(list)
    }
    { if (have) print held; held = $0; have = 1 }
    END { if (have) print held }
  ' "$template"
}

# Only the entries of the "queues" list take the type; exchanges and bindings keep their empty arguments.
args=(-e "/^  \"queues\": \[/,/^  \]/s|\"arguments\": {}|\"arguments\": $lane_arguments|")
if ((${#groups[@]})); then
  # Names are [a-z0-9-]: nothing in them is special to a regex or to sed.
  alternation="(fleet-cpu|fleet-io$(printf '|%s' "${groups[@]}"))"
  args+=(-e "/^  \"permissions\": \[/,/^  \]/s/fleet-(cpu|io)/$alternation/g")
fi
for pair in FLEET_HASH:FLEET_AMQP_PASSWORD FLEET_PRODUCER_HASH:FLEET_AMQP_PRODUCER_PASSWORD \
  FLEET_API_HASH:FLEET_AMQP_API_PASSWORD FLEET_WORKER_HASH:FLEET_AMQP_WORKER_PASSWORD; do
  var=${pair#*:}
  [[ -n ${!var-} ]] || { echo "render-definitions.sh: $var is not set" >&2; exit 1; }
  # base64 has no '|': a safe sed delimiter.
  args+=(-e "s|@${pair%%:*}@|$(hash_of "${!var}")|")
done
tmp=$(umask 077 && mktemp "$out.XXXXXX")
add_groups | sed "${args[@]}" >"$tmp" || { rm -f "$tmp"; exit 1; }
mv -f "$tmp" "$out"

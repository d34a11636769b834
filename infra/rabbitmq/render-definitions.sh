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

# Only the entries of the "queues" list take the type; exchanges and bindings keep their empty arguments.
args=(-e "/^  \"queues\": \[/,/^  \]/s|\"arguments\": {}|\"arguments\": $lane_arguments|")
for pair in FLEET_HASH:FLEET_AMQP_PASSWORD FLEET_PRODUCER_HASH:FLEET_AMQP_PRODUCER_PASSWORD \
  FLEET_API_HASH:FLEET_AMQP_API_PASSWORD FLEET_WORKER_HASH:FLEET_AMQP_WORKER_PASSWORD; do
  var=${pair#*:}
  [[ -n ${!var-} ]] || { echo "render-definitions.sh: $var is not set" >&2; exit 1; }
  # base64 has no '|': a safe sed delimiter.
  args+=(-e "s|@${pair%%:*}@|$(hash_of "${!var}")|")
done
tmp=$(umask 077 && mktemp "$out.XXXXXX")
sed "${args[@]}" "$template" >"$tmp"
mv -f "$tmp" "$out"

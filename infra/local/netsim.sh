#!/usr/bin/env bash
# Simulated servers on one Linux machine: each "host" is a network namespace with its own address, joined to the
# machine by a veth pair on a private bridge. The bridge holds the machine's address on that subnet, where
# PostgreSQL and RabbitMQ listen for the hosts. Nothing is routed further: no default route in the hosts, no
# forwarding, no NAT, so hosts reach only each other and the bridge address. Needs root and iproute2.
#
#   netsim.sh up HOSTS        create the bridge and HOSTS hosts; prints NETSIM_* settings (shell lines)
#   netsim.sh down            end every process inside this owner's hosts, then remove its hosts, veths and bridge
#   netsim.sh cut N           take host N's link down (its cable is pulled: packets are dropped, nothing is reset)
#   netsim.sh heal N          bring host N's link up again
#   netsim.sh rate N RATE     limit host N's link to RATE (tc tbf, e.g. 1mbit); netsim.sh delay N MS adds latency
#                             (tc netem, if the kernel has it); netsim.sh unshape N removes either
#   netsim.sh exec N CMD...   run CMD inside host N (ip netns exec)
#   netsim.sh watch           detached by `up`: waits for the owner process to end, then runs `down`
#   netsim.sh sweep           remove what owners that are gone left behind (any owner, not only this one)
#   netsim.sh status          this owner's hosts and links
#
# The owner is the process whose lifetime the network follows: NETSIM_OWNER (a pid; required except for sweep).
# Every name carries it: bridge flt<pid>b, host N = namespace flt<pid>h<N> with interface eth0, host-side veth
# flt<pid>v<N>. Subnet 10.231.X.0/24 with X the first one no address or route on this machine uses (or
# NETSIM_NET=X); bridge 10.231.X.1, host N 10.231.X.(10+N). State in /run/fleet-netsim/flt<pid>.env.
set -Eeuo pipefail

STATE_DIR=${NETSIM_STATE_DIR:-/run/fleet-netsim}
PREFIX_RE='^flt([0-9]+)[bhvp][0-9]*$'
SELF=$(readlink -f "${BASH_SOURCE[0]}")

SCRIPT=netsim
# shellcheck source=infra/local/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/errors.sh"

need_root() {
  ((EUID == 0)) || die "needs root (network namespaces, veth pairs and a bridge are created with ip)"
  command -v ip >/dev/null 2>&1 || die "ip (iproute2) not found: apt-get install iproute2"
}

owner() {
  [[ ${NETSIM_OWNER-} =~ ^[0-9]+$ ]] || die "set NETSIM_OWNER to the pid of the process that owns the network"
  P=flt$NETSIM_OWNER
  STATE=$STATE_DIR/$P.env
}

# Start time of a pid (field 22 of /proc/PID/stat), to tell an owner from a later process with the same pid.
start_time() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }

owner_alive() {
  local pid=$1 recorded
  kill -0 "$pid" 2>/dev/null || return 1
  recorded=$(sed -n 's/^NETSIM_OWNER_START=//p' "$STATE_DIR/flt$pid.env" 2>/dev/null || true)
  [[ -z $recorded || $recorded == "$(start_time "$pid")" ]]
}

all_namespaces() { ip netns list 2>/dev/null | awk '{ print $1 }'; }
all_links() { ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'; }
namespaces() { all_namespaces | grep -E "^$1h[0-9]+$" || true; }
# Owners with a state file; none when the state folder does not exist yet (no `up` since the machine booted).
state_owners() {
  [[ -d $STATE_DIR ]] || return 0
  find "$STATE_DIR" -maxdepth 1 -name 'flt*.env' -printf '%f\n' | sed 's/\.env$//'
}
links() { all_links | grep -E "^$1[bv][0-9]*$" || true; }

# Prints the free X of 10.231.X.0/24: no address of this machine in it and no route to it but the default one.
free_net() {
  local x
  if [[ -n ${NETSIM_NET-} ]]; then
    if ! [[ $NETSIM_NET =~ ^[0-9]+$ ]] || ((NETSIM_NET < 1 || NETSIM_NET > 254)); then die "NETSIM_NET must be 1 to 254"; fi
    set -- "$NETSIM_NET"
  else
    set -- $(seq 1 254)
  fi
  for x in "$@"; do
    ip -4 -o addr show | grep -qE " 10\.231\.$x\.[0-9]+/" && continue
    ip -4 route show to match "10.231.$x.1" | grep -qv '^default' && continue
    ip -4 route show to match "10.231.$x.254" | grep -qv '^default' && continue
    printf '%s' "$x"
    return 0
  done
  die "no free 10.231.X.0/24 subnet on this machine"
}

host_ns() {
  [[ $1 =~ ^[0-9]+$ ]] || die "host number expected, got '$1'"
  namespaces "$P" | grep -qx "${P}h$1" || die "no host $1 (namespace ${P}h$1)"
  printf '%s' "${P}h$1"
}

cmd_up() {
  local hosts=$1 x n ns veth peer
  if ! [[ $hosts =~ ^[0-9]+$ ]] || ((hosts < 1 || hosts > 200)); then die "HOSTS must be 1 to 200"; fi
  need_root
  owner
  [[ -e /proc/$NETSIM_OWNER ]] || die "owner pid $NETSIM_OWNER is not running"
  if [[ -n $(links "$P")$(namespaces "$P") || -e $STATE ]]; then die "owner $NETSIM_OWNER already has a network; run down first"; fi
  mkdir -p "$STATE_DIR"
  exec 8>"$STATE_DIR/.lock"
  flock -w 60 8 || die "another netsim.sh holds $STATE_DIR/.lock"
  x=$(free_net) || exit # free_net said why
  {
    printf 'NETSIM_OWNER=%s\nNETSIM_OWNER_START=%s\n' "$NETSIM_OWNER" "$(start_time "$NETSIM_OWNER")"
    printf 'NETSIM_PREFIX=%s\nNETSIM_SUBNET=10.231.%s.0/24\nNETSIM_BRIDGE_ADDR=10.231.%s.1\nNETSIM_HOSTS=%s\n' "$P" "$x" "$x" "$hosts"
  } >"$STATE"
  # From here on a failure removes what was made.
  trap 'on_error $? $LINENO "$BASH_COMMAND" "${PIPESTATUS[@]}"; cmd_down >/dev/null 2>&1 || true' ERR
  ip link add "${P}b" type bridge
  sysctl -qw "net.ipv6.conf.${P}b.disable_ipv6=1" 2>/dev/null || true
  ip addr add "10.231.$x.1/24" dev "${P}b"
  ip link set "${P}b" up
  for ((n = 1; n <= hosts; n++)); do
    ns=${P}h$n veth=${P}v$n peer=${P}p$n
    ip netns add "$ns"
    ip link add "$veth" type veth peer name "$peer"
    ip link set "$peer" netns "$ns"
    ip -n "$ns" link set "$peer" name eth0
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
    ip -n "$ns" addr add "10.231.$x.$((10 + n))/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip link set "$veth" master "${P}b"
    ip link set "$veth" up
    printf 'NETSIM_HOST_%s=%s 10.231.%s.%s %s\n' "$n" "$ns" "$x" "$((10 + n))" "$veth" >>"$STATE"
  done
  trap 'on_error $? $LINENO "$BASH_COMMAND" "${PIPESTATUS[@]}"' ERR
  # The safety net: a detached watcher removes everything once the owner is gone, however it ended.
  setsid "$SELF" watch </dev/null >/dev/null 2>&1 8>&- &
  cat "$STATE"
  log "up: $hosts host(s) on 10.231.$x.0/24 (bridge ${P}b 10.231.$x.1), owner $NETSIM_OWNER"
}

cmd_down() {
  need_root
  owner
  local ns pid pids link i
  for ns in $(namespaces "$P"); do
    # Only processes inside this owner's namespaces: they were started there by the owner's run.
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
      [[ -z $(ip netns pids "$ns" 2>/dev/null || true) ]] && break
      sleep 0.1
    done
    ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
  done
  for link in $(links "$P"); do ip link del "$link" 2>/dev/null || true; done
  rm -f "$STATE"
  log "down: owner $NETSIM_OWNER's hosts and links removed"
}

cmd_link() {
  need_root
  owner
  local ns
  ns=$(host_ns "$2") || exit # host_ns said why
  ip link set "${P}v$2" "$1"
  log "host $2 ($ns) link $1"
}

cmd_shape() {
  need_root
  owner
  host_ns "$2" >/dev/null
  local dev=${P}v$2
  case $1 in
    rate) tc qdisc replace dev "$dev" root tbf rate "$3" burst 32kbit latency 400ms ;;
    delay)
      tc qdisc replace dev "$dev" root netem delay "${3}ms" 2>/dev/null ||
        die "this kernel has no netem qdisc (sch_netem): use 'rate', or slow the host's workers (fewer CPU threads)"
      ;;
    unshape) tc qdisc del dev "$dev" root 2>/dev/null || true ;;
  esac
}

cmd_watch() {
  owner
  while owner_alive "$NETSIM_OWNER" && [[ -e $STATE ]]; do sleep 1; done
  [[ -e $STATE || -n $(links "$P")$(namespaces "$P") ]] && cmd_down
  return 0
}

cmd_sweep() {
  need_root
  local names pid
  names=$( { all_namespaces; all_links; state_owners; } | sed -nE "s/$PREFIX_RE/\1/p" | sort -u)
  for pid in $names; do
    owner_alive "$pid" && continue
    log "sweeping what owner $pid (gone) left behind"
    NETSIM_OWNER=$pid cmd_down
  done
}

cmd_status() {
  owner
  [[ -f $STATE ]] && cat "$STATE"
  local ns
  for ns in $(namespaces "$P"); do
    printf '%s: %s\n' "$ns" "$(ip -n "$ns" -4 -o addr show dev eth0 | awk '{ print $4, $9 }')"
  done
  ip -o link show | { grep -E ": ${P}[bv][0-9]*[@:]" || true; } | awk -F': ' '{ print $2, ($3 ~ /LOWER_UP/ ? "up" : "down") }'
}

case ${1:-} in
  up) cmd_up "${2:?HOSTS}" ;;
  down) cmd_down ;;
  cut) cmd_link down "${2:?N}" ;;
  heal) cmd_link up "${2:?N}" ;;
  rate) cmd_shape rate "${2:?N}" "${3:?RATE}" ;;
  delay) cmd_shape delay "${2:?N}" "${3:?MS}" ;;
  unshape) cmd_shape unshape "${2:?N}" ;;
  exec)
    need_root
    owner
    ns=$(host_ns "${2:?N}") || exit # host_ns said why
    shift 2
    exec ip netns exec "$ns" "$@"
    ;;
  watch) cmd_watch ;;
  sweep) cmd_sweep ;;
  status) cmd_status ;;
  *)
    sed -n '2,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac

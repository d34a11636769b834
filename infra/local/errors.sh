# Sourced by the infra/local scripts after `set -Eeuo pipefail`, with SCRIPT set to the name their lines start with:
#   SCRIPT=fleet; . "$(dirname "${BASH_SOURCE[0]}")/errors.sh"
# log and die write one line on stderr; a command that fails under set -e says which, and where, in one line
# (only the main shell speaks: a subshell's failure is reported by the line that ran it).
# shellcheck shell=bash

log() { printf '%s: %s\n' "$SCRIPT" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Arguments: $? $LINENO "$BASH_COMMAND" "${PIPESTATUS[@]}".
on_error() {
  local rc=$1 line=$2 cmd=$3
  shift 3
  ((BASH_SUBSHELL == 0)) || return 0
  log "error: $cmd failed (exit $rc$( (($# > 1)) && printf '; pipeline statuses %s' "$*")) at line $line"
}
trap 'on_error $? $LINENO "$BASH_COMMAND" "${PIPESTATUS[@]}"' ERR

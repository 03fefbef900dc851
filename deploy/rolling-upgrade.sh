#!/bin/bash
# Rolling upgrade of a troika cluster, one node at a time, leader last:
# drain the node (its addresses and leadership move, ringing calls settle,
# the process exits), install the new binary, start it, wait until it is
# ready (GET /readyz) and runs the new version, then the next node. Stops
# at the first step that fails, saying what to do; the nodes not reached
# yet keep running the old build (a mixed cluster is supported).
#
# usage: deploy/rolling-upgrade.sh NEW_BINARY ID=API_URL[@HOST] ...
#   e.g. deploy/rolling-upgrade.sh ./troika \
#          sip1=https://198.51.100.1:8443@sip1.example.net \
#          sip2=https://198.51.100.2:8443@sip2.example.net \
#          sip3=https://198.51.100.3:8443@sip3.example.net
#
# The troika CLI found first in PATH (or $TROIKA) talks to the nodes; give
# it an admin token as usual (TROIKA_TOKEN or TROIKA_TOKEN_FILE) and, for a
# private CA, TROIKA_CA_FILE. How a binary is installed and a node started
# is up to you; {id}, {host} and {binary} are replaced in:
#   INSTALL_CMD  default: scp {binary} {host}:/tmp/troika.new &&
#                         ssh {host} sudo install -m 0755 /tmp/troika.new /usr/local/bin/troika
#   START_CMD    default: ssh {host} sudo systemctl start troika
# Other settings: DRAIN_TIMEOUT (default 2m), READY_TIMEOUT (seconds,
# default 120).
set -euo pipefail

die() { echo "rolling-upgrade: $*" >&2; exit 1; }
say() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*"; }

[ $# -ge 2 ] || die "usage: $0 NEW_BINARY ID=API_URL[@HOST] ... (see the comment at the top)"
binary=$1; shift
[ -x "$binary" ] || die "$binary is not an executable file"
troika=${TROIKA:-troika}
command -v "$troika" >/dev/null || die "no troika CLI in PATH: set TROIKA=/path/to/troika"
install_cmd=${INSTALL_CMD:-'scp {binary} {host}:/tmp/troika.new && ssh {host} sudo install -m 0755 /tmp/troika.new /usr/local/bin/troika'}
start_cmd=${START_CMD:-'ssh {host} sudo systemctl start troika'}
drain_timeout=${DRAIN_TIMEOUT:-2m}
ready_timeout=${READY_TIMEOUT:-120}
new_version=$("$binary" --version | awk '{print $2}')
[ -n "$new_version" ] || die "$binary --version printed no version"

declare -A api host
ids=()
for spec in "$@"; do
  id=${spec%%=*} rest=${spec#*=}
  [ "$id" != "$spec" ] && [ -n "$id" ] || die "$spec: want ID=API_URL[@HOST]"
  api[$id]=${rest%@*}
  host[$id]=$id
  [[ $rest == *@* ]] && host[$id]=${rest##*@}
  ids+=("$id")
done

# status ID: the node's /v1/cluster as JSON (its errors on stderr).
status() { "$troika" --api "${api[$1]}" cluster status -o json; }
# field EXPR: EXPR of the JSON on stdin (d), or a failure.
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }

# The leader goes last: each leadership change is a short write pause.
leader=
for id in "${ids[@]}"; do
  if l=$(status "$id" | field 'd["cluster"]["leader_id"]'); then leader=$l; break; fi
done
[ -n "$leader" ] || die "no node answered with a leader: is the cluster up and are the API URLs and token right?"
order=()
for id in "${ids[@]}"; do [ "$id" != "$leader" ] && order+=("$id"); done
for id in "${ids[@]}"; do [ "$id" = "$leader" ] && order+=("$id"); done
say "upgrading ${#order[@]} nodes to $new_version, in this order: ${order[*]} (leader $leader last)"

expand() { # command template, id
  local c=$1
  c=${c//\{id\}/$2}; c=${c//\{host\}/${host[$2]}}; c=${c//\{binary\}/$binary}
  printf '%s' "$c"
}

# ready ID: /readyz answers 200 (the node has a leader, is caught up and
# holds what it is assigned).
ready() {
  local url=${api[$1]%/}/readyz args=(-fsS -o /dev/null --max-time 2)
  [ -n "${TROIKA_CA_FILE:-}" ] && args+=(--cacert "$TROIKA_CA_FILE")
  curl "${args[@]}" "$url"
}

# in_service ID: ID sees every node of the list alive and in service in
# gossip (a drain refuses to start otherwise).
in_service() {
  status "$1" 2>/dev/null | field "all(any(m['id'] == i and m['state'] == 'alive' and m['meta'].get('h') == 'ok' for m in d['members']) for i in '${ids[*]}'.split())" | grep -qx True
}

n=0
for id in "${order[@]}"; do
  n=$((n + 1))
  step="[$n/${#order[@]}] $id"
  if v=$(status "$id" | field 'd["version"]') && [ "$v" = "$new_version" ]; then
    say "$step: already runs $new_version, skipped"
    continue
  fi
  waited=0
  until in_service "$id"; do
    [ $waited -ge "$ready_timeout" ] &&
      die "$step: not every node is in service as $id sees it after ${ready_timeout}s: check \`troika --api ${api[$id]} cluster status\`"
    sleep 1
    waited=$((waited + 1))
  done
  say "$step: draining (its addresses and leadership move to the others)"
  "$troika" --api "${api[$id]}" drain --timeout "$drain_timeout" | sed "s/^/    /" ||
    die "$step: the drain failed (above): the node is back in service on its old build; fix what it says and run this again"
  say "$step: installing $binary"
  bash -c "$(expand "$install_cmd" "$id")" ||
    die "$step: installing failed; the node is stopped: install the binary by hand and start it (START_CMD), then run this again"
  say "$step: starting"
  bash -c "$(expand "$start_cmd" "$id")" ||
    die "$step: starting failed; the node is stopped: start it by hand, check its log, then run this again"
  waited=0
  until ready "$id" 2>/dev/null; do
    [ $waited -ge "$ready_timeout" ] &&
      die "$step: not ready after ${ready_timeout}s (GET ${api[$id]}/readyz): check its log and \`troika --api ${api[$id]} cluster status\`; the other nodes are untouched"
    [ $((waited % 5)) = 0 ] && [ $waited -gt 0 ] && say "$step: waiting for it to be ready (${waited}s)"
    sleep 1
    waited=$((waited + 1))
  done
  v=$(status "$id" | field 'd["version"]') || v=?
  [ "$v" = "$new_version" ] ||
    die "$step: ready, but runs version $v, not $new_version: did INSTALL_CMD put the binary where START_CMD runs it from?"
  say "$step: ready, runs $new_version"
done
say "done: every node runs $new_version"

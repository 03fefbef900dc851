#!/bin/bash
# The dispatch overhead: REGISTER/s with digest auth sent to ONE node's
# address of a three-node cluster of troika processes on loopback, with the
# dispatcher on (the node hands each datagram to the node its Call-ID
# hashes to, over the cluster link) and off (it processes everything
# itself); plus a single-node cluster for reference. Same SIPp sweep as
# bench/register.sh. Needs sipp (Debian sip-tester), curl, python3 and the
# shared SIPp scripts (../shared/bench, or SHARED_BENCH=dir).
#
# usage: bench/dispatch.sh [MODE...] [-- RATE...]
#   MODE: on off single (default: all three, in that order)
#   RATE: default 1000 1500 2000 2500 3000 3500 4000 5000
# Prints each sweep, the highest clean rate per mode, and how many
# REGISTERs each node processed (GET /metrics).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
shared=${SHARED_BENCH:-$top/../shared/bench}
ips=(127.0.0.51 127.0.0.52 127.0.0.53)
[ -x "$shared/sweep.sh" ] || { echo "no $shared/sweep.sh: set SHARED_BENCH to the shared bench directory" >&2; exit 2; }
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install -y sip-tester" >&2; exit 2; }

modes=() rates=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; rates=("$@"); break ;;
    *) modes+=("$1"); shift ;;
  esac
done
[ ${#modes[@]} -gt 0 ] || modes=(on off single)
[ ${#rates[@]} -gt 0 ] || rates=(1000 1500 2000 2500 3000 3500 4000 5000)

work=$(mktemp -d /tmp/troika-dispatch.XXXXXX)
pids=()
stop_nodes() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() { stop_nodes; rm -rf "$work"; }
trap cleanup EXIT

echo "== building troika"
(cd "$top" && go build -o "$work/troika" ./cmd/troika)
key=$(head -c 32 /dev/urandom | base64)
token=bench-dispatch-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
max=0
for r in "${rates[@]}"; do [ "$r" -gt "$max" ] && max=$r; done
accounts=$((max * 8))

# start_cluster MODE: three nodes (one for "single"), dispatch per MODE.
start_cluster() {
  local mode=$1 n=3 dispatch=true
  [ "$mode" = off ] && dispatch=false
  [ "$mode" = single ] && { n=1; dispatch=false; }
  bench_cluster_configs "$work/$mode" "$dispatch" "$key" "$token" "${ips[@]:0:n}"
  for i in $(seq 0 $((n - 1))); do
    local dir=$work/$mode/n$((i + 1))
    "$work/troika" agent --config "$dir/troika.toml" >"$dir/out" 2>"$dir/log" &
    pids+=($!)
  done
  export TROIKA_API=http://${ips[0]}:8080 TROIKA_TOKEN=$token
  for _ in $(seq 200); do
    if curl -sf -H "Authorization: Bearer $token" "$TROIKA_API/v1/cluster" 2>/dev/null | bench_cluster_ok "$n"; then
      sleep 1 # the processors list and the links settle
      return 0
    fi
    sleep 0.1
  done
  echo "the cluster did not come up:"; cat "$work/$mode"/n*/log; exit 1
}

load_accounts() {
  "$work/troika" tariff create --id demo --rate "prefix=1,per_minute=0.01" >/dev/null
  bench_accounts_csv "$accounts" demo "$work/accounts.csv"
  bench_users_csv "$accounts" "$work/users.csv"
  export USERS=$work/users.csv
  "$work/troika" account import --batch 5000 "$work/accounts.csv" 2>&1 | tail -1
}

registered() {
  local n=$1 out=""
  for i in $(seq 0 $((n - 1))); do
    out="$out n$((i + 1))=$(bench_registered "${ips[$i]}" ok)"
  done
  echo "registered:$out"
}

summary=()
for mode in "${modes[@]}"; do
  n=3
  [ "$mode" = single ] && n=1
  echo "== mode $mode: starting $n node(s)"
  start_cluster "$mode"
  load_accounts
  echo "== mode $mode: sweep, REGISTER with digest auth to ${ips[0]}:5060"
  "$shared/sweep.sh" reg "${ips[0]}:5060" "${rates[@]}" | tee "$work/sweep-$mode"
  registered "$n"
  summary+=("$mode $(tail -1 "$work/sweep-$mode")")
  stop_nodes
  sleep 1
done
echo "== summary"
printf '%s\n' "${summary[@]}"

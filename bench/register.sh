#!/bin/bash
# REGISTER/s with digest auth for a troika dev node, and its resident memory
# holding 100,000 bindings. Needs sipp (Debian sip-tester), python3 and the
# shared SIPp scripts (../shared/bench, or SHARED_BENCH=dir).
#
# usage: bench/register.sh [RATE...]      (default 1000 2000 3000 4000 5000 6000 8000 10000)
# Prints every sweep run, the highest clean rate, then memory figures.
# Compare with ../shared/bench/anchor.sh registrar run in the same session.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
shared=${SHARED_BENCH:-$top/../shared/bench}
ip=${BENCH_IP:-127.0.0.30}
bindings=${BENCH_BINDINGS:-100000}
[ -x "$shared/sweep.sh" ] || { echo "no $shared/sweep.sh: set SHARED_BENCH to the shared bench directory" >&2; exit 2; }
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install -y sip-tester" >&2; exit 2; }
work=$(mktemp -d /tmp/troika-bench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== building troika"
(cd "$top" && go build -o "$work/troika" ./cmd/troika)
bench_dev_up "$work/troika" "$work/node" "$ip" || { pid=$dev_pid; exit 1; }
pid=$dev_pid

[ $# -gt 0 ] || set -- 1000 2000 3000 4000 5000 6000 8000 10000
# Enough accounts for the highest rate (8 s per rate) and for the memory
# figure, and no more: they are part of the resident memory measured.
accounts=$bindings
for r in "$@"; do [ $((r * 8)) -gt "$accounts" ] && accounts=$((r * 8)); done
echo "== importing $accounts accounts u000000.. (password Bench.pass.NNNNNN)"
bench_accounts_csv "$accounts" demo "$work/accounts.csv"
bench_users_csv "$accounts" "$work/users.csv"
export USERS=$work/users.csv
"$work/troika" account import --batch 5000 "$work/accounts.csv" 2>&1 | tail -1

rss() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
heap() { curl -s "$TROIKA_API/metrics" | awk '/^go_memstats_heap_alloc_bytes/ {printf "%d", $2/1024}'; }

echo "== memory: $bindings bindings on a node with $accounts accounts"
sleep 2
base=$(rss); base_heap=$(heap)
"$shared/run_sipp.sh" reg "$ip:5060" 2000 "$bindings" >/dev/null
sleep 5
full=$(rss); full_heap=$(heap)
n=$(curl -s -H "Authorization: Bearer $TROIKA_TOKEN" "$TROIKA_API/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"]["fsm"]["Bindings"])' 2>/dev/null || echo "?")

echo "== sweep: REGISTER with digest auth (sipp reg scenario, 8 s per rate)"
"$shared/sweep.sh" reg "$ip:5060" "$@"

echo "== memory"
echo "accounts=$accounts bindings=$n rss_kib_before=$base rss_kib_after=$full heap_kib_before=$base_heap heap_kib_after=$full_heap"
python3 -c "b=$base; f=$full; n=$bindings; print('rss_total_per_binding_bytes=%.0f rss_delta_per_binding_bytes=%.0f' % (f*1024/n, (f-b)*1024/n))"

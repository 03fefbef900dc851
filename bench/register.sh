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
"$work/troika" dev --data "$work/data" --sip-address "$ip" --alias "" --admin "$ip:8080" >"$work/node.out" 2>"$work/node.log" &
pid=$!
for _ in $(seq 100); do grep -q "dev node is up" "$work/node.out" 2>/dev/null && break; sleep 0.1; done
grep -q "dev node is up" "$work/node.out" || { echo "the node did not start:"; cat "$work/node.log"; exit 1; }
export TROIKA_API=http://$ip:8080 TROIKA_TOKEN=$(cat "$work/data/dev-admin-token")

echo "== importing 200000 accounts u000000..u199999 (password pw + id)"
python3 -c '
for i in range(200000):
    u = "u%06d" % i
    print("%s,pw%s,prepaid,0,demo,demo" % (u, u))' >"$work/accounts.csv"
"$work/troika" account import --batch 5000 "$work/accounts.csv" 2>&1 | tail -1

rss() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
echo "== sweep: REGISTER with digest auth (sipp reg scenario, 8 s per rate)"
[ $# -gt 0 ] || set -- 1000 2000 3000 4000 5000 6000 8000 10000
"$shared/sweep.sh" reg "$ip:5060" "$@"

echo "== memory with $bindings bindings"
# Restart with the accounts only, so the figure is not inflated by the sweep.
kill "$pid"; wait "$pid" 2>/dev/null || true
"$work/troika" dev --data "$work/data" --sip-address "$ip" --alias "" --admin "$ip:8080" >"$work/node.out" 2>>"$work/node.log" &
pid=$!
for _ in $(seq 300); do grep -q "dev node is up" "$work/node.out" 2>/dev/null && break; sleep 0.1; done
sleep 2
base=$(rss)
"$shared/run_sipp.sh" reg "$ip:5060" 2000 "$bindings" >/dev/null
sleep 35 # sipgo keeps finished transactions for Timer J (32 s)
full=$(rss)
n=$(curl -s -H "Authorization: Bearer $TROIKA_TOKEN" "$TROIKA_API/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"]["fsm"]["Bindings"])' 2>/dev/null || echo "?")
echo "bindings=$n rss_accounts_only_kib=$base rss_with_bindings_kib=$full"
python3 -c "b=$base; f=$full; n=$bindings; print('rss_per_binding_bytes=%.0f (delta over accounts-only) rss_total_per_binding_bytes=%.0f' % ((f-b)*1024/n, f*1024/n))"

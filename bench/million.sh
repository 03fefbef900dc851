#!/bin/bash
# One troika dev node filled with N accounts and N bindings (bench/sipload
# registering them at RATE/s): what the fill achieved, RSS per binding
# counting the whole process, the GC percent the node ran at, its live
# heap (a heap profile, after a collection), and how long a restart takes
# until it holds every binding again. Environment variables given as
# arguments reach the node (GOGC=400 measures the runtime without the
# heap headroom of [runtime]).
#
# usage: bench/million.sh [N [RATE]] [VAR=VALUE...]   (1000000, 5000)
# Prints key=value lines; the heap profile is left in $BENCH_KEEP (or
# /tmp/troika-million-heap.pprof).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
n=1000000 rate=5000
[[ ${1:-} =~ ^[0-9]+$ ]] && { n=$1; shift; }
[[ ${1:-} =~ ^[0-9]+$ ]] && { rate=$1; shift; }
ip=127.0.0.80 local=127.0.0.81
keep=${BENCH_KEEP:-/tmp/troika-million-heap.pprof}
work=$(mktemp -d /tmp/troika-million.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
die() { echo "million: $*" >&2; exit 2; }

(cd "$top" && go build -o "$work/troika" ./cmd/troika && go build -o "$work/sipload" ./bench/sipload) || die "build failed"
# start: the node (again, on the same data), with the VAR=VALUE arguments
# in its environment.
start() {
  BENCH_NODE_ENV="$*" BENCH_UP_WAIT=120 bench_dev_up "$work/troika" "$work/node" $ip --sip-tls-port 0 --log-level warn ||
    die "the node did not start (is $ip:5060 or :8080 taken?)"
  pid=$dev_pid
}
rss() { bench_rss_kib "$pid"; }
counts() { curl -sf -H "Authorization: Bearer $TROIKA_TOKEN" "$TROIKA_API/v1/cluster" | bench_fsm_counts; }

start "$@"
bench_tariff "$work/troika" || die "no bench tariff"
bench_accounts_csv "$n" bench "$work/accounts.csv"
t0=$(date +%s.%N)
"$work/troika" account import --batch 5000 "$work/accounts.csv" >"$work/import.out" 2>&1 || { cat "$work/import.out" >&2; die "import failed"; }
echo "env=[$*] accounts=$n import_s=$(bench_since "$t0") rss_kib_accounts=$(rss)"
t0=$(date +%s.%N)
"$work/sipload" -target $ip:5060 -local $local -port 5100 -users "$n" -phases "$(((n + rate - 1) / rate))s@$rate" -drain 10s \
  >"$work/fill.out" 2>"$work/fill.err" || { cat "$work/fill.err" >&2; die "bench/sipload failed"; }
tail -1 "$work/fill.out"
echo "fill_s=$(bench_since "$t0")"
c=$(counts)
sleep 2
while [ "$(counts)" != "$c" ]; do c=$(counts); sleep 2; done # writes still landing
read -r nb _ <<<"$c"
r=$(rss)
gogc=$(curl -s "$TROIKA_API/metrics" | awk '$1 == "go_gc_gogc_percent" {print $2}')
echo "bindings=$nb rss_kib=$r bytes_per_binding=$((r * 1024 / (nb > 0 ? nb : 1))) gc_percent=$gogc raft_dir=$(du -sh "$work/node/data/raft" | cut -f1)"
curl -sf -H "Authorization: Bearer $TROIKA_TOKEN" "$TROIKA_API/debug/pprof/heap?gc=1" -o "$keep" &&
  echo "live heap (after a collection), in $keep:" &&
  go tool pprof -sample_index=inuse_space -top -nodecount=10 "$keep" 2>/dev/null | sed -n '/^Showing nodes/,$p'
kill "$pid"
wait "$pid" 2>/dev/null
t0=$(date +%s.%N)
start "$@"
for _ in $(seq 6000); do [ "$(counts)" = "$c" ] && break; sleep 0.1; done
echo "restart_s=$(bench_since "$t0") counts_after=[$(counts)] rss_kib_after_restart=$(rss)"

#!/bin/bash
# The benchmark in one command: builds troika (and bench/sipload), runs
# each Kamailio anchor (../shared/bench/anchor.sh) and the matching troika
# workload back to back with the same SIPp sweep (../shared/bench/sweep.sh),
# then troika's own figures, and prints one table; the same goes to
# bench/results/DATE.md with the machine, the command and the load
# average before each pair.
#
# usage: bench/run.sh
#
# Workloads (BENCH_ONLY="register dmq calls calls3 p99 overload memory" for a
# subset, in that order):
#   register  REGISTER with digest, one troika dev node   vs anchor.sh registrar
#   dmq       three troika nodes on loopback, REGISTERs to one node's address,
#             dispatched, each binding committed by raft   vs anchor.sh dmq
#   calls     billed calls (INVITE-407-INVITE-200-ACK-BYE), one dev node
#             vs anchor.sh proxy and anchor.sh prepaid (both ratios)
#   calls3    the same through three nodes: the ratio to one node
#   p99       REGISTER response times at 80% of troika's clean rate
#             (bench/sipload, 20 s)
#   overload  80% of the clean rate, then twice it, then 80% again, 8 s
#             each: what is answered 503, the p99 of what is accepted, and
#             whether it recovers
#   profile   (only when named) where the CPU goes: a 20 s CPU profile of
#             each troika workload at a fixed rate (PROFILE_REG_RATE,
#             PROFILE_DMQ_RATE, PROFILE_CALL_RATE; for three nodes, of n1
#             and of the raft leader), its top functions in the results and
#             the .pprof files beside them (bench/results/DATE-profiles/)
#   memory    three nodes holding BENCH_BINDINGS accounts and bindings: RSS
#             per binding, a node restart (restore) and a new node catching
#             up from nothing, the fsm snapshot written and restored at that
#             size (go test ./fsm -bench Snapshot); then the registration
#             storm: the cluster restarted, BENCH_STORM phones registering at
#             once, retrying like phones
#
# Environment:
#   BENCH_LOAD_MAX   highest 1-minute load average to measure at (1.0)
#   BENCH_SETTLE     seconds to wait before each pair for the load to fall
#                    under it (240); a pair that still starts above it is
#                    flagged "busy, not counted"
#   BENCH_FORCE=1    run even when the machine is busy at the start
#                    (otherwise refuse)
#   BENCH_BINDINGS   bindings for the memory figures (100000; 1000000 is
#                    the target's size)
#   BENCH_STORM      phones in the storm (100000; 0: no storm)
#   BENCH_STORM_SPREAD  the storm's first REGISTERs spread over (10s)
#   REG_RATES, DMQ_RATES, CALL_RATES  the sweeps' rates
#   TROIKA_BIN       a troika binary to measure instead of building one
#   BENCH_OUT        results file (bench/results/DATE.md; -2, -3.. if taken)
#   SHARED_BENCH     the shared bench directory (../shared/bench)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_BENCH:-$top/../shared/bench}
if [ -z "${SHARED_BENCH:-}" ] && [ ! -d "$shared" ]; then
  # A git worktree elsewhere: beside the main checkout.
  main=$(dirname "$(git -C "$top" rev-parse --path-format=absolute --git-common-dir 2>/dev/null)")
  shared=$main/../shared/bench
fi
load_max=${BENCH_LOAD_MAX:-1.0}
settle=${BENCH_SETTLE:-240}
bindings=${BENCH_BINDINGS:-100000}
storm=${BENCH_STORM:-100000}
storm_spread=${BENCH_STORM_SPREAD:-10s}
only=${BENCH_ONLY:-register dmq calls calls3 p99 overload memory}
reg_rates=(${REG_RATES:-2000 4000 6000 8000 10000 12000 14000 16000})
dmq_rates=(${DMQ_RATES:-1000 2000 3000 4000 5000 6000 7000 8000})
call_rates=(${CALL_RATES:-500 1000 1500 2000 2500 3000 4000 5000})
cmdline="bench/run.sh"
for v in BENCH_ONLY BENCH_LOAD_MAX BENCH_BINDINGS BENCH_STORM REG_RATES DMQ_RATES CALL_RATES PROFILE_REG_RATE PROFILE_DMQ_RATE PROFILE_CALL_RATE TROIKA_BIN; do
  [ -n "${!v:-}" ] && cmdline="$v=\"${!v}\" $cmdline"
done

. "$top/bench/lib.sh"
die() { echo "bench: $*" >&2; exit 2; }
[ -x "$shared/anchor.sh" ] || die "no $shared/anchor.sh: set SHARED_BENCH to the shared bench directory"
for c in sipp kamailio python3 curl; do command -v $c >/dev/null || die "$c is missing (apt-get install -y sip-tester kamailio python3 curl)"; done
want() { [[ " $only " == *" $1 "* ]]; }

work=$(mktemp -d /tmp/troika-run.XXXXXX)
pids=() # troika nodes and SIPp callees started here
stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

loadavg() { cut -d' ' -f1 /proc/loadavg; }
above() { python3 -c "import sys; sys.exit(0 if float('$1') > float('$2') else 1)"; }

# settle NAME: waits up to $settle s for the load average to fall under
# $load_max; sets pair_load and pair_busy ("" or " (busy)").
declare -A pair_load pair_flag
settle() {
  local name=$1 waited=0 l
  l=$(loadavg)
  while above "$l" "$load_max" && [ $waited -lt "$settle" ]; do
    sleep 10
    waited=$((waited + 10))
    l=$(loadavg)
  done
  pair_load[$name]=$l
  pair_flag[$name]=""
  if above "$l" "$load_max"; then
    pair_flag[$name]=" (busy: load $l, not counted)"
  fi
  echo "== $name: load average $l before the pair${pair_flag[$name]}"
}

start_load=$(loadavg)
if above "$start_load" "$load_max"; then
  if [ "${BENCH_FORCE:-}" != 1 ]; then
    echo "bench: the machine is busy (1-minute load average $start_load > $load_max): not measuring." >&2
    echo "bench: wait for it to be quiet, or BENCH_FORCE=1 to run anyway (busy pairs are flagged)." >&2
    uptime >&2
    exit 3
  fi
  echo "== the machine is busy (load $start_load); BENCH_FORCE=1: running, pairs started above $load_max are flagged"
fi

echo "== building troika and bench/sipload"
if [ -n "${TROIKA_BIN:-}" ]; then
  cp "$TROIKA_BIN" "$work/troika" || die "TROIKA_BIN=$TROIKA_BIN"
  rev="binary $TROIKA_BIN"
else
  (cd "$top" && go build -o "$work/troika" ./cmd/troika) || die "build failed"
  rev=$(cd "$top" && git rev-parse --short HEAD 2>/dev/null)$(cd "$top" && git diff --quiet HEAD 2>/dev/null || echo "+changes")
fi
(cd "$top" && go build -o "$work/sipload" ./bench/sipload) || die "build of bench/sipload failed"
troika=$work/troika sipload=$work/sipload

# ---- nodes ---------------------------------------------------------------

# dev_up IP: a troika dev node on IP (SIP 5060, admin 8080), keepalive off.
dev_up() {
  rm -rf "$work/dev-$1"
  bench_dev_up "$troika" "$work/dev-$1" "$1" --sip-tls-port 0 --log-level warn
  local up=$?
  pids+=("$dev_pid")
  [ $up = 0 ] || die "no dev node"
}

key=$(head -c 32 /dev/urandom | base64)
token=bench-run-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
cips=(127.0.0.51 127.0.0.52 127.0.0.53)
declare -A node_pid

# node_start I: starts node n(I+1) of the three-node cluster (config made
# by cluster_up).
node_start() {
  local i=$1 dir=$work/cluster/n$(($1 + 1))
  "$troika" agent --config "$dir/troika.toml" >>"$dir/out" 2>>"$dir/log" &
  node_pid[$i]=$!
  pids+=($!)
}

# node_stop I: SIGTERM, and wait for it to end.
node_stop() {
  local p=${node_pid[$1]}
  kill "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}

# cluster_status I: the node's GET /v1/cluster as JSON ("" if it does not answer).
cluster_status() { curl -sf -m 2 -H "Authorization: Bearer $token" "http://${cips[$1]}:8080/v1/cluster" 2>/dev/null; }

# cluster_ready N: waits until node 0 sees a leader and N healthy members.
cluster_ready() {
  local n=$1
  for _ in $(seq 600); do
    if cluster_status 0 | bench_cluster_ok "$n"; then
      sleep 1 # the processors list and the links settle
      return 0
    fi
    sleep 0.1
  done
  cat "$work"/cluster/n*/log >&2
  die "the cluster did not come up"
}

# cluster_up N: N nodes (1 or 3) on 127.0.0.51-53, dispatcher on, fresh data.
cluster_up() {
  local n=$1 i
  rm -rf "$work/cluster"
  bench_cluster_configs "$work/cluster" true "$key" "$token" "${cips[@]:0:n}"
  for i in $(seq 0 $((n - 1))); do node_start "$i"; done
  export TROIKA_API=http://${cips[0]}:8080 TROIKA_TOKEN=$token
  cluster_ready "$n"
}

# accounts N: imports accounts u000000.. (password
# Bench.pass.NNNNNN) and writes SIPp's injection file $work/users.csv.
accounts() {
  local n=$1
  bench_tariff "$troika" || die "no bench tariff"
  bench_accounts_csv "$n" bench "$work/accounts.csv"
  bench_users_csv "$n" "$work/users.csv"
  "$troika" account import --batch 5000 "$work/accounts.csv" >"$work/import.out" 2>&1 || { cat "$work/import.out" >&2; die "account import failed"; }
}

max_of() { local m=0 r; for r in "$@"; do [ "$r" -gt "$m" ] && m=$r; done; echo "$m"; }

# sweep NAME KIND TARGET RATE...: the shared sweep; prints it to the log,
# sets clean[NAME] and the sweep's lines in sweeps[NAME].
declare -A clean sweeps
sweep() {
  local name=$1 kind=$2 target=$3; shift 3
  "$shared/sweep.sh" "$kind" "$target" "$@" | tee "$work/sweep-$name"
  clean[$name]=$(sed -n 's/^clean_rate=//p' "$work/sweep-$name" | tail -1)
  sweeps[$name]=$(cat "$work/sweep-$name")
}

# anchor NAME MODE RATE...: one Kamailio anchor, swept.
anchor() {
  local name=$1 mode=$2; shift 2
  "$shared/anchor.sh" "$mode" "$@" 2>&1 | tee "$work/sweep-$name"
  clean[$name]=$(sed -n 's/^clean_rate=//p' "$work/sweep-$name" | tail -1)
  sweeps[$name]=$(cat "$work/sweep-$name")
}

# reg_sweep NAME LOCAL_IP TARGET RATE...: accounts for 8 s at the highest
# RATE, then the REGISTER sweep from LOCAL_IP to TARGET.
reg_sweep() {
  local name=$1 local_ip=$2 target=$3; shift 3
  accounts $(($(max_of "$@") * 8))
  USERS=$work/users.csv LOCAL_IP=$local_ip sweep "$name" reg "$target" "$@"
}

# ---- the pairs -------------------------------------------------------------

if want register; then
  settle register
  anchor registrar registrar "${reg_rates[@]}"
  echo "== troika: REGISTER with digest, one dev node"
  dev_up 127.0.0.30
  reg_sweep troika-register 127.0.0.38 127.0.0.30:5060 "${reg_rates[@]}"
  stop_all
fi

if want dmq; then
  settle dmq
  anchor dmq dmq "${dmq_rates[@]}"
  echo "== troika: three nodes, REGISTERs to n1, dispatched"
  cluster_up 3
  reg_sweep troika-dmq 127.0.0.58 127.0.0.51:5060 "${dmq_rates[@]}"
  processed=""
  for i in 0 1 2; do
    processed="$processed n$((i + 1))=$(bench_registered "${cips[$i]}" ok)"
  done
  echo "REGISTERs answered 200 per node:$processed"
  stop_all
fi

# calls_sweep NAME IP UAS_IP LOCAL_IP: the caller and callee accounts on
# the node at TROIKA_API, a SIPp callee registered as "callee" from
# UAS_IP:5080 and answering, then the billed-calls sweep from LOCAL_IP to
# IP:5060.
calls_sweep() {
  local name=$1 ip=$2 uas_ip=$3 local_ip=$4
  bench_tariff "$troika" || die "no bench tariff"
  bench_callee_up "$troika" "$shared" "$work" "$ip" "$uas_ip" 5080 bench || die "no SIPp callee"
  pids+=("$uas_pid")
  AUTH_USER=caller AUTH_PASS=$caller_pw CALLEE=callee LOCAL_IP=$local_ip \
    sweep "$name" calls-auth "$ip:5060" "${call_rates[@]}"
}

if want calls; then
  settle calls
  anchor proxy proxy "${call_rates[@]}"
  if [ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/cnxcc.so ] && command -v redis-server >/dev/null; then
    anchor prepaid prepaid "${call_rates[@]}"
  else
    clean[prepaid]="not run"
    sweeps[prepaid]="needs apt-get install -y kamailio-cnxcc-modules redis-server"
  fi
  echo "== troika: billed calls, one dev node"
  dev_up 127.0.0.31
  calls_sweep troika-calls 127.0.0.31 127.0.0.32 127.0.0.33
  stop_all
fi

if want calls3; then
  settle calls3
  echo "== troika: billed calls through three nodes"
  cluster_up 3
  calls_sweep troika-calls3 127.0.0.51 127.0.0.54 127.0.0.55
  stop_all
fi

# The rate p99 and overload are measured at: 80% of troika's clean
# REGISTER rate of this run (or P99_RATE).
base_rate=${P99_RATE:-$(( ${clean[troika-register]:-0} * 8 / 10 ))}
[ "$base_rate" -gt 0 ] || base_rate=2000

if want p99; then
  settle p99
  echo "== troika: REGISTER response times at $base_rate/s (sipload, 20 s)"
  dev_up 127.0.0.34
  accounts 200000
  "$sipload" -target 127.0.0.34:5060 -local 127.0.0.39 -port 5100 -users 200000 -phases "20s@$base_rate" | tee "$work/p99.out"
  stop_all
fi

if want overload; then
  settle overload
  echo "== troika: overload, $base_rate/s then $((base_rate * 25 / 10))/s then $base_rate/s (sipload, 8 s each)"
  dev_up 127.0.0.35
  accounts 200000
  "$sipload" -target 127.0.0.35:5060 -local 127.0.0.39 -port 5100 -users 200000 \
    -phases "8s@$base_rate,8s@$((base_rate * 25 / 10)),8s@$base_rate" | tee "$work/overload.out"
  stop_all
fi

# cpu_profile NAME IP: a 20 s CPU profile of the node with its admin API on
# IP:8080, into $work/profile-NAME.pprof, in the background (its pid added
# to busy: wait_busy waits for those).
cpu_profile() {
  curl -sf -m 60 -H "Authorization: Bearer $TROIKA_TOKEN" "http://$2:8080/debug/pprof/profile?seconds=20" -o "$work/profile-$1.pprof" &
  busy+=($!) pids+=($!)
}
wait_busy() { wait "${busy[@]}"; busy=(); }
# (what is in busy is in pids too: the EXIT trap stops it on a die)
busy=()
profiles=()
if want profile; then
  settle profile
  echo "== troika: CPU profiles under load"
  p_reg=${PROFILE_REG_RATE:-6000} p_dmq=${PROFILE_DMQ_RATE:-3000} p_call=${PROFILE_CALL_RATE:-1500}
  dev_up 127.0.0.36
  accounts 200000
  "$sipload" -target 127.0.0.36:5060 -local 127.0.0.39 -port 5100 -users 200000 -phases "30s@$p_reg" >"$work/profile-register.out" 2>&1 &
  busy+=($!) pids+=($!)
  sleep 5
  cpu_profile register 127.0.0.36
  wait_busy
  profiles+=("register: REGISTER with digest, one dev node, $p_reg/s")
  stop_all
  dev_up 127.0.0.31
  bench_tariff "$troika" || die "no bench tariff"
  bench_callee_up "$troika" "$shared" "$work" 127.0.0.31 127.0.0.32 5080 bench || die "no SIPp callee"
  pids+=("$uas_pid")
  AUTH_USER=caller AUTH_PASS=$caller_pw CALLEE=callee LOCAL_IP=127.0.0.33 \
    "$shared/run_sipp.sh" calls-auth 127.0.0.31:5060 "$p_call" $((p_call * 30)) >"$work/profile-calls.out" 2>&1 &
  busy+=($!) pids+=($!)
  sleep 5
  cpu_profile calls 127.0.0.31
  wait_busy
  profiles+=("calls: billed calls, one dev node, $p_call/s")
  stop_all
  cluster_up 3
  accounts 200000
  leader=$(cluster_status 0 | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"]["leader_id"])' 2>/dev/null)
  [ -n "$leader" ] || die "the cluster named no leader"
  "$sipload" -target 127.0.0.51:5060 -local 127.0.0.58 -port 5100 -users 200000 -phases "30s@$p_dmq" >"$work/profile-dmq.out" 2>&1 &
  busy+=($!) pids+=($!)
  sleep 5
  cpu_profile dmq-n1 127.0.0.51
  [ "$leader" = n1 ] || cpu_profile "dmq-$leader" "${cips[${leader#n} - 1]}"
  wait_busy
  profiles+=("dmq-n1: three nodes, REGISTERs to n1 (the leader is $leader), $p_dmq/s")
  [ "$leader" = n1 ] || profiles+=("dmq-$leader: the same, the leader")
  stop_all
fi

if want memory; then
  settle memory
  n=$(max_of "$bindings" "$storm")
  echo "== troika: three nodes, $n accounts, $bindings bindings"
  cluster_up 3
  t0=$(date +%s.%N)
  accounts "$n"
  import_s=$(bench_since "$t0")
  rss0=$(bench_rss_kib "${node_pid[0]}")
  t0=$(date +%s.%N)
  "$sipload" -target 127.0.0.51:5060 -local 127.0.0.59 -port 5100 -users "$bindings" \
    -phases "$((bindings / 2000 + 1))s@2000" >"$work/fill.out" 2>&1
  fill_s=$(bench_since "$t0")
  sleep 10
  count_of() { cluster_status "$1" | bench_fsm_counts; }
  # caught_up I R T0: the seconds from T0 until node I holds the bindings
  # and accounts node R holds (what is still being written counts too);
  # nothing if it does not within 10 minutes.
  caught_up() {
    local c
    for _ in $(seq 6000); do
      c=$(count_of "$1")
      [ -n "$c" ] && [ "$c" = "$(count_of "$2")" ] && { bench_since "$3"; return; }
      sleep 0.1
    done
  }
  read -r nb na <<<"$(count_of 0)"
  mem="accounts=$na bindings=$nb import_s=$import_s fill_s=$fill_s rss_kib_before_bindings_n1=$rss0"
  for i in 0 1 2; do mem="$mem rss_kib_n$((i + 1))=$(bench_rss_kib "${node_pid[$i]}")"; done
  echo "$mem"
  # The live heap of n1 after a collection: what the memory is.
  curl -sf -m 60 -H "Authorization: Bearer $token" "http://${cips[0]}:8080/debug/pprof/heap?gc=1" -o "$work/heap-n1.pprof"
  # A new node catching up from nothing: n3 wiped and started again.
  node_stop 2
  rm -rf "$work/cluster/n3/data"
  t0=$(date +%s.%N)
  node_start 2
  caught=$(caught_up 2 0 "$t0")
  # A node restarting from its own data (snapshot restore and log replay).
  node_stop 0
  t0=$(date +%s.%N)
  node_start 0
  restored=$(caught_up 0 1 "$t0")
  mem="$mem catch_up_s=${caught:-never} restart_s=${restored:-never}"
  echo "$mem"
  echo "== fsm snapshot write and restore at $bindings accounts and bindings"
  (cd "$top" && BENCH_SNAPSHOT_SIZE=$bindings go test ./fsm -run '^$' -bench '^BenchmarkSnapshot$' -benchtime 1x) | tee "$work/snapshot.out"
  if [ "$storm" -gt 0 ]; then
    echo "== registration storm: the cluster restarted, $storm phones"
    cluster_ready 3
    for i in 0 1 2; do node_stop $i; done
    for i in 0 1 2; do node_start $i; done
    cluster_ready 3
    "$sipload" -mode storm -target 127.0.0.51:5060 -local 127.0.0.60 -port 5100 -phones "$storm" -spread "$storm_spread" | tee "$work/storm.out"
    storm_shed=""
    for i in 0 1 2; do
      storm_shed="$storm_shed n$((i + 1))=$(bench_registered "${cips[$i]}" overloaded)+$(bench_registered "${cips[$i]}" unavailable)"
    done
  fi
  stop_all
fi

# ---- the report ------------------------------------------------------------

ratio() { # A B: A/B to two decimals, or "-"
  python3 -c "
try: print('%.2f' % (float('$1') / float('$2')))
except Exception: print('-')"
}
row() { # WORKLOAD ANCHOR_NAME ANCHOR TROIKA_NAME PAIR
  local a=${clean[$2]:-} t=${clean[$4]:-}
  [ -n "$t" ] || return 0
  echo "| $1 | ${a:--} | $t | $(ratio "$t" "$a")${pair_flag[$5]:-} | ${pair_load[$5]:-} |"
}
field() { sed -n "s/.*[ ^]$2=\([^ ]*\).*/\1/p" <<<" $1" | head -1; }

date=$(date +%F)
out=${BENCH_OUT:-$top/bench/results/$date.md}
if [ -z "${BENCH_OUT:-}" ]; then
  k=2
  while [ -e "$out" ]; do out=$top/bench/results/$date-$k.md; k=$((k + 1)); done
fi
profdir=${out%.md}-profiles
if [ ${#profiles[@]} -gt 0 ] || [ -s "$work/heap-n1.pprof" ]; then
  mkdir -p "$profdir"
  cp "$work"/profile-*.pprof "$work"/heap-n1.pprof "$profdir"/ 2>/dev/null
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
  echo "# Benchmarks, $(date '+%F %H:%M %Z'): troika $rev"
  echo
  echo "Command: \`$cmdline\`"
  echo
  echo "Machine: $(nproc) cores, $cpu, Linux $(uname -r), $(go version | cut -d' ' -f3); SIPp, Kamailio and troika on the same host."
  echo "Load average at the start: $start_load; threshold $load_max (a pair started above it is flagged and does not count)."
  echo
  echo "Clean rate: the highest rate of the sweep with no failure, >= 97% of the offered rate achieved and retransmissions under 2% (../shared/bench/sweep.sh, 8 s per rate); anchor and troika measured back to back by this command."
  echo
  echo "| workload | anchor (clean rate) | troika (clean rate) | ratio | load avg before the pair |"
  echo "| --- | --- | --- | --- | --- |"
  row "REGISTER with digest, one node (anchor: Kamailio registrar)" registrar "" troika-register register
  row "REGISTER, three nodes, to one node's address, dispatched (anchor: Kamailio x3, DMQ)" dmq "" troika-dmq dmq
  row "billed calls, one node (anchor: Kamailio stateful proxy, no auth, no billing)" proxy "" troika-calls calls
  row "billed calls, one node (anchor: Kamailio prepaid: auth, dialog, cnxcc, acc)" prepaid "" troika-calls calls
  if [ -n "${clean[troika-calls3]:-}" ]; then
    echo "| billed calls, three nodes (compared with troika, one node) | ${clean[troika-calls]:--} | ${clean[troika-calls3]} | $(ratio "${clean[troika-calls3]}" "${clean[troika-calls]:-}")${pair_flag[calls3]:-} | ${pair_load[calls3]:-} |"
  fi
  echo
  if [ -s "$work/p99.out" ]; then
    l=$(cat "$work/p99.out")
    echo "p99 REGISTER response time at $base_rate/s (80% of the clean rate), 20 s, bench/sipload${pair_flag[p99]:-}: answered 200 p50 $(field "$l" p50_ms) ms, p99 $(field "$l" p99_ms) ms, max $(field "$l" max_ms) ms; the 401 challenges p99 $(field "$l" challenge_p99_ms) ms; a whole registration (two round trips) p99 $(field "$l" register_p99_ms) ms; ok $(field "$l" ok)/$(field "$l" started), 503 $(field "$l" s503), timeouts $(field "$l" timeouts). Load before: ${pair_load[p99]:-}."
    echo
  fi
  if [ -s "$work/overload.out" ]; then
    echo "Overload (bench/sipload, 8 s per phase, each phone one registration, no retry)${pair_flag[overload]:-}; load before: ${pair_load[overload]:-}:"
    echo
    echo "| phase | offered/s | answered 200/s | 503 | timeouts | p99 of the 200s (ms) | p99 of the 503s (ms) | retransmissions |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    while read -r l; do
      echo "| $(field "$l" phase) | $(field "$l" offered) | $(field "$l" rate) | $(field "$l" s503) | $(field "$l" timeouts) | $(field "$l" p99_ms) | $(field "$l" shed_p99_ms) | $(field "$l" retrans) |"
    done <"$work/overload.out"
    echo
  fi
  if [ -n "${mem:-}" ]; then
    nb=$(field "$mem" bindings)
    echo "Memory, three nodes${pair_flag[memory]:-} (load before: ${pair_load[memory]:-}): $(field "$mem" accounts) accounts and $nb bindings (registered through n1 at 2,000/s by bench/sipload in $(field "$mem" fill_s) s):"
    echo
    for i in 1 2 3; do
      r=$(field "$mem" rss_kib_n$i)
      echo "- n$i RSS $r KiB: $(python3 -c "print('%.0f' % ($r * 1024 / max($nb, 1)))") B per binding counting the whole process"
    done
    echo "- a new node (n3 wiped) caught up from nothing in $(field "$mem" catch_up_s) s; n1 restarted (snapshot restore and log replay) and held every binding again after $(field "$mem" restart_s) s"
    sn=$(grep '^BenchmarkSnapshot' "$work/snapshot.out" 2>/dev/null | sed 's/.*ns\/op//' | tr -s ' \t' ' ')
    [ -n "$sn" ] && echo "- fsm snapshot at this size, written to a file (fsync'd) and restored from it (go test ./fsm -bench Snapshot):$sn"
    echo
  fi
  if [ -s "$work/storm.out" ]; then
    l=$(cat "$work/storm.out")
    echo "Registration storm: the three nodes restarted, then $(field "$l" phones) phones (first REGISTERs spread over $(field "$l" spread_s) s, RFC 3261 retransmissions, then RFC 5626 back-off or Retry-After): $(field "$l" registered) held a binding after $(field "$l" time_all_s) s, $(field "$l" given_up) had given up (no binding by sipload's deadline, 15 min); 503 answers $(field "$l" s503) (per node, shed as overloaded + refused for want of the cluster:${storm_shed:-}), transaction timeouts $(field "$l" timeouts), back-offs $(field "$l" backoffs), most attempts by one phone $(field "$l" max_attempts), retransmissions $(field "$l" retrans)."
    echo
  fi
  if [ ${#profiles[@]} -gt 0 ]; then
    echo "CPU profiles${pair_flag[profile]:-} (load before: ${pair_load[profile]:-}), 20 s each under a steady load; the files are in $(basename "$profdir")/ (\`go tool pprof -top troika FILE\`):"
    echo
    for p in "${profiles[@]}"; do
      name=${p%%:*}
      echo "- $p; what the load generator saw: $(tail -1 "$work/profile-${name%%-*}.out" 2>/dev/null | cut -c1-200)"
      echo
      echo '```'
      go tool pprof -top -nodecount=12 "$work/troika" "$work/profile-$name.pprof" 2>/dev/null | sed -n '/^Showing nodes/,$p'
      echo '```'
    done
    echo
  fi
  if [ -s "$work/heap-n1.pprof" ]; then
    echo "Live heap of n1 after the fill (after a collection; \`go tool pprof -sample_index=inuse_space -top\`):"
    echo
    echo '```'
    go tool pprof -sample_index=inuse_space -top -nodecount=12 "$work/troika" "$work/heap-n1.pprof" 2>/dev/null | sed -n '/^Showing nodes/,$p'
    echo '```'
    echo
  fi
  echo "<details><summary>Sweeps and raw lines</summary>"
  echo
  echo '```'
  for k in registrar troika-register dmq troika-dmq proxy prepaid troika-calls troika-calls3; do
    [ -n "${sweeps[$k]:-}" ] || continue
    echo "-- $k"
    echo "${sweeps[$k]}"
  done
  for f in p99 overload storm snapshot; do [ -s "$work/$f.out" ] && { echo "-- $f"; cat "$work/$f.out"; }; done
  [ -n "${mem:-}" ] && { echo "-- memory"; echo "$mem"; }
  [ -n "${processed:-}" ] && echo "-- dmq: REGISTERs answered 200 per node:$processed"
  echo '```'
  echo "</details>"
} >"$out"
echo
cat "$out"
echo
echo "written to $out"

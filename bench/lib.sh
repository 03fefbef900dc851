#!/bin/bash
# What the bench scripts share (source it): troika nodes on loopback, the
# bench accounts and SIPp's users for them, the SIPp callee of the call
# benchmarks. Functions return non-zero, having said why on stderr,
# instead of exiting: each script decides how to stop.

# The call benchmarks' passwords; they pass the admin API's policy (10+
# characters, 3 classes, not containing the user name).
caller_pw=Bench.pass.A1 callee_pw=Bench.pass.B2
export caller_pw callee_pw

# bench_dev_up TROIKA DIR IP [FLAG...]: a troika dev node on IP (SIP 5060,
# admin 8080, keepalive off; FLAGs added), data in DIR/data (kept if there:
# a restart), its output in DIR/out and DIR/log; it has BENCH_UP_WAIT
# seconds (15) to come up, with the VAR=VALUE words of BENCH_NODE_ENV in
# its environment. Sets dev_pid; exports TROIKA_API and TROIKA_TOKEN.
bench_dev_up() {
  local troika=$1 dir=$2 ip=$3; shift 3
  local node_env=(${BENCH_NODE_ENV:-})
  mkdir -p "$dir"
  : >"$dir/out" # a restart must not find the last run's line
  env "${node_env[@]}" "$troika" dev --data "$dir/data" --sip-address "$ip" --alias "" --admin "$ip:8080" --keepalive 0 "$@" \
    >"$dir/out" 2>"$dir/log" &
  dev_pid=$!
  for _ in $(seq $((${BENCH_UP_WAIT:-15} * 10))); do grep -q "dev node is up" "$dir/out" 2>/dev/null && break; sleep 0.1; done
  grep -q "dev node is up" "$dir/out" || { cat "$dir/log" >&2; echo "the dev node on $ip did not start" >&2; return 1; }
  export TROIKA_API=http://$ip:8080 TROIKA_TOKEN=$(cat "$dir/data/dev-admin-token")
}

# bench_cluster_configs DIR DISPATCH KEY TOKEN IP...: DIR/n1/troika.toml,
# DIR/n2/.. for a cluster of a node per IP (n1 on the first), each with SIP
# on IP:5060 (UDP only), the cluster link on IP:7000, the admin API on
# IP:8080, keepalives off and the dispatcher on if DISPATCH is true.
bench_cluster_configs() {
  local dir=$1 dispatch=$2 key=$3 token=$4; shift 4
  local ips=("$@") peers="" i
  for i in "${!ips[@]}"; do peers="$peers\"n$((i + 1))=${ips[$i]}:7000\","; done
  for i in "${!ips[@]}"; do
    mkdir -p "$dir/n$((i + 1))"
    cat >"$dir/n$((i + 1))/troika.toml" <<EOF
node_id = "n$((i + 1))"
data_dir = "$dir/n$((i + 1))/data"
log_level = "warn"
[cluster]
bind = "${ips[$i]}:7000"
key = "$key"
peers = [${peers%,}]
[sip]
addresses = ["${ips[$i]}"]
udp_ports = [5060]
tcp_ports = []
dispatch = $dispatch
[registrar]
keepalive_interval = "0" # SIPp's phones answer no OPTIONS; the anchors send none
[admin]
listen = "${ips[$i]}:8080"
token = "$token"
EOF
  done
}

# bench_cluster_ok N: reads a GET /v1/cluster answer on stdin; succeeds
# when it names a leader and N alive, healthy members.
bench_cluster_ok() {
  python3 -c "
import json, sys
s = json.load(sys.stdin)
ok = [m for m in s['members'] if m['state'] == 'alive' and m['meta']['h'] == 'ok']
sys.exit(0 if s['cluster']['leader_id'] and len(ok) == $1 else 1)" 2>/dev/null
}

# bench_tariff TROIKA: the tariff "bench" (0.01 a minute, per second) on
# the node at TROIKA_API.
bench_tariff() {
  "$1" tariff create --id bench --rate "prefix=,per_minute=0.01,first=1,next=1" >/dev/null || { echo "tariff create failed" >&2; return 1; }
}

# bench_since T0: the seconds since T0 (date +%s.%N), to a tenth.
bench_since() { python3 -c "import time; print('%.1f' % (time.time() - $1))"; }

# bench_rss_kib PID: the process's resident memory in KiB.
bench_rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# bench_fsm_counts: reads a GET /v1/cluster answer on stdin; prints the
# bindings and accounts the node's state holds ("" if it is not one).
bench_fsm_counts() {
  python3 -c 'import json,sys; f=json.load(sys.stdin)["cluster"]["fsm"]; print(f["Bindings"], f["Accounts"])' 2>/dev/null
}

# bench_registered IP RESULT: the REGISTERs the node with admin API on
# IP:8080 answered with RESULT (ok, unavailable..), from its /metrics.
bench_registered() {
  curl -s "http://$1:8080/metrics" | awk -v want="troika_sip_register_total{result=\"$2\"}" '$1 == want {printf "%d", $2}'
}

# bench_accounts_csv N TARIFF FILE: accounts u000000.. (password
# Bench.pass.NNNNNN, prepaid, TARIFF both ways) as `troika account import`
# reads them.
bench_accounts_csv() {
  python3 -c "
for i in range($1):
    print('u%06d,Bench.pass.%06d,prepaid,0,$2,$2' % (i, i))" >"$3"
}

# bench_users_csv N FILE: SIPp's injection file for those accounts (the
# shared run_sipp.sh and sweep.sh read it as USERS).
bench_users_csv() {
  python3 -c "
print('SEQUENTIAL')
for i in range($1):
    print('u%06d;[authentication username=u%06d password=Bench.pass.%06d]' % (i, i, i))" >"$2"
}

# bench_callee_up TROIKA SHARED WORK IP UAS_IP UAS_PORT TARIFF: on the node
# at TROIKA_API (SIP on IP:5060) the accounts caller (prepaid, balance
# 1000000.00, TARIFF out) and callee; a SIPp callee registered as "callee"
# from UAS_IP:UAS_PORT, answering (-aa: the keepalive OPTIONS too). Sets
# uas_pid.
bench_callee_up() {
  local troika=$1 shared=$2 work=$3 ip=$4 uas_ip=$5 uas_port=$6 tariff=$7
  "$troika" account create --id caller --password-env caller_pw --balance 1000000.00 --tariff-out "$tariff" >/dev/null ||
    { echo "account create caller failed" >&2; return 1; }
  "$troika" account create --id callee --password-env callee_pw --balance 0 >/dev/null ||
    { echo "account create callee failed" >&2; return 1; }
  printf 'SEQUENTIAL\ncallee;[authentication username=callee password=%s]\n' "$callee_pw" >"$work/callee.csv"
  sipp "$ip:5060" -sf "$shared/sipp/reg_auth.xml" -inf "$work/callee.csv" -i "$uas_ip" -p "$uas_port" -m 1 \
    -nostdin -timeout 20s -timeout_error >/dev/null 2>&1 || { echo "the SIPp callee did not register" >&2; return 1; }
  sipp -sf "$shared/sipp/uas.xml" -i "$uas_ip" -p "$uas_port" -aa -nostdin -fd 1 >/dev/null 2>&1 &
  uas_pid=$!
  sleep 1
}

#!/bin/bash
# Calls/s through a troika dev node: INVITE, 407, INVITE with digest
# credentials, 100/200, ACK, BYE, 200 - each call authorized, rated,
# reserved, answered to a registered SIPp callee and filed as an xDR.
# Needs sipp (Debian sip-tester), curl, python3 and the shared SIPp
# scripts (../shared/bench, or SHARED_BENCH=dir).
#
# usage: bench/calls.sh [RATE...]      (default 250 500 1000 1500 2000 2500 3000 4000)
# Prints every run (8 s each) and the highest clean rate: no failed call,
# >= 97% of the offered rate achieved, retransmissions under 2% of the
# calls (the criteria of ../shared/bench/sweep.sh). Compare with
# ../shared/bench/anchor.sh proxy run in the same session.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
shared=${SHARED_BENCH:-$top/../shared/bench}
ip=${BENCH_IP:-127.0.0.31}           # the node
uas_ip=${BENCH_UAS_IP:-127.0.0.32}   # the SIPp callee
uac_ip=${BENCH_UAC_IP:-127.0.0.33}   # the SIPp caller
uas_port=5080
scenario=$top/sipstack/testdata/uac_auth.xml # the integration tests' caller
[ -f "$shared/sipp/uas.xml" ] || { echo "no $shared/sipp: set SHARED_BENCH to the shared bench directory" >&2; exit 2; }
command -v sipp >/dev/null || { echo "sipp is missing: apt-get install -y sip-tester" >&2; exit 2; }
work=$(mktemp -d /tmp/troika-calls.XXXXXX)
pid= uas=
cleanup() {
	[ -n "$uas" ] && kill "$uas" 2>/dev/null && wait "$uas" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building troika"
(cd "$top" && go build -o "$work/troika" ./cmd/troika)
bench_dev_up "$work/troika" "$work/node" "$ip" || { pid=$dev_pid; exit 1; }
pid=$dev_pid
api() { curl -sf -H "Authorization: Bearer $TROIKA_TOKEN" "$@"; }

echo "== accounts: caller (prepaid, balance 1000000.00, demo tariff), callee; a SIPp callee registered as 'callee' from $uas_ip:$uas_port"
bench_callee_up "$work/troika" "$shared" "$work" "$ip" "$uas_ip" "$uas_port" demo || { uas=${uas_pid:-}; exit 1; }
uas=$uas_pid

# run RATE: one 8 s SIPp run; prints offered= rate= ok= failed= retrans= elapsed=
run() {
	local r=$1 stat=$work/stat.$1.csv
	timeout 600 sipp "$ip:5060" -sf "$scenario" -s callee -au caller -ap "$caller_pw" -i "$uac_ip" \
		-r "$r" -rp 1000 -m $((r * 8)) -l 20000 -default_behaviors all,-bye \
		-trace_stat -stf "$stat" -fd 1 -nostdin -timeout 120s >/dev/null 2>&1 || true
	python3 - "$stat" "$r" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
d = dict(zip(rows[0], rows[-1]))
h, m, s = d['ElapsedTime(C)'].split(':')
el = int(h) * 3600 + int(m) * 60 + float(s)
ok = int(d['SuccessfulCall(C)'])
print("offered=%s rate=%.0f ok=%d failed=%s retrans=%s elapsed=%.1f" % (
    sys.argv[2], ok / el if el else 0, ok, d['FailedCall(C)'], d['Retransmissions(C)'], el))
PY
}

echo "== sweep: authorized, billed calls (8 s per rate)"
[ $# -gt 0 ] || set -- 250 500 1000 1500 2000 2500 3000 4000
best=0 best_rate=0
for r in "$@"; do
	line=$(run "$r")
	echo "$line"
	eval "$(echo "$line" | tr ' ' '\n' | sed 's/^/v_/')"
	if [ "$v_failed" = 0 ] && [ $((v_rate * 100)) -ge $((r * 97)) ] && [ $((v_retrans * 100)) -le $((v_ok * 2)) ]; then
		best=$r best_rate=$v_rate
	else
		break
	fi
	sleep 2
done
# Every call must end: those whose caller vanished (a SIPp failure under
# overload) are hung up when their ACK fails to come (64*T1 = 32 s).
open_calls() { api "$TROIKA_API/v1/calls" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d if isinstance(d, list) else d.get("calls", [])))' 2>/dev/null || echo "?"; }
for _ in $(seq 40); do [ "$(open_calls)" = 0 ] && break; sleep 1; done
echo "calls still open after the sweep: $(open_calls)"
echo "clean_rate=$best calls_per_second=$best_rate"

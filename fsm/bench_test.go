package fsm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Benchmarks of the replicated state machine's hot paths: what every
// replica does per REGISTER and per billed call. Run with
//
//	go test ./fsm -run '^$' -bench . -benchmem

// benchState is a state with n prepaid accounts u000000.. on tariff "std".
func benchState(b testing.TB, n int) *State {
	b.Helper()
	s := New()
	mustApply(b, s, &PutTariff{Tariff: Tariff{ID: "std", Currency: "USD", Rates: []Rate{
		{Prefix: "", PerMinute: 60_000, ConnectFee: 10_000, FirstInterval: 1, NextInterval: 1},
		{Prefix: "44", PerMinute: 20_000, FirstInterval: 60, NextInterval: 60},
	}}})
	for first := 0; first < n; first += 1000 {
		var accts []Account
		for i := first; i < min(first+1000, n); i++ {
			id := fmt.Sprintf("u%06d", i)
			accts = append(accts, Account{ID: id, Credentials: creds(id, "pw"+id), Billing: Prepaid, Balance: 1_000_000_000, TariffOut: "std"})
		}
		mustApply(b, s, &CreateAccounts{Now: t0, Accounts: accts})
	}
	return s
}

// benchRegister is the command of a REGISTER of account i refreshing its
// one binding (as SIPp's reg scenario sends it).
func benchRegister(i int, cseq uint32, now int64) *Register {
	id := fmt.Sprintf("u%06d", i)
	return &Register{AOR: id, CallID: fmt.Sprintf("%d-reg@127.0.0.28", i), CSeq: cseq, Now: now, MaxContacts: 10,
		Bindings: []Binding{{Contact: "sip:" + id + "@127.0.0.28:5060", Source: "127.0.0.28:5060", Transport: "udp",
			Ingress: "udp:127.0.0.30:5060", ExpiresAt: now + 3600_000, Q: -1, UserAgent: "SIPp"}}}
}

// BenchmarkRegisterApply: a Register command decoded and applied, as each
// replica applies a committed REGISTER; 10,000 accounts, each refreshing
// its binding.
func BenchmarkRegisterApply(b *testing.B) {
	const accounts = 10_000
	s := benchState(b, accounts)
	data := make([][]byte, accounts)
	for i := range data {
		var err error
		if data[i], err = Encode(benchRegister(i, 1, t0)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		c := benchRegister(1, 1, t0)
		for b.Loop() {
			c.CSeq = uint32(i)
			if _, err := Encode(c); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, _, err := Decode(data[i%accounts]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("decode+apply", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			// The same bytes each round would be recognised as a repeat:
			// the CSeq and Now move on once every account has registered.
			// Re-encoding only the rounds' first command keeps encoding
			// out of the figure.
			if i > 0 && i%accounts == 0 {
				b.StopTimer()
				for j := range data {
					data[j], _ = Encode(benchRegister(j, uint32(1+i/accounts), t0+int64(i/accounts)))
				}
				b.StartTimer()
			}
			r, err := s.Apply(data[i%accounts])
			if err != nil || r.Err != nil {
				b.Fatal(err, r.Err)
			}
			i++
		}
	})
}

// BenchmarkBilledCall: the three commands of a billed call (StartCall
// rating and reserving, AnswerCall, EndCall debiting and filing the
// xDR), encoded, decoded and applied.
func BenchmarkBilledCall(b *testing.B) {
	s := benchState(b, 2)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("call-%d", i)
		now := t0 + int64(i)*10
		for _, c := range []Command{
			&StartCall{ID: id, Direction: DirOutgoing, Account: "u000000", CLI: "u000000", CLD: "442071234567", MaxSeconds: 14400,
				Now: now, Node: "n1", Chunk: 300, Charges: []ChargeRequest{{Account: "u000000", Role: RoleOutgoing, Number: "442071234567"}}},
			&AnswerCall{ID: id, ConnectAt: now + 1, Legs: []Leg{{Role: "caller", CallID: id}, {Role: "callee", CallID: id + "-b"}}},
			&EndCall{ID: id, DisconnectAt: now + 5, Cause: 16, CauseText: "Normal", DisconnectedBy: "caller"},
		} {
			enc, err := Encode(c)
			if err != nil {
				b.Fatal(err)
			}
			r, err := s.Apply(enc)
			if err != nil || r.Err != nil {
				b.Fatal(err, r.Err)
			}
		}
		i++
	}
}

// BenchmarkSnapshot: a snapshot of a state holding N accounts and N
// bindings (N from BENCH_SNAPSHOT_SIZE, 100,000 by default) written to a
// file and restored from it, as raft persists one and a new node installs
// it. bench/run.sh runs it at its memory figure's size:
//
//	BENCH_SNAPSHOT_SIZE=1000000 go test ./fsm -run '^$' -bench '^BenchmarkSnapshot$' -benchtime 1x
func BenchmarkSnapshot(b *testing.B) {
	n := 100_000
	if v := os.Getenv("BENCH_SNAPSHOT_SIZE"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("BENCH_SNAPSHOT_SIZE=%q", v)
		}
	}
	s := benchState(b, n)
	for i := range n {
		if r := s.ApplyCommand(benchRegister(i, 1, t0)); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	path := filepath.Join(b.TempDir(), "snapshot")
	var write, restore time.Duration
	var size int64
	for b.Loop() {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if size, err = s.Snapshot().WriteTo(f); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		write += time.Since(start)
		f.Close()
		fresh := New()
		start = time.Now()
		f, err = os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := fresh.Restore(f); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(start)
		f.Close()
		if c := fresh.Counts(); c.Accounts != n || c.Bindings != n {
			b.Fatalf("restored %+v", c)
		}
	}
	b.ReportMetric(float64(n), "bindings")
	b.ReportMetric(float64(size)/1e6, "snapshot-MB")
	b.ReportMetric(float64(write.Milliseconds())/float64(b.N), "write-ms")
	b.ReportMetric(float64(restore.Milliseconds())/float64(b.N), "restore-ms")
}

// BenchmarkStateSize: the live heap a state takes per account with one
// binding (N of each, N from BENCH_SNAPSHOT_SIZE, 100,000 by default), as
// commands leave it and as a snapshot restores it.
func BenchmarkStateSize(b *testing.B) {
	n := 100_000
	if v := os.Getenv("BENCH_SNAPSHOT_SIZE"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("BENCH_SNAPSHOT_SIZE=%q", v)
		}
	}
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for b.Loop() {
		before := live()
		s := benchState(b, n)
		for i := range n {
			enc, err := Encode(benchRegister(i, 1, t0))
			if err != nil {
				b.Fatal(err)
			}
			if r, err := s.Apply(enc); err != nil || r.Err != nil {
				b.Fatal(err, r.Err)
			}
		}
		applied := live()
		var buf bytes.Buffer
		if _, err := s.Snapshot().WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
		s = nil
		restored := New()
		if err := restored.Restore(&buf); err != nil {
			b.Fatal(err)
		}
		buf = bytes.Buffer{}
		after := live()
		b.ReportMetric(float64(applied-before)/float64(n), "B/applied")
		b.ReportMetric(float64(after-before)/float64(n), "B/restored")
		runtime.KeepAlive(restored)
	}
}

package node

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestRuntimeResolve(t *testing.T) {
	const gib = 1 << 30
	intp := func(v int) *int { return &v }
	tests := []struct {
		name      string
		rc        RuntimeConfig
		memory    uint64
		gogc, lim string
		wantGC    *int
		wantLimit int64 // -1: not set
		wantLine  string
		wantErr   string
		// wantHeadroom: the headroom tuning set (0: none)
		wantHeadroom uint64
	}{
		{name: "defaults", memory: 8 * gib, wantGC: intp(400), wantLimit: 4 * gib, wantLine: "soft memory limit 4.0 GiB (50% of 8.0 GiB)", wantHeadroom: 512 << 20},
		{name: "a size", rc: RuntimeConfig{GCPercent: intp(200), MemoryLimit: "6GiB"}, memory: 8 * gib, wantGC: intp(200), wantLimit: 6 * gib, wantHeadroom: 512 << 20},
		{name: "off", rc: RuntimeConfig{MemoryLimit: "off"}, memory: 8 * gib, wantGC: intp(400), wantLimit: -1, wantLine: "no soft memory limit", wantHeadroom: 512 << 20},
		{name: "memory unknown", memory: 0, wantGC: intp(400), wantLimit: -1, wantLine: "memory is unknown", wantHeadroom: 512 << 20},
		{name: "collect only near the limit", rc: RuntimeConfig{GCPercent: intp(-1), MemoryLimit: "25%"}, memory: 8 * gib, wantGC: intp(-1), wantLimit: 2 * gib},
		{name: "the environment wins", memory: 8 * gib, gogc: "100", lim: "1GiB", wantLimit: -1, wantLine: "GOGC in the environment"},
		{name: "gc off without a limit", rc: RuntimeConfig{GCPercent: intp(-1), MemoryLimit: "off"}, memory: 8 * gib, wantErr: "needs a memory_limit"},
		{name: "bad gc percent", rc: RuntimeConfig{GCPercent: intp(-5)}, memory: 8 * gib, wantErr: "runtime.gc_percent: -5"},
		{name: "bad share", rc: RuntimeConfig{MemoryLimit: "150%"}, memory: 8 * gib, wantErr: "not a share of memory"},
		{name: "bad size", rc: RuntimeConfig{MemoryLimit: "lots"}, memory: 8 * gib, wantErr: "not a size"},
		{name: "headroom by default", memory: 8 * gib, wantGC: intp(400), wantLimit: 4 * gib, wantHeadroom: 512 << 20, wantLine: "within 512 MiB of what each collection keeps"},
		{name: "headroom off", rc: RuntimeConfig{HeapHeadroom: "off"}, memory: 8 * gib, wantGC: intp(400), wantLimit: 4 * gib, wantLine: "GC percent 400; soft"},
		{name: "no headroom without a GC percent", rc: RuntimeConfig{GCPercent: intp(-1), HeapHeadroom: "1GiB"}, memory: 8 * gib, wantGC: intp(-1), wantLimit: 4 * gib},
		{name: "no headroom under GOGC", gogc: "100", memory: 8 * gib, wantLimit: 4 * gib, wantLine: "heap_headroom not applied"},
		{name: "bad headroom", rc: RuntimeConfig{HeapHeadroom: "some"}, memory: 8 * gib, wantErr: "runtime.heap_headroom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.rc.Resolve(tt.memory, tt.gogc, tt.lim)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case (s.GCPercent == nil) != (tt.wantGC == nil):
				t.Errorf("GC percent set %v, want set %v", s.GCPercent != nil, tt.wantGC != nil)
			case s.GCPercent != nil && *s.GCPercent != *tt.wantGC:
				t.Errorf("GC percent %d, want %d", *s.GCPercent, *tt.wantGC)
			}
			switch {
			case tt.wantLimit == -1 && s.MemoryLimit != nil:
				t.Errorf("memory limit %d set, want none", *s.MemoryLimit)
			case tt.wantLimit != -1 && (s.MemoryLimit == nil || *s.MemoryLimit != tt.wantLimit):
				t.Errorf("memory limit %v, want %d", s.MemoryLimit, tt.wantLimit)
			}
			if s.HeapHeadroom != tt.wantHeadroom {
				t.Errorf("heap headroom %d, want %d", s.HeapHeadroom, tt.wantHeadroom)
			}
			if line := strings.Join(s.Lines, "; "); !strings.Contains(line, tt.wantLine) {
				t.Errorf("log %q, want it to say %q", line, tt.wantLine)
			}
		})
	}
}

func TestTunedGCPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name           string
		live, headroom uint64
		ceiling, want  int
	}{
		{"nothing kept yet", 0, 512 * mib, 400, 400},
		{"small heap: the ceiling", 50 * mib, 512 * mib, 400, 400},
		{"heap of 200 MiB", 200 * mib, 512 * mib, 400, 256},
		{"heap of 1 GiB", 1024 * mib, 512 * mib, 400, 50},
		{"heap of 4 GiB: the floor", 4096 * mib, 512 * mib, 400, 25},
		{"a ceiling under the floor stays", 4096 * mib, 512 * mib, 10, 10},
	}
	for _, tt := range tests {
		if got := TunedGCPercent(tt.live, tt.headroom, tt.ceiling); got != tt.want {
			t.Errorf("%s: TunedGCPercent(%d, %d, %d) = %d, want %d", tt.name, tt.live, tt.headroom, tt.ceiling, got, tt.want)
		}
	}
}

// The headroom lowers the process's GC percent once the live heap is large
// next to it, and the tuner stops with its context.
func TestHeapHeadroomLowersGCPercent(t *testing.T) {
	old := debug.SetGCPercent(400)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	held := make([]byte, 64<<20) // live: at least 64 MiB
	for i := range held {
		held[i] = byte(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tuneGC(ctx, 400, 4<<20, 10*time.Millisecond, slog.New(slog.DiscardHandler)); close(done) }()
	t.Cleanup(func() { cancel(); <-done }) // before the GC percent is restored
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		metrics.Read(gogc)
		if gogc[0].Value.Uint64() == minTunedGCPercent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percent %d with 64 MiB live and a 4 MiB headroom, want %d", gogc[0].Value.Uint64(), minTunedGCPercent)
		}
		runtime.Gosched()
	}
	runtime.KeepAlive(held)
}

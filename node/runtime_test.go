package node

import (
	"strings"
	"testing"
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
	}{
		{name: "defaults", memory: 8 * gib, wantGC: intp(400), wantLimit: 4 * gib, wantLine: "soft memory limit 4.0 GiB (50% of 8.0 GiB)"},
		{name: "a size", rc: RuntimeConfig{GCPercent: intp(200), MemoryLimit: "6GiB"}, memory: 8 * gib, wantGC: intp(200), wantLimit: 6 * gib},
		{name: "off", rc: RuntimeConfig{MemoryLimit: "off"}, memory: 8 * gib, wantGC: intp(400), wantLimit: -1, wantLine: "no soft memory limit"},
		{name: "memory unknown", memory: 0, wantGC: intp(400), wantLimit: -1, wantLine: "memory is unknown"},
		{name: "collect only near the limit", rc: RuntimeConfig{GCPercent: intp(-1), MemoryLimit: "25%"}, memory: 8 * gib, wantGC: intp(-1), wantLimit: 2 * gib},
		{name: "the environment wins", memory: 8 * gib, gogc: "100", lim: "1GiB", wantLimit: -1, wantLine: "GOGC in the environment"},
		{name: "gc off without a limit", rc: RuntimeConfig{GCPercent: intp(-1), MemoryLimit: "off"}, memory: 8 * gib, wantErr: "needs a memory_limit"},
		{name: "bad gc percent", rc: RuntimeConfig{GCPercent: intp(-5)}, memory: 8 * gib, wantErr: "runtime.gc_percent: -5"},
		{name: "bad share", rc: RuntimeConfig{MemoryLimit: "150%"}, memory: 8 * gib, wantErr: "not a share of memory"},
		{name: "bad size", rc: RuntimeConfig{MemoryLimit: "lots"}, memory: 8 * gib, wantErr: "not a size"},
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
			if line := strings.Join(s.Lines, "; "); !strings.Contains(line, tt.wantLine) {
				t.Errorf("log %q, want it to say %q", line, tt.wantLine)
			}
		})
	}
}

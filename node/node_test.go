package node

import (
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
)

func TestStaleCalls(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	ring := 60 * time.Second
	calls := []fsm.Call{
		{ID: "ringing-ok", SetupAt: now.UnixMilli() - 100_000},                                        // within ring timeout + grace
		{ID: "ringing-stale", SetupAt: now.UnixMilli() - 200_000},                                     // 60 s + 120 s ago
		{ID: "answered-ok", SetupAt: 1, ConnectAt: now.UnixMilli() - 3_600_000, MaxDuration: 3600},    // just at its maximum
		{ID: "answered-stale", SetupAt: 1, ConnectAt: now.UnixMilli() - 3_800_000, MaxDuration: 3600}, // 200 s past it
	}
	got := staleCalls(calls, now, ring)
	if len(got) != 2 || got[0].ID != "ringing-stale" || got[1].ID != "answered-stale" {
		t.Fatalf("stale: %+v", got)
	}
	if got[0].Cause != 408 || got[0].DisconnectAt != calls[1].SetupAt+60_000 {
		t.Errorf("ringing reap %+v", got[0])
	}
	if got[1].Cause != 200 || got[1].DisconnectAt != calls[3].ConnectAt+3_600_000 {
		t.Errorf("answered reap %+v", got[1])
	}
}

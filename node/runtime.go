package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/troika-sip/troika/internal/tick"
)

// RuntimeConfig is the [runtime] section: how the Go runtime's garbage
// collector trades memory for CPU in this process.
//
// The switch allocates for every message; at the default GOGC (100) the
// collector ran for a quarter of the CPU of a node at 8,000 REGISTERs/s,
// and its assists delayed answers past SIPp's retransmission timer (see
// bench/results). A higher gc_percent collects less often and lets the
// heap grow further between collections; memory_limit (Go's soft memory
// limit) keeps that growth bounded: near the limit the collector runs as
// often as it must, whatever gc_percent says.
type RuntimeConfig struct {
	// GCPercent is the GOGC value: how far the heap grows past what the
	// last collection kept before the next one (400: five times; -1:
	// only the memory limit triggers collections). Default 400.
	GCPercent *int `toml:"gc_percent"`
	// MemoryLimit is the soft memory limit: a share of the machine's
	// memory ("50%", the default; the cgroup's limit counts when lower),
	// a size ("6GiB", "800MB"), or "off".
	MemoryLimit string `toml:"memory_limit"`
	// HeapHeadroom bounds, in bytes, how far the heap may grow past what
	// the last collection kept ("512MiB", the default; "off": gc_percent
	// alone decides). gc_percent is a share of what is kept, so with a
	// million accounts the heap at 400 would be five times the state;
	// with a headroom the node lowers its GC percent as its state grows
	// (never under 25, never over gc_percent): a small node collects as
	// rarely as gc_percent lets it, a large one holds its state plus
	// about this much.
	HeapHeadroom string `toml:"heap_headroom"`
}

const (
	defaultGCPercent    = 400
	defaultMemoryLimit  = "50%"
	defaultHeapHeadroom = "512MiB"
	// minTunedGCPercent is the lowest GC percent the headroom sets: under
	// it a large heap is marked over and over for little memory back.
	minTunedGCPercent = 25
)

// RuntimeSettings is what ConfigureRuntime sets; a field left nil is left
// as the environment (GOGC, GOMEMLIMIT) or Go's default has it.
type RuntimeSettings struct {
	GCPercent   *int
	MemoryLimit *int64 // bytes
	// HeapHeadroom is the bytes the heap may grow past what a collection
	// kept (0: no tuning; GCPercent stays as set).
	HeapHeadroom uint64
	Lines        []string
}

// Resolve works out the settings for a machine with memory bytes of
// memory (0: unknown), given the environment's GOGC and GOMEMLIMIT (which,
// when set, win over the file, as Go reads them at start).
func (rc RuntimeConfig) Resolve(memory uint64, envGOGC, envGOMEMLIMIT string) (RuntimeSettings, error) {
	var s RuntimeSettings
	gc := defaultGCPercent
	if rc.GCPercent != nil {
		gc = *rc.GCPercent
	}
	if gc < -1 {
		return s, fmt.Errorf("runtime.gc_percent: %d (want -1 for off, or 0 and up)", gc)
	}
	limit, what, err := rc.memoryLimit(memory)
	if err != nil {
		return s, err
	}
	if gc == -1 && limit <= 0 {
		return s, fmt.Errorf("runtime.gc_percent = -1 needs a memory_limit: without both the heap grows without bound")
	}
	headroom, err := rc.heapHeadroom()
	if err != nil {
		return s, err
	}
	switch {
	case envGOGC != "":
		s.Lines = append(s.Lines, fmt.Sprintf("GC percent %s (GOGC in the environment; runtime.gc_percent and heap_headroom not applied)", envGOGC))
	case gc == -1 || headroom == 0:
		s.GCPercent = &gc
		s.Lines = append(s.Lines, fmt.Sprintf("GC percent %d", gc))
	default:
		s.GCPercent = &gc
		s.HeapHeadroom = headroom
		s.Lines = append(s.Lines, fmt.Sprintf("GC percent %d, lowered (to %d at the least) to keep the heap within %s of what each collection keeps", gc, min(gc, minTunedGCPercent), humanize.IBytes(headroom)))
	}
	switch {
	case envGOMEMLIMIT != "":
		s.Lines = append(s.Lines, fmt.Sprintf("soft memory limit %s (GOMEMLIMIT in the environment; runtime.memory_limit not applied)", envGOMEMLIMIT))
	case limit > 0:
		s.MemoryLimit = &limit
		s.Lines = append(s.Lines, "soft memory limit "+what)
	default:
		s.Lines = append(s.Lines, "no soft memory limit ("+what+")")
	}
	return s, nil
}

// memoryLimit parses MemoryLimit: the limit in bytes (0: none) and how it
// was found, for the log.
func (rc RuntimeConfig) memoryLimit(memory uint64) (int64, string, error) {
	v := strings.TrimSpace(rc.MemoryLimit)
	if v == "" {
		v = defaultMemoryLimit
	}
	if v == "off" {
		return 0, "memory_limit = off", nil
	}
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || p <= 0 || p > 100 {
			return 0, "", fmt.Errorf("runtime.memory_limit: %q is not a share of memory between 0%% and 100%%", rc.MemoryLimit)
		}
		if memory == 0 {
			return 0, "the machine's memory is unknown", nil
		}
		b := int64(float64(memory) * p / 100)
		return b, fmt.Sprintf("%s (%s of %s)", humanize.IBytes(uint64(b)), v, humanize.IBytes(memory)), nil
	}
	b, err := humanize.ParseBytes(v)
	if err != nil || b == 0 || b > 1<<62 {
		return 0, "", fmt.Errorf("runtime.memory_limit: %q is not a size (such as 6GiB or 800MB), a share (50%%) or off", rc.MemoryLimit)
	}
	return int64(b), humanize.IBytes(b), nil
}

// heapHeadroom parses HeapHeadroom: bytes, 0 for off.
func (rc RuntimeConfig) heapHeadroom() (uint64, error) {
	v := strings.TrimSpace(rc.HeapHeadroom)
	if v == "" {
		v = defaultHeapHeadroom
	}
	if v == "off" {
		return 0, nil
	}
	b, err := humanize.ParseBytes(v)
	if err != nil || b == 0 || b > 1<<62 {
		return 0, fmt.Errorf("runtime.heap_headroom: %q is not a size (such as 512MiB) or off", rc.HeapHeadroom)
	}
	return b, nil
}

// TunedGCPercent is the GC percent that lets a heap of live bytes (what
// the last collection kept) grow by headroom bytes before the next
// collection, within [min(ceiling, 25), ceiling].
func TunedGCPercent(live, headroom uint64, ceiling int) int {
	floor := min(ceiling, minTunedGCPercent)
	if live == 0 {
		return ceiling
	}
	p := headroom * 100 / live
	if p >= uint64(ceiling) {
		return ceiling
	}
	return max(int(p), floor)
}

// ConfigureRuntime applies the [runtime] section to the process and logs
// what it set. The program calls it once at start (it is the process's,
// not one node's); with a heap headroom it keeps retuning the GC percent
// every tick until ctx ends.
func ConfigureRuntime(ctx context.Context, rc RuntimeConfig, log *slog.Logger) error {
	s, err := rc.Resolve(machineMemory(), os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"))
	if err != nil {
		return err
	}
	if s.GCPercent != nil {
		debug.SetGCPercent(*s.GCPercent)
	}
	if s.MemoryLimit != nil {
		debug.SetMemoryLimit(*s.MemoryLimit)
	}
	log.Info("runtime: "+strings.Join(s.Lines, "; "), "component", "runtime")
	if s.HeapHeadroom > 0 {
		go tuneGC(ctx, *s.GCPercent, s.HeapHeadroom, time.Second, log)
	}
	return nil
}

// tuneGC sets the GC percent from the live heap every tick (Go has no
// hook after a collection; the live heap moves slowly next to a tick).
func tuneGC(ctx context.Context, ceiling int, headroom uint64, every time.Duration, log *slog.Logger) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return // not this Go: leave gc_percent as set
	}
	current := ceiling
	tick.Every(ctx.Done(), every, func() {
		metrics.Read(sample)
		live := sample[0].Value.Uint64()
		p := TunedGCPercent(live, headroom, ceiling)
		if d := p - current; d*10 <= current && -d*10 <= current {
			return // within a tenth: not worth a change
		}
		debug.SetGCPercent(p)
		log.Debug("runtime: GC percent retuned", "component", "runtime", "gc_percent", p, "live_heap", humanize.IBytes(live), "was", current)
		current = p
	})
}

// machineMemory is the memory this process may use: the machine's
// (/proc/meminfo), or its cgroup's limit when lower; 0 when unknown.
func machineMemory() uint64 {
	var total uint64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				if kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64); err == nil {
					total = kb * 1024
				}
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if lim, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64); err == nil && (total == 0 || lim < total) {
			total = lim
		}
	}
	return total
}

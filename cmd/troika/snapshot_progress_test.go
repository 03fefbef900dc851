package main

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A long transfer prints a line about every second, its percentage
// growing, and a last line at 100%; a short one prints nothing.
func TestProgressLines(t *testing.T) {
	const size = 10 << 20
	run := func(step time.Duration) []string {
		var out bytes.Buffer
		clock := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
		p := newProgress(&out, clock, "uploading", size)
		p.now = func() time.Time { return clock }
		p.last = clock
		r := &progressReader{r: io.LimitReader(zeros{}, size), p: p}
		buf := make([]byte, 64<<10)
		for {
			clock = clock.Add(step)
			if _, err := r.Read(buf); err != nil {
				break
			}
		}
		p.done(r.n)
		return strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	}
	lines := run(100 * time.Millisecond) // 160 reads: 16 s
	line := regexp.MustCompile(`^ +(\d+\.\d)s  uploading (\d+)% \((.*) of 10\.0 MiB\)$`)
	last := -1
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("progress line %q", l)
		}
		var pct int
		for _, c := range m[2] {
			pct = pct*10 + int(c-'0')
		}
		if pct < last {
			t.Fatalf("progress went back: %q", lines)
		}
		last = pct
	}
	if len(lines) < 14 || len(lines) > 18 || !strings.HasSuffix(lines[len(lines)-1], "uploading 100% (10.0 MiB of 10.0 MiB)") {
		t.Fatalf("%d lines for a 16 s transfer, want one a second and a last at 100%%:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if quick := run(0); len(quick) != 1 || quick[0] != "" {
		t.Fatalf("a quick transfer printed %q", quick)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

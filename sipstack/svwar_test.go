package sipstack

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/testkit"
)

// svwar (SIPVicious) cannot tell the existing extensions 1001 and 1005
// from the others in 1000-1010, whatever method it scans with.
func TestSvwarFindsNothing(t *testing.T) {
	if _, err := exec.LookPath("svwar"); err != nil {
		t.Skip("svwar not in PATH")
	}
	t.Parallel()
	ts := startServer(t, nil, nil)
	_, port, _ := net.SplitHostPort(ts.addr(t, "udp", ts.ip))
	dict := filepath.Join(t.TempDir(), "dict.txt")
	if err := os.WriteFile(dict, []byte("1001\n1005\n1003\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// svwar first sends a REGISTER for a random extension to learn the
	// "no such user" answer, then reports extensions answered otherwise.
	// Every answer here is the same, so it either gives up at once
	// (without --force: "the server challenged an unknown extension") or
	// stops at the first extension it probes, having nothing to report.
	scans := []struct {
		method string
		force  bool
		guess  []string
		want   string
	}{
		{"REGISTER", false, []string{"-e1000-1010"}, "authentication request for an unknown extension"},
		{"REGISTER", true, []string{"-e1000-1010"}, "found nothing"},
		{"REGISTER", true, []string{"-d", dict}, "found nothing"},
		{"OPTIONS", true, []string{"-e1000-1010"}, "found nothing"},
		{"INVITE", true, []string{"-d", dict}, "found nothing"},
	}
	for _, sc := range scans {
		before := ts.counter("troika_sip_requests_total")
		args := append([]string{"-m", sc.method, "-b", "127.0.0.1", "-P", strconv.Itoa(testkit.FreePort(t, "127.0.0.1")),
			"-p", port, "-t", "0.02"}, sc.guess...)
		if sc.force {
			args = append(args, "--force")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, "svwar", append(args, ts.ip)...).CombinedOutput()
		cancel()
		text := string(out)
		if err != nil {
			t.Fatalf("svwar %v: %v\n%s", args, err, text)
		}
		// Findings are logged as "extension 'N' exists ..." (or "probably
		// exists" for odd answers) and listed in an Extension table.
		if !strings.Contains(text, sc.want) || strings.Contains(text, "exists") ||
			strings.Contains(text, "we have") || strings.Contains(text, "Extension") {
			t.Errorf("svwar -m %s (force=%v) output:\n%s", sc.method, sc.force, text)
		}
		scanned := ts.counter("troika_sip_requests_total") - before
		if sc.force && scanned < 2 {
			t.Errorf("svwar -m %s sent only %v requests:\n%s", sc.method, scanned, text)
		}
	}
	if ts.counter("troika_sip_register_total", "result", "rate_limited") != 0 {
		t.Errorf("unauthenticated scans must not trip the failed-auth limit")
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/testkit"
)

// A production node logs JSON, one object per line; its level changes
// while it runs: by `troika log-level` (admin token), and by SIGHUP from
// an edited configuration file.
func TestAgentLogsJSONAndChangesLevel(t *testing.T) {
	dir := t.TempDir()
	const token = "agent-log-token-0123456789"
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t, "127.0.0.1"))
	config := filepath.Join(dir, "troika.toml")
	write := func(level string) {
		soloConfig{id: "log1", dataDir: filepath.Join(dir, "data"), logLevel: level, sipIP: "127.0.0.62", api: apiAddr,
			admin: fmt.Sprintf("token = %q\n", token)}.write(t, config)
	}
	write("info")
	p := startProc(t, "agent", "--config", config)
	c := admin.NewClient(apiAddr, token)
	if !testkit.Eventually(30*time.Second, func() bool { _, err := c.ClusterStatus(context.Background()); return err == nil }) {
		t.Fatalf("the admin API did not answer:\n%s", p.output())
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(p.output()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec["level"] == nil || rec["msg"] == nil {
			t.Fatalf("not a JSON log line: %q (%v)", sc.Text(), err)
		}
		lines++
	}
	if lines == 0 {
		t.Fatal("no log lines")
	}

	env := []string{"TROIKA_API=http://" + apiAddr, "TROIKA_TOKEN=" + token}
	if out, err := cliErr(env, "log-level", "debug"); err != nil || !strings.Contains(out, "log level now debug") {
		t.Fatalf("troika log-level debug: %v\n%s", err, out)
	}
	if out, err := cliErr(env, "log-level"); err != nil || strings.TrimSpace(out) != "debug" {
		t.Fatalf("troika log-level: %v\n%s", err, out)
	}
	p.waitOutput(t, regexp.MustCompile(`"msg":"log level changed".*"to":"debug"`), 10*time.Second)

	write("warn")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitOutput(t, regexp.MustCompile(`"msg":"SIGHUP: log level reloaded from the configuration file".*"to":"WARN"`), 10*time.Second)
	if out, err := cliErr(env, "log-level"); err != nil || strings.TrimSpace(out) != "warn" {
		t.Fatalf("after SIGHUP: %v\n%s", err, out)
	}
	if out, err := cliErr(env, "log-level", "loud"); err == nil || !strings.Contains(out, "not a level") {
		t.Fatalf("a bad level: %v\n%s", err, out)
	}
	p.stop(t)
}

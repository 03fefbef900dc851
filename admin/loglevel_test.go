package admin

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// The engineer on call turns debug logs on and off on a running node,
// with an admin token; a read token may only look.
func TestLogLevelAtRunTime(t *testing.T) {
	st := fsm.New()
	var level slog.LevelVar
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: &level}))
	srv, err := New(Config{Token: token, Tokens: []Token{{Name: "noc", Scope: ScopeRead, Secret: readToken}},
		Level: &level, Logger: log}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	ctx := context.Background()
	c := NewClient(hs.URL, token)
	if got, err := c.LogLevel(ctx); err != nil || got.Level != "info" {
		t.Fatalf("GET: %+v, %v", got, err)
	}
	if got, err := c.SetLogLevel(ctx, "DEBUG"); err != nil || got.Level != "debug" || level.Level() != slog.LevelDebug {
		t.Fatalf("PUT debug: %+v, %v, level now %v", got, err, level.Level())
	}
	if !strings.Contains(out.String(), "log level changed") || !strings.Contains(out.String(), "to=debug") {
		t.Errorf("the change is not logged: %s", out.String())
	}
	if _, err := c.SetLogLevel(ctx, "verbose"); apiErr(t, err).Status != http.StatusBadRequest || level.Level() != slog.LevelDebug {
		t.Errorf("a bad level: %v; level now %v", err, level.Level())
	}
	if code, _ := request(t, hs.URL, readToken, "PUT", "/v1/log-level", `{"level":"error"}`); code != http.StatusForbidden || level.Level() != slog.LevelDebug {
		t.Errorf("a read token set the level: %d", code)
	}
	if code, _ := request(t, hs.URL, readToken, "GET", "/v1/log-level", ""); code != http.StatusOK {
		t.Errorf("a read token cannot read the level: %d", code)
	}
}

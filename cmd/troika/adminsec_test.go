package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// --help never shows the token of the environment (the flags' defaults
// are empty; TROIKA_TOKEN is read when a command runs).
func TestHelpDoesNotShowTheToken(t *testing.T) {
	const secret = "env-token-never-shown-0123456789"
	t.Setenv("TROIKA_TOKEN", secret)
	t.Setenv("TROIKA_API", "https://198.51.100.1:8443")
	for _, args := range [][]string{{"--help"}, {"account", "list", "--help"}, {"drain", "--help"}} {
		out, err := runRoot(t, args...)
		if err != nil || !strings.Contains(out, "--token") || strings.Contains(out, secret) {
			t.Fatalf("troika %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// The CLI over TLS with a client certificate, in process: the flags
// reach the API; without the certificate, or without the CA, it says what
// to pass.
func TestCLIOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	files := testkit.WriteTLSFiles(t, dir, "127.0.0.1")
	st := fsm.New()
	srv, err := admin.New(admin.Config{Token: testToken}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := admin.ServerTLS(files.Cert, files.Key, files.CA)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.TLS = conf
	hs.StartTLS()
	t.Cleanup(hs.Close)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(testToken), 0o600)
	args := func(extra ...string) []string {
		return append([]string{"--api", hs.URL, "--token-file", tokenFile, "--ca-file", files.CA}, extra...)
	}
	out, err := runRoot(t, args("--client-cert", files.ClientCert, "--client-key", files.ClientKey, "tariff", "create", "--id", "t",
		"--rate", "prefix=1,per_minute=0.01")...)
	if err != nil || !strings.Contains(out, "0.01") {
		t.Fatalf("with a client certificate: %v\n%s", err, out)
	}
	if _, err := runRoot(t, args("tariff", "list")...); err == nil || !strings.Contains(err.Error(), "--client-cert") {
		t.Fatalf("without a client certificate: %v", err)
	}
	if _, err := runRoot(t, args("--client-cert", files.ClientCert, "tariff", "list")...); err == nil || !strings.Contains(err.Error(), "both") {
		t.Fatalf("a certificate without its key: %v", err)
	}
	if _, err := runRoot(t, "--api", hs.URL, "--token-file", tokenFile, "tariff", "list"); err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Fatalf("without the CA: %v", err)
	}
	if _, err := runRoot(t, "--api", strings.Replace(hs.URL, "https:", "http:", 1), "--ca-file", files.CA, "tariff", "list"); err == nil ||
		!strings.Contains(err.Error(), "https://") {
		t.Fatalf("a CA file with an http URL: %v", err)
	}
}

// A production-like node (troika agent) with its admin API on TLS and a
// read and an admin token in files: the CLI reaches it with TROIKA_CA_FILE
// and TROIKA_TOKEN_FILE, the read token is refused a write with a hint,
// plain http is told to use https, and the node's output holds no token.
func TestAgentAdminAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	files := testkit.WriteTLSFiles(t, dir, "127.0.0.1")
	const opsToken, nocToken = "agent-ops-token-0123456789", "agent-noc-token-0123456789"
	ops, noc := filepath.Join(dir, "ops.token"), filepath.Join(dir, "noc.token")
	os.WriteFile(ops, []byte(opsToken+"\n"), 0o600)
	os.WriteFile(noc, []byte(nocToken+"\n"), 0o600)
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t, "127.0.0.1"))
	config := filepath.Join(dir, "troika.toml")
	soloConfig{id: "tls1", dataDir: filepath.Join(dir, "data"), logLevel: "info", sipIP: "127.0.0.61", api: apiAddr,
		admin: fmt.Sprintf(`tokens = [{name = "ops", scope = "admin", token_file = %q}, {name = "noc", scope = "read", token_file = %q}]
tls_cert_file = %q
tls_key_file = %q
`, ops, noc, files.Cert, files.Key)}.write(t, config)
	p := startProc(t, "agent", "--config", config)
	c, err := admin.NewClientTLS(apiAddr, nocToken, admin.ClientTLS{CAFile: files.CA})
	if err != nil {
		t.Fatal(err)
	}
	// Until it has elected itself, cluster status exits 5 (no quorum).
	if !testkit.Eventually(30*time.Second, func() bool {
		raw, err := c.ClusterStatus(context.Background())
		return err == nil && !strings.Contains(string(raw), `"leader_id": ""`)
	}) {
		t.Fatalf("the admin API did not answer over TLS, or the node did not lead:\n%s", p.output())
	}
	env := func(tokenFile string) []string {
		return []string{"TROIKA_API=https://" + apiAddr, "TROIKA_CA_FILE=" + files.CA, "TROIKA_TOKEN_FILE=" + tokenFile, "TROIKA_TOKEN="}
	}
	if out, err := cliErr(env(noc), "cluster", "status"); err != nil || !strings.Contains(out, "tls1") {
		t.Fatalf("cluster status with the read token: %v\n%s", err, out)
	}
	out, err := cliErr(env(noc), "tariff", "create", "--id", "t", "--rate", "prefix=1,per_minute=0.01")
	if err == nil || !strings.Contains(out, "this token is read-only") || !strings.Contains(out, "hint:") {
		t.Fatalf("a write with the read token:\n%s", out)
	}
	if out, err := cliErr(env(ops), "tariff", "create", "--id", "t", "--rate", "prefix=1,per_minute=0.01"); err != nil {
		t.Fatalf("a write with the admin token: %v\n%s", err, out)
	}
	plain := append(env(ops), "TROIKA_API=http://"+apiAddr, "TROIKA_CA_FILE=")
	if out, err := cliErr(plain, "tariff", "list"); err == nil || !strings.Contains(out, "use https://") {
		t.Fatalf("plain http to the TLS API:\n%s", out)
	}
	// Without TLS on a non-loopback address the node would warn; here it
	// must not, and no token is ever logged.
	if log := p.output(); strings.Contains(log, "plain HTTP") || strings.Contains(log, opsToken) || strings.Contains(log, nocToken) {
		t.Fatalf("node output:\n%s", log)
	}
	var d net.Dialer
	conn, err := tls.DialWithDialer(&d, "tcp", apiAddr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		if conn != nil {
			conn.Close()
		}
		t.Fatalf("TLS 1.1 to the admin API: %v, want a protocol version alert", err)
	}
	p.stop(t)
}

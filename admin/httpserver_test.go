package admin

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/internal/testkit"
)

// serve runs the API's own http.Server (HTTPServer) with timeouts on a
// loopback listener, wrapped by wrap if not nil, and returns its address.
func serve(t *testing.T, cfg Config, backend Backend, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	st := fsm.New()
	if backend == nil {
		backend = testkit.NewStore(st)
	}
	cfg.Token = token
	srv, err := New(cfg, st, backend)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	hs := srv.HTTPServer()
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// dial connects to addr over TCP; the connection is closed when the
// test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readUntilClosed reads conn until the server closes it (EOF, or a reset)
// and fails if that takes longer than within.
func readUntilClosed(t *testing.T, conn net.Conn, r io.Reader, within time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %s", within)
	}
}

func TestHTTPServerDefaults(t *testing.T) {
	st := fsm.New()
	srv, err := New(Config{Token: token}, st, testkit.NewStore(st))
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	if hs.ReadHeaderTimeout != DefaultReadHeaderTimeout || hs.ReadTimeout != DefaultReadTimeout || hs.WriteTimeout != DefaultWriteTimeout ||
		hs.IdleTimeout != DefaultIdleTimeout || hs.MaxHeaderBytes != MaxHeaderBytes {
		t.Fatalf("server %+v", hs)
	}
}

// An idle keep-alive connection is closed after the idle timeout.
func TestIdleKeepAliveConnectionIsClosed(t *testing.T) {
	addr := serve(t, Config{Timeouts: Timeouts{Idle: 100 * time.Millisecond}}, nil, nil)
	conn := dial(t, addr)
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: troika\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("answer %d, close %v: want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	readUntilClosed(t, conn, br, 10*time.Second)
}

// A client that sends headers slowly (or never finishes them) is cut off
// after the header timeout; too large headers are refused.
func TestSlowAndLargeHeadersAreRefused(t *testing.T) {
	addr := serve(t, Config{Timeouts: Timeouts{ReadHeader: 100 * time.Millisecond}}, nil, nil)
	conn := dial(t, addr)
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: troika\r\n")
	readUntilClosed(t, conn, conn, 10*time.Second)

	req, _ := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 2*MaxHeaderBytes)) // net/http allows 4 KiB over the limit
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers over %d bytes: %d", MaxHeaderBytes, resp.StatusCode)
	}
}

// slowDrainer is a backend whose drain reports a line, waits past the
// server's read and write timeouts, then finishes.
type slowDrainer struct {
	*testkit.Store
	wait time.Duration
}

func (d slowDrainer) Drain(DrainOptions) (DrainRun, bool, error) { return d, false, nil }

func (d slowDrainer) Follow(ctx context.Context, line func(string)) (string, error) {
	line("step one")
	select {
	case <-time.After(d.wait):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	line("step two")
	return "done", nil
}

// The drain's stream outlasts the connection's read and write timeouts.
func TestDrainStreamOutlastsTimeouts(t *testing.T) {
	st := fsm.New()
	timeouts := Timeouts{Read: 100 * time.Millisecond, Write: 100 * time.Millisecond}
	addr := serve(t, Config{Timeouts: timeouts}, slowDrainer{Store: testkit.NewStore(st), wait: 500 * time.Millisecond}, nil)
	var lines []string
	summary, err := NewClient(addr, token).Drain(context.Background(), DrainRequest{Timeout: "5s"}, func(l string) { lines = append(lines, l) })
	if err != nil || summary != "done" || strings.Join(lines, "|") != "step one|step two" {
		t.Fatalf("drain: %q %v, lines %q", summary, err, lines)
	}
}

// Over TLS: a client trusting the CA reads; one that does not is told to
// pass --ca-file; with a client CA, a client without a certificate is
// told to pass one, and one with it reads.
func TestTLS(t *testing.T) {
	files := testkit.WriteTLSFiles(t, t.TempDir(), "127.0.0.1")
	conf, err := ServerTLS(files.Cert, files.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, Config{}, nil, func(ln net.Listener) net.Listener { return tls.NewListener(ln, conf) })
	ctx := context.Background()
	c, err := NewClientTLS(addr, token, ClientTLS{CAFile: files.CA})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.BaseURL, "https://") {
		t.Fatalf("base %s", c.BaseURL)
	}
	if _, err := c.Accounts(ctx); err != nil {
		t.Fatalf("over TLS with the CA: %v", err)
	}
	if _, err := NewClient("https://"+addr, token).Accounts(ctx); err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Fatalf("without the CA: %v", err)
	}
	if _, err := NewClient("http://"+addr, token).Accounts(ctx); err == nil || !strings.Contains(err.Error(), "HTTPS server") {
		t.Fatalf("plain HTTP to TLS: %v", err)
	}
	if _, err := NewClientTLS("http://"+addr, token, ClientTLS{CAFile: files.CA}); err == nil || !strings.Contains(err.Error(), "https://"+addr) {
		t.Fatalf("a CA file with an http URL: %v", err)
	}
	if _, err := NewClientTLS(addr, token, ClientTLS{CAFile: files.Key}); err == nil || !strings.Contains(err.Error(), files.Key) {
		t.Fatalf("a CA file without certificates: %v", err)
	}

	mutual, err := ServerTLS(files.Cert, files.Key, files.CA)
	if err != nil {
		t.Fatal(err)
	}
	addr = serve(t, Config{}, nil, func(ln net.Listener) net.Listener { return tls.NewListener(ln, mutual) })
	c, _ = NewClientTLS(addr, token, ClientTLS{CAFile: files.CA})
	if _, err := c.Accounts(ctx); err == nil || !strings.Contains(err.Error(), "--client-cert") {
		t.Fatalf("without a client certificate: %v", err)
	}
	c, err = NewClientTLS(addr, token, ClientTLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Accounts(ctx); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}

	if _, err := ServerTLS(files.Cert, files.CA, ""); err == nil || !strings.Contains(err.Error(), files.CA) {
		t.Fatalf("a key file that is no key: %v", err)
	}
	if _, err := ServerTLS(files.Cert, files.Key, os.DevNull); err == nil || !strings.Contains(err.Error(), os.DevNull) {
		t.Fatalf("an empty client CA file: %v", err)
	}
}

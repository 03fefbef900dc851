package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/testkit"
)

// The runbook's certificates, made with `troika cert`, give three troika
// processes a TLS cluster port: they elect a leader, an account created
// through a follower reaches all three, every cluster connection is TLS;
// a plaintext dialer is refused (told TLS is required), counted and
// logged.
func TestCertCLIAndTLSCluster(t *testing.T) {
	pki := t.TempDir()
	caDir := filepath.Join(pki, "ca")
	out := runCLI(t, nil, "cert", "create-ca", "--dir", caDir)
	if !strings.Contains(out, "ca-key.pem") {
		t.Fatalf("create-ca: %s", out)
	}
	nodes := threeNodes(t)
	for _, n := range nodes {
		out := runCLI(t, nil, "cert", "create-node", "--ca", caDir, "--node", n.id, "--ip", "127.0.0.1", "--out", filepath.Join(pki, n.id))
		if !strings.Contains(out, "troika-node:"+n.id) {
			t.Fatalf("create-node: %s", out)
		}
		key := filepath.Join(pki, n.id, n.id+"-key.pem")
		if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", key, err, st)
		}
		f, err := os.OpenFile(n.config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString("[cluster.tls]\nca_file = \"" + filepath.Join(caDir, "ca.pem") + "\"\ncert_file = \"" + filepath.Join(pki, n.id, n.id+".pem") + "\"\nkey_file = \"" + key + "\"\n")
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cliErr(nil, "cert", "create-ca", "--dir", caDir); err == nil {
		t.Fatal("create-ca replaced an existing CA without --force")
	}

	leader := startCluster(t, nodes)
	follower := others(nodes, leader)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := follower.client().CreateAccount(ctx, admin.Account{ID: "tls1", Password: "Pw-over-TLS-4711"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testkit.WaitFor(t, 10*time.Second, "the account on "+n.id, func() bool {
			_, err := n.client().Account(ctx, "tls1")
			return err == nil
		})
	}
	for _, n := range nodes {
		m := metricsOf(t, n.api)
		tlsConns, plain := m[`troika_cluster_conns_accepted_total{transport="tls"}`], m[`troika_cluster_conns_accepted_total{transport="plaintext"}`]
		if tlsConns == 0 || plain != 0 {
			t.Errorf("%s accepted %v TLS and %v plaintext cluster connections: want TLS only", n.id, tlsConns, plain)
		}
	}

	// A plaintext dialer: the challenge offers TLS, a plaintext answer
	// gets "TLS required".
	conn, err := net.Dial("tcp", leader.cluster)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	hello := make([]byte, 36)
	if _, err := io.ReadFull(conn, hello); err != nil || string(hello[:8]) != "TRK\x01TLS\x01" {
		t.Fatalf("challenge %q, %v: want the magic and a TLS offer", hello, err)
	}
	conn.Write(append([]byte{'F'}, make([]byte, 32)...))
	ack := make([]byte, 1)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x02 {
		t.Fatalf("answer to a plaintext dialer: %#x, %v: want 0x02 (TLS required)", ack, err)
	}
	testkit.WaitFor(t, 5*time.Second, "the refusal counted and logged", func() bool {
		return metricsOf(t, leader.api)[`troika_cluster_conn_refused_total{reason="plaintext"}`] == 1 &&
			strings.Contains(leader.p.output(), "refused a connection") && strings.Contains(leader.p.output(), `"reason":"plaintext"`)
	})
}

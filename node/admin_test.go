package node

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/testkit"
)

// A node with admin.tls_cert_file serves the API over TLS only, with its
// tokens' scopes: the read token reads, and is refused a write.
func TestNodeServesTheAdminAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	files := testkit.WriteTLSFiles(t, dir, "127.0.0.1")
	sip := freeAddr(t, "udp")
	const ops, noc = "node-ops-token-0123456789", "node-noc-token-0123456789"
	nodes, _ := startNodes(t, []Config{{
		NodeID: "tls", DataDir: filepath.Join(dir, "data"),
		Cluster: ClusterConfig{Bind: freeAddr(t, "tcp"), Key: "admin-tls-test-cluster-key", Bootstrap: true, GossipBind: freeAddr(t, "tcp")},
		SIP:     SIPConfig{Addresses: []string{"127.0.0.1"}, UDPPorts: []int{portOf(t, sip)}, TCPPorts: []int{}},
		Admin: AdminConfig{Listen: "127.0.0.1:0", TLSCertFile: files.Cert, TLSKeyFile: files.Key, Tokens: []AdminToken{
			{Name: "ops", Scope: "admin", Token: ops}, {Name: "noc", Scope: "read", Token: noc}}},
	}})
	n := nodes[0]
	ctx := context.Background()
	read, err := admin.NewClientTLS(n.AdminAddr(), noc, admin.ClientTLS{CAFile: files.CA})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := read.ClusterStatus(ctx); err != nil {
		t.Fatalf("read token over TLS: %v", err)
	}
	_, err = read.PutAlias(ctx, admin.Alias{IP: "127.0.0.9"})
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.HasPrefix(ae.Msg, "this token is read-only: ") {
		t.Fatalf("a write with the read token: %v", err)
	}
	write, _ := admin.NewClientTLS(n.AdminAddr(), ops, admin.ClientTLS{CAFile: files.CA})
	if _, err := write.PutAlias(ctx, admin.Alias{IP: "127.0.0.9"}); err != nil {
		t.Fatalf("a write with the admin token: %v", err)
	}
	if _, err := admin.NewClient(n.AdminAddr(), ops).ClusterStatus(ctx); err == nil {
		t.Fatal("plain HTTP answered on a TLS listener")
	}
}

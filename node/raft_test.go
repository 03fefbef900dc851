package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cluster.await_add: a node an operator adds has no other way in, needs
// the others' gossip addresses, and dispatches.
func TestAwaitAddConfig(t *testing.T) {
	base := `node_id = "sip4"
data_dir = "/tmp/x"
[cluster]
bind = "127.0.0.1:7000"
key = "0123456789abcdef0123"
await_add = true
%s
[sip]
addresses = ["127.0.0.1"]
[admin]
token = "0123456789abcdef0123"
`
	dir := t.TempDir()
	load := func(extra string) (Config, error) {
		path := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(path, []byte(strings.Replace(base, "%s", extra, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		return LoadConfig(path)
	}
	for extra, want := range map[string]string{
		``: "cluster.await_add: set cluster.gossip_join",
		`gossip_join = ["127.0.0.1:7101"]` + "\n" + `peers = ["sip4=127.0.0.1:7000", "sip1=127.0.0.1:7100"]`: "peers would bootstrap a second cluster",
		`gossip_join = ["127.0.0.1:7101"]` + "\n" + `join = ["127.0.0.1:7100"]`:                              "cluster.await_add: a node added by an operator has no peers, join or bootstrap",
		`gossip_join = ["127.0.0.1:7101"]` + "\n" + `bootstrap = true`:                                       "cluster.await_add",
	} {
		if _, err := load(extra); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("await_add with %q: %v, want %q", extra, err, want)
		}
	}
	c, err := load(`gossip_join = ["127.0.0.1:7101", "127.0.0.1:7201"]`)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cluster.AwaitAdd || !c.DispatchEnabled() {
		t.Fatalf("await_add %v, dispatch %v: want both", c.Cluster.AwaitAdd, c.DispatchEnabled())
	}
}

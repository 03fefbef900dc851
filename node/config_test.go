package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	tok := filepath.Join(dir, "admin.token")
	os.WriteFile(key, []byte("c2VjcmV0LWNsdXN0ZXIta2V5LTAxMjM0NTY3ODkK\n"), 0o600)
	os.WriteFile(tok, []byte("0123456789abcdef0123\n"), 0o600)
	data, err := os.ReadFile("../deploy/troika.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("/etc/troika/cluster.key", key, "/etc/troika/admin.token", tok).Replace(string(data))
	path := filepath.Join(dir, "troika.toml")
	os.WriteFile(path, []byte(text), 0o600)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("the documented example does not load: %v", err)
	}
	peers, _ := c.ClusterPeers()
	if c.NodeID != "sip1" || len(peers) != 3 || c.Registrar.NonceTTL.Minutes() != 5 || c.Admin.Token != "0123456789abcdef0123" {
		t.Fatalf("loaded %+v", c)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	base := `node_id = "a"
data_dir = "/tmp/x"
[cluster]
bind = "127.0.0.1:7000"
key = "0123456789abcdef0123"
bootstrap = true
[sip]
addresses = ["127.0.0.1"]
[admin]
token = "0123456789abcdef0123"
`
	cases := map[string]string{
		"typo":           base + "[registrar]\nrelam = \"x\"\n",
		"bad address":    strings.Replace(base, `["127.0.0.1"]`, `["localhost"]`, 1),
		"short token":    strings.Replace(base, `token = "0123456789abcdef0123"`, `token = "x"`, 1),
		"peers w/o self": strings.Replace(base, "bootstrap = true", `peers = ["b=127.0.0.1:7001"]`, 1),
		"min > max":      base + "[registrar]\nmin_expires = 100\nmax_expires = 50\n",
		"bad duration":   base + "[registrar]\nnonce_ttl = \"5 minutes\"\n",
	}
	want := map[string]string{
		"typo": "registrar.relam", "bad address": "sip.addresses", "short token": "admin.token",
		"peers w/o self": "cluster.peers", "min > max": "registrar", "bad duration": "nonce_ttl",
	}
	dir := t.TempDir()
	for name, text := range cases {
		path := filepath.Join(dir, "c.toml")
		os.WriteFile(path, []byte(text), 0o600)
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: error %v, want it to name %s", name, err, want[name])
		}
	}
	path := filepath.Join(dir, "c.toml")
	os.WriteFile(path, []byte(base), 0o600)
	if _, err := LoadConfig(path); err != nil {
		t.Fatalf("base config: %v", err)
	}
}

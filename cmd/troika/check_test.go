package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troika-sip/troika/internal/testkit"
)

// `troika agent --check` reads the configuration and its files and says
// what the node would do, which real addresses it would take above all,
// and starts nothing; a missing file is named by its key.
func TestAgentCheck(t *testing.T) {
	dir := t.TempDir()
	files := testkit.WriteTLSFiles(t, dir, "127.0.0.1")
	data := filepath.Join(dir, "data")
	config := filepath.Join(dir, "troika.toml")
	write := func(adminCert string) {
		cfg := fmt.Sprintf(`node_id = "chk1"
data_dir = %q
[cluster]
bind = "127.0.0.1:7390"
key = "c2hhcmVkLWNsdXN0ZXIta2V5LWZvci10ZXN0cw=="
peers = ["chk1=127.0.0.1:7390", "chk2=127.0.0.2:7390", "chk3=127.0.0.3:7390"]
[sip]
addresses = ["192.0.2.10"]
[vip]
interface = "lo"
addresses = ["192.0.2.100/24"]
[admin]
listen = "127.0.0.1:8391"
token = "check-token-0123456789"
tls_cert_file = %q
tls_key_file = %q
`, data, adminCert, files.Key)
		if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(files.Cert)
	out, err := exec.Command(troikaBin, "agent", "--config", config, "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("--check: %v\n%s", err, out)
	}
	for _, want := range []string{
		"node chk1, data in " + data + " (created at first start)",
		"peers: chk1=127.0.0.1:7390, chk2=127.0.0.2:7390, chk3=127.0.0.3:7390",
		"warning: plaintext",
		"SIP sockets: udp:192.0.2.10:5060, tcp:192.0.2.10:5060",
		"TAKES REAL ADDRESSES on lo when the cluster places them here: 192.0.2.100/24",
		"admin API https://127.0.0.1:8391, tokens: token (admin)",
		"configuration OK (nothing was started)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--check does not say %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("--check created the data directory: %v", err)
	}
	write(filepath.Join(dir, "missing.pem"))
	out, err = exec.Command(troikaBin, "agent", "--config", config, "--check").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "admin.tls_cert_file") {
		t.Fatalf("--check with a missing certificate: %v\n%s", err, out)
	}
}

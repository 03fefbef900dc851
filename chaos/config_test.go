//go:build linux

package chaos

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// Options.Config edits the generated TOML by dotted keys; only the keys
// set are written.
func TestTOMLEdit(t *testing.T) {
	cfg := TOML{}
	cfg.Set("node_id", "n1")
	cfg.Set("sip.addresses", []string{"10.1.2.11"})
	cfg.Set("admin.listen", "10.1.2.11:8080")
	cfg.Set("sip.addresses", append(cfg.Get("sip.addresses").([]string), "10.1.2.100"))
	cfg.Set("vip.interface", Iface)
	cfg.Set("vip.lease", "1s")
	cfg.Delete("admin.listen")
	if got := cfg.Get("vip.lease"); got != "1s" {
		t.Fatalf("Get(vip.lease) = %v", got)
	}
	if cfg.Get("admin.listen") != nil || cfg.Get("no.such.key") != nil {
		t.Fatal("Get of a deleted or missing key is not nil")
	}
	data, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		NodeID string `toml:"node_id"`
		SIP    struct {
			Addresses []string `toml:"addresses"`
		} `toml:"sip"`
		VIP struct {
			Interface string `toml:"interface"`
			Lease     string `toml:"lease"`
		} `toml:"vip"`
	}
	md, err := toml.Decode(string(data), &back)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("extra keys %v in\n%s", und, data)
	}
	if back.NodeID != "n1" || strings.Join(back.SIP.Addresses, ",") != "10.1.2.11,10.1.2.100" || back.VIP.Interface != "eth0" || back.VIP.Lease != "1s" {
		t.Fatalf("round trip: %+v\n%s", back, data)
	}
	if strings.Contains(string(data), "admin") {
		t.Fatalf("deleted key written:\n%s", data)
	}
}

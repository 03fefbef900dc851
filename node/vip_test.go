package node

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const vipBase = `node_id = "sip1"
data_dir = "/tmp/x"
[cluster]
bind = "10.0.0.1:7000"
key = "0123456789abcdef0123"
peers = ["sip1=10.0.0.1:7000", "sip2=10.0.0.2:7000", "sip3=10.0.0.3:7000"]
[sip]
addresses = ["10.0.0.1"]
[admin]
token = "0123456789abcdef0123"
`

func loadText(t *testing.T, text string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return LoadConfig(path)
}

// [vip] defaults, the raft timing defaults and the derived gossip
// addresses.
func TestVIPConfigDefaults(t *testing.T) {
	c, err := loadText(t, vipBase+"[vip]\ninterface = \"eth0\"\naddresses = [\"10.0.0.100/24\"]\nprefer = {\"10.0.0.100\" = \"sip2\"}\n")
	if err != nil {
		t.Fatal(err)
	}
	v := c.VIP
	if v == nil || v.Lease != time.Second || v.Margin != 250*time.Millisecond || v.Placement != "spread" || v.GARPCount != 3 ||
		v.GARPInterval != 500*time.Millisecond || v.Settle != 5*time.Second || v.Prefer["10.0.0.100"] != "sip2" {
		t.Fatalf("vip %+v", v)
	}
	if c.Cluster.HeartbeatTimeout != DefaultHeartbeatTimeout || c.Cluster.ElectionTimeout != DefaultElectionTimeout ||
		c.Cluster.LeaderLeaseTimeout != DefaultLeaderLeaseTimeout {
		t.Fatalf("raft timing %+v", c.Cluster)
	}
	lt := c.LeaseTiming()
	if lt.HandoverWait() != time.Second+150*time.Millisecond+250*time.Millisecond {
		t.Fatalf("handover wait %s", lt.HandoverWait())
	}
	p, err := c.VIPPrefixes()
	if err != nil || len(p) != 1 || p[0].String() != "10.0.0.100/24" {
		t.Fatalf("prefixes %v %v", p, err)
	}
	g, err := c.GossipAddrs()
	if err != nil || g.Bind != "10.0.0.1:7001" || g.Advertise != "10.0.0.1:7001" ||
		!slices.Equal(g.Join, []string{"10.0.0.2:7001", "10.0.0.3:7001"}) {
		t.Fatalf("gossip %+v %v", g, err)
	}
	// Without [vip]: no address management.
	c, err = loadText(t, vipBase)
	if err != nil || c.VIP != nil {
		t.Fatalf("no [vip]: %+v %v", c.VIP, err)
	}
	// A wildcard bind gossips on the advertised host.
	c, err = loadText(t, strings.Replace(vipBase, `bind = "10.0.0.1:7000"`, "bind = \"0.0.0.0:7000\"\nadvertise = \"10.0.0.1:7000\"", 1))
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := c.GossipAddrs(); g.Bind != "0.0.0.0:7001" || g.Advertise != "10.0.0.1:7001" {
		t.Fatalf("wildcard gossip %+v", g)
	}
}

func TestVIPConfigErrorsNameTheKey(t *testing.T) {
	vip := "[vip]\ninterface = \"eth0\"\naddresses = [\"10.0.0.100/24\"]\n"
	cases := map[string]string{
		"no interface":       strings.Replace(vip, "interface = \"eth0\"\n", "", 1),
		"bad address":        strings.Replace(vip, "10.0.0.100/24", "vip", 1),
		"vip is sip address": strings.Replace(vip, "10.0.0.100/24", "10.0.0.1/24", 1),
		"serve aliases":      strings.Replace(vipBase, "[sip]\n", "[sip]\nserve_aliases = true\n", 1) + vip,
		"placement":          vip + "placement = \"random\"\n",
		"prefer unknown":     vip + "prefer = {\"10.0.0.100\" = \"sip9\"}\n",
		"prefer key":         vip + "prefer = {\"vip\" = \"sip1\"}\n",
		"short lease":        vip + "lease = \"200ms\"\n",
		"small margin":       vip + "margin = \"50ms\"\n",
		"garp":               vip + "garp_count = 50\n",
		"typo":               vip + "leese = \"1s\"\n",
		"raft timing":        strings.Replace(vipBase, "[cluster]\n", "[cluster]\nleader_lease_timeout = \"2s\"\n", 1),
		"gossip bind":        strings.Replace(vipBase, "[cluster]\n", "[cluster]\ngossip_bind = \"gossip.example:7001\"\n", 1),
	}
	want := map[string]string{
		"no interface": "vip.interface", "bad address": "vip.addresses", "vip is sip address": "sip.addresses",
		"serve aliases": "serve_aliases", "placement": "vip.placement", "prefer unknown": "vip.prefer", "prefer key": "vip.prefer",
		"short lease": "vip.lease", "small margin": "margin", "garp": "vip.garp_count", "typo": "vip.leese",
		"raft timing": "leader_lease_timeout", "gossip bind": "cluster.gossip_bind",
	}
	for name, text := range cases {
		if !strings.HasPrefix(text, "node_id") {
			text = vipBase + text
		}
		_, err := loadText(t, text)
		if err == nil || !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: error %v, want it to name %s", name, err, want[name])
		}
	}
}

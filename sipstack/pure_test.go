package sipstack

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/sipstack/sipmsg"
)

func TestExpiresFor(t *testing.T) {
	const def, min, max = 3600, 60, 7200
	cases := []struct {
		name      string
		c         sipmsg.ContactSpec
		hdr       int
		hasHdr    bool
		want      int
		wantBrief bool
	}{
		{"default", sipmsg.ContactSpec{}, 0, false, def, false},
		{"header", sipmsg.ContactSpec{}, 600, true, 600, false},
		{"param wins over header", sipmsg.ContactSpec{Expires: 120, HasExpires: true}, 600, true, 120, false},
		{"param 0 removes", sipmsg.ContactSpec{Expires: 0, HasExpires: true}, 600, true, 0, false},
		{"header 0 removes", sipmsg.ContactSpec{}, 0, true, 0, false},
		{"below min", sipmsg.ContactSpec{}, 59, true, 59, true},
		{"param below min", sipmsg.ContactSpec{Expires: 1, HasExpires: true}, 3600, true, 1, true},
		{"at min", sipmsg.ContactSpec{}, 60, true, 60, false},
		{"above max clamped", sipmsg.ContactSpec{}, 100000, true, max, false},
		{"huge clamped", sipmsg.ContactSpec{Expires: math.MaxUint32, HasExpires: true}, 0, false, max, false},
	}
	for _, c := range cases {
		got, brief := expiresFor(c.c, c.hdr, c.hasHdr, def, min, max)
		if got != c.want || brief != c.wantBrief {
			t.Errorf("%s: got %d brief=%v, want %d brief=%v", c.name, got, brief, c.want, c.wantBrief)
		}
	}
	for in, want := range map[string]int{"0": 0, "3600": 3600, " 42 ": 42, "99999999999999999999": math.MaxUint32} {
		if got, ok := sipmsg.ParseDelta(in); !ok || got != want {
			t.Errorf("parseDelta(%q) = %d %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "-1", "1.5", "abc", "0x10", "+5", strings.Repeat("9", 65)} {
		if _, ok := sipmsg.ParseDelta(in); ok {
			t.Errorf("parseDelta(%q) accepted", in)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	base := Config{Addresses: []string{"127.0.0.1"}, UDPPorts: []int{5060}, Registrar: RegistrarConfig{Realm: "troika"}}
	c, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := c.Registrar
	if len(r.Algorithms) != 2 || r.Algorithms[0] != "SHA-256" || r.Algorithms[1] != "MD5" {
		t.Errorf("default algorithms %q", r.Algorithms)
	}
	if r.DefaultExpires != 3600 || r.MinExpires != 60 || r.MaxExpires != 7200 || r.MaxContacts != 10 || r.NonceTTL != 5*time.Minute {
		t.Errorf("defaults: %+v", r)
	}
	if cc := c.Calls; cc.RingTimeout != 60*time.Second || cc.MaxCallSeconds != 14400 || cc.MaxCalls != 10000 || cc.ProposeTimeout != 5*time.Second || cc.AckTimeout != 32*time.Second {
		t.Errorf("call defaults: %+v", cc)
	}
	bad := map[string]func(*Config){
		"no realm":         func(c *Config) { c.Registrar.Realm = "" },
		"quote in realm":   func(c *Config) { c.Registrar.Realm = `a"b` },
		"no address":       func(c *Config) { c.Addresses = nil },
		"bad address":      func(c *Config) { c.Addresses = []string{"example.com"} },
		"no ports":         func(c *Config) { c.UDPPorts = nil },
		"bad port":         func(c *Config) { c.TCPPorts = []int{70000} },
		"tls without cert": func(c *Config) { c.TLSPorts = []int{5061} },
		"bad algorithm":    func(c *Config) { c.Registrar.Algorithms = []string{"SHA-512"} },
		"algorithm twice":  func(c *Config) { c.Registrar.Algorithms = []string{"md5", "MD5"} },
		"min above max":    func(c *Config) { c.Registrar.MinExpires, c.Registrar.MaxExpires = 100, 50 },
		"negative ring":    func(c *Config) { c.Calls.RingTimeout = -time.Second },
		"call too long":    func(c *Config) { c.Calls.MaxCallSeconds = 8 * 24 * 3600 },
		"default below min": func(c *Config) {
			c.Registrar.MinExpires, c.Registrar.DefaultExpires = 100, 50
		},
	}
	for name, mod := range bad {
		c := base
		c.Addresses = append([]string(nil), base.Addresses...)
		mod(&c)
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

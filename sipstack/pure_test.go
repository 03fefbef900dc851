package sipstack

import (
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	base := Config{Addresses: []string{"127.0.0.1"}, UDPPorts: []int{5060}, Registrar: RegistrarConfig{Realm: "troika"}}
	c, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := c.Registrar
	if len(r.Algorithms) != 1 || r.Algorithms[0] != "MD5" {
		t.Errorf("default algorithms %q", r.Algorithms)
	}
	if r.DefaultExpires != 3600 || r.MinExpires != 60 || r.MaxExpires != 7200 || r.MaxContacts != 10 || r.NonceTTL != 5*time.Minute {
		t.Errorf("defaults: %+v", r)
	}
	if cc := c.Calls; cc.RingTimeout != 60*time.Second || cc.MaxCallSeconds != 14400 || cc.MaxCalls != 10000 || cc.ProposeTimeout != 5*time.Second || cc.AckTimeout != 32*time.Second || cc.ReserveChunkSeconds != 0 {
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
		"negative chunk":   func(c *Config) { c.Calls.ReserveChunkSeconds = -60 },
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

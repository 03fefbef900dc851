package billing

import (
	"net/netip"
	"strings"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestTrustedNetworks(t *testing.T) {
	tn, err := ParseTrustedNetworks([]string{"193.148.210.22", "195.111.134.0/24", "2001:db8::/32", "PBX.Example.com.", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	localhost := addrs("127.0.0.1", "::1")
	cases := []struct {
		host  string
		addrs []netip.Addr
		want  bool
	}{
		{"193.148.210.22", addrs("193.148.210.22"), true},
		{"193.148.210.23", addrs("193.148.210.23"), false},
		{"195.111.134.55", addrs("195.111.134.55"), true},
		{"2001:db8::5", addrs("2001:db8::5"), true},
		{"::ffff:193.148.210.22", addrs("::ffff:193.148.210.22"), true},
		{"pbx.example.com", nil, true},                // by name, unresolved
		{"evil.example.com", addrs("1.2.3.4"), false}, // name not listed, address not trusted
		{"127.0.0.1", addrs("127.0.0.1"), true},       // an address of a trusted name (localhost)
		{"127.0.0.2", addrs("127.0.0.2"), false},
		{"sneaky.example", addrs("195.111.134.9"), true}, // an unlisted name resolving into a trusted CIDR
	}
	for _, c := range cases {
		if got := tn.Trusted(c.host, c.addrs, localhost); got != c.want {
			t.Errorf("Trusted(%s, %v) = %v, want %v", c.host, c.addrs, got, c.want)
		}
	}
}

func TestParseTrustedNetworksRefuses(t *testing.T) {
	for _, bad := range []string{"", "300.1.1.1/8", "1.2.3.4/33", "bad_host!", "-x.com", strings.Repeat("a", 64) + ".com", "a b"} {
		if _, err := ParseTrustedNetworks([]string{"1.1.1.1", bad}); err == nil || !strings.Contains(err.Error(), "entry 1") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestInternal(t *testing.T) {
	for a, want := range map[string]bool{"127.0.0.5": true, "10.1.2.3": true, "192.168.1.1": true, "172.16.0.1": true,
		"::1": true, "fe80::1": true, "fd00::1": true, "55.55.5.6": false, "193.148.210.22": false, "0.0.0.0": true} {
		if got := Internal(netip.MustParseAddr(a)); got != want {
			t.Errorf("Internal(%s) = %v", a, got)
		}
	}
}

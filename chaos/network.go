//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
)

// The test network: a bridge, a namespace per host with a veth on it, and
// what a test does inside a host's namespace.

// Host is one network namespace on the test subnet: a node's or the
// client's.
type Host struct {
	Name string     // "n1", "client"
	NS   string     // the network namespace, e.g. "tk3fa9c1-n1"
	Addr netip.Addr // its address on eth0
	c    *Cluster
}

// pickSubnet picks 10.X.Y.0/24 overlapping none of the host's addresses
// and routes (the namespaces would not mind, but a human reading logs
// would).
func pickSubnet() (netip.Prefix, error) {
	var used []netip.Prefix
	for _, args := range [][]string{{"-o", "addr"}, {"route", "show", "table", "all"}} {
		out, err := run(context.Background(), "ip", args...)
		if err != nil {
			return netip.Prefix{}, err
		}
		for _, f := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(f); err == nil {
				used = append(used, p.Masked())
			} else if a, err := netip.ParseAddr(f); err == nil {
				used = append(used, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	for range 1000 {
		b := randomBytes(2)
		x := 64 + int(b[0])%190 // 10.64.0.0-10.253.255.255: away from the usual 10.0/10.1 lab nets
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(x), b[1], 0}), 24)
		clash := false
		for _, u := range used {
			if u.Addr().Is4() && u.Bits() > 0 && u.Overlaps(p) {
				clash = true
				break
			}
		}
		if !clash {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("no free 10.X.Y.0/24 subnet")
}

// hostAddr returns the address .n of the test subnet.
func (c *Cluster) hostAddr(n int) netip.Addr {
	a := c.Subnet.Addr().As4()
	a[3] = byte(n)
	return netip.AddrFrom4(a)
}

// SpareAddr returns the i-th address (0-49) of the test subnet that no
// namespace holds: 10.X.Y.100+i, for virtual IPs and aliases.
func (c *Cluster) SpareAddr(i int) netip.Addr {
	if i < 0 || i > 49 {
		panic("chaos: SpareAddr index out of 0-49")
	}
	return c.hostAddr(100 + i)
}

// buildNetwork makes the switch, node and client namespaces.
func (c *Cluster) buildNetwork() error {
	c.Switch = c.ID + "-sw"
	if err := c.addNetns(c.Switch); err != nil {
		return err
	}
	if err := ipBatch(
		[]string{"-n", c.Switch, "link", "add", "br0", "type", "bridge"},
		[]string{"-n", c.Switch, "link", "set", "br0", "up"},
	); err != nil {
		return err
	}
	for i := range c.opts.Nodes {
		name := fmt.Sprintf("n%d", i+1)
		h, err := c.addHost(name, name, c.hostAddr(11+i))
		if err != nil {
			return err
		}
		n := &Node{Host: *h, Index: i + 1, Binary: c.opts.Binary}
		n.DataDir = filepath.Join(c.Dir, name, "data")
		n.ConfigPath = filepath.Join(c.Dir, name+".toml")
		n.LogPath = filepath.Join(c.Dir, name+".log")
		n.initAdmin()
		c.Nodes = append(c.Nodes, n)
	}
	var err error
	if c.Client, err = c.addHost("client", "cl", c.hostAddr(200)); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		for k, v := range c.opts.Sysctls {
			if _, err := n.Exec(context.Background(), "sysctl", "-qw", k+"="+v); err != nil {
				return err
			}
		}
	}
	return nil
}

func ipBatch(cmds ...[]string) error {
	for _, args := range cmds {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) addNetns(ns string) error {
	if err := ip("netns", "add", ns); err != nil {
		return err
	}
	c.mu.Lock()
	c.namespace = append(c.namespace, ns)
	c.mu.Unlock()
	return ip("-n", ns, "link", "set", "lo", "up")
}

// addHost makes namespace ID-short with eth0 (addr/24) plugged into the
// switch's bridge as port short.
func (c *Cluster) addHost(name, short string, addr netip.Addr) (*Host, error) {
	h := &Host{Name: name, NS: c.ID + "-" + short, Addr: addr, c: c}
	if err := c.addNetns(h.NS); err != nil {
		return nil, err
	}
	return h, ipBatch(
		[]string{"-n", h.NS, "link", "add", Iface, "type", "veth", "peer", "name", short, "netns", c.Switch},
		[]string{"-n", h.NS, "addr", "add", netip.PrefixFrom(addr, c.Subnet.Bits()).String(), "dev", Iface},
		[]string{"-n", h.NS, "link", "set", "dev", Iface, "up"},
		[]string{"-n", c.Switch, "link", "set", "dev", short, "master", "br0"},
		[]string{"-n", c.Switch, "link", "set", "dev", short, "up"},
	)
}

// Exec runs a command inside the host's namespace (`ip netns exec NS
// ...`) and returns its combined output.
func (h *Host) Exec(ctx context.Context, name string, args ...string) (string, error) {
	return run(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Dial opens a connection from inside the host's namespace.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, h.NS, network, addr)
}

// ListenPacket opens a packet socket (e.g. "udp4", ":9999") inside the
// host's namespace: a stand-in server or a probe.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	return openIn(h.NS, func() (net.PacketConn, error) { return net.ListenPacket(network, addr) })
}

// Listen opens a stream listener inside the host's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	return openIn(h.NS, func() (net.Listener, error) { return net.Listen(network, addr) })
}

// AddAddr adds a/32 (a/128) to the host's Iface, by hand (ip addr add),
// and records it in the timeline.
func (h *Host) AddAddr(a netip.Addr) error {
	err := ip("-n", h.NS, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", Iface)
	h.c.event(h.Name, "addr-add", a.String())
	return err
}

// DelAddr removes an address AddAddr added.
func (h *Host) DelAddr(a netip.Addr) error {
	err := ip("-n", h.NS, "addr", "del", netip.PrefixFrom(a, a.BitLen()).String(), "dev", Iface)
	h.c.event(h.Name, "addr-del", a.String())
	return err
}

//go:build linux

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// The VIP runs (vip_test.go, the scenarios) run the nodes with a [vip]
// section: the main virtual IP is 10.X.Y.100/24 on eth0 and an alias,
// 10.X.Y.150, is added through the admin API (with an extra UDP port).
// The addresses are put where the leader's placement says, by the nodes
// themselves (netlink, gratuitous ARP), and the harness's sampler watches
// every namespace's addresses.

// vipLease is the nodes' vip.lease (the default).
const vipLease = time.Second

// vipAddr is the main virtual IP of the cluster node n belongs to.
func vipAddr(n netip.Addr) netip.Addr {
	a := n.As4()
	a[3] = 100
	return netip.AddrFrom4(a)
}

// aliasAddr is the IP alias of the cluster node n belongs to.
func aliasAddr(n netip.Addr) netip.Addr {
	a := n.As4()
	a[3] = 150
	return netip.AddrFrom4(a)
}

// aliasExtraPort is the alias's extra UDP port.
const aliasExtraPort = 5070

// vipConfig adds the [vip] section: the virtual IP on Iface.
func vipConfig(n *Node, cfg TOML) {
	cfg.Set("vip.interface", Iface)
	cfg.Set("vip.addresses", []string{vipAddr(n.Addr).String() + "/24"})
}

func vipOptions() Options { return Options{Config: vipConfig} }

// nodeView is the part of a node's GET /v1/cluster the VIP runs read.
type nodeView struct {
	Members []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"members"`
	Addresses []struct {
		IP       string `json:"ip"`
		Kind     string `json:"kind"`
		Node     string `json:"node"`
		Epoch    uint64 `json:"epoch"`
		HeldByMe bool   `json:"held_by_me"`
		State    string `json:"state"`
	} `json:"addresses"`
}

func view(n *Node) (nodeView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := n.Status(ctx)
	if err != nil {
		return nodeView{}, err
	}
	var v nodeView
	err = json.Unmarshal(s.Raw, &v)
	return v, err
}

// memberState is what node n's gossip says of member id.
func memberState(n *Node, id string) string {
	v, err := view(n)
	if err != nil {
		return ""
	}
	for _, m := range v.Members {
		if m.ID == id {
			return m.State
		}
	}
	return "unknown"
}

// WaitSoleHolder waits until exactly one namespace holds a, a node that
// is not one of not, and returns that node and when it was seen.
func (c *Cluster) WaitSoleHolder(a netip.Addr, timeout time.Duration, not ...*Node) (*Node, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if h := c.Holders(a); len(h) == 1 {
			if n := c.Node(h[0]); n != nil && !slices.Contains(not, n) {
				return n, time.Now(), nil
			}
		}
		if time.Now().After(deadline) {
			return nil, time.Time{}, fmt.Errorf("%s: held by %v after %v, want exactly one node (not %s)", a, c.Holders(a), timeout, names(not))
		}
		time.Sleep(SampleEvery / 2)
	}
}

func sipAddr(a netip.Addr, port int) string { return net.JoinHostPort(a.String(), strconv.Itoa(port)) }

package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
	"github.com/troika-sip/troika/sipstack"
	"github.com/troika-sip/troika/sipstack/transport"
)

// The NAT keepalive's configuration ([registrar] keepalive_*) and its
// part of the admin API's registrations (docs/keepalive.md).

// Defaults of the keepalive keys.
const (
	DefaultKeepaliveInterval     = 30 * time.Second
	DefaultKeepaliveTimeout      = 5 * time.Second
	DefaultKeepaliveFailures     = 3
	DefaultKeepaliveMaxPerSecond = 2000
)

func (c *Config) applyKeepaliveDefaults() {
	r := &c.Registrar
	if r.KeepaliveInterval == nil {
		d := DefaultKeepaliveInterval
		r.KeepaliveInterval = &d
	}
	if r.KeepaliveTimeout == 0 {
		r.KeepaliveTimeout = min(DefaultKeepaliveTimeout, *r.KeepaliveInterval)
	}
	if r.KeepaliveFailures == 0 {
		r.KeepaliveFailures = DefaultKeepaliveFailures
	}
	if r.KeepaliveMaxPerSecond == 0 {
		r.KeepaliveMaxPerSecond = DefaultKeepaliveMaxPerSecond
	}
}

func (c *Config) validateKeepalive() error {
	r := c.Registrar
	iv := DefaultKeepaliveInterval
	if r.KeepaliveInterval != nil {
		iv = *r.KeepaliveInterval
	}
	switch {
	case iv != 0 && (iv < time.Second || iv > time.Hour):
		return errors.New(`registrar.keepalive_interval: "0" (off) or between "1s" and "1h" (default "30s")`)
	case iv == 0:
		return nil
	case r.KeepaliveTimeout < 100*time.Millisecond || r.KeepaliveTimeout > iv:
		return errors.New(`registrar.keepalive_timeout: between "100ms" and keepalive_interval (default "5s")`)
	case r.KeepaliveFailures < 1 || r.KeepaliveFailures > 100:
		return errors.New("registrar.keepalive_failures: unanswered pings in a row before a phone is unreachable, 1-100 (default 3)")
	case r.KeepaliveMaxPerSecond < 1:
		return errors.New("registrar.keepalive_max_per_second: at least 1 (default 2000)")
	}
	return nil
}

// keepaliveConfig is the SIP server's keepalive.
func (c *Config) keepaliveConfig() sipstack.KeepaliveConfig {
	r := c.Registrar
	if r.KeepaliveInterval == nil || *r.KeepaliveInterval == 0 {
		return sipstack.KeepaliveConfig{}
	}
	return sipstack.KeepaliveConfig{Interval: *r.KeepaliveInterval, Timeout: r.KeepaliveTimeout, Failures: r.KeepaliveFailures,
		RemoveUnreachable: r.KeepaliveRemoveUnreachable, MaxPerSecond: r.KeepaliveMaxPerSecond}
}

// keepaliveSummary says what the keepalive does, for troika agent --check.
func (c *Config) keepaliveSummary() string {
	k := c.keepaliveConfig()
	if k.Interval == 0 {
		return "NAT keepalive: off (registrar.keepalive_interval = \"0\")"
	}
	remove := "kept"
	if k.RemoveUnreachable {
		remove = "removed"
	}
	return fmt.Sprintf("NAT keepalive: OPTIONS every %s to the phones registered through the addresses this node holds, "+
		"unreachable after %d unanswered (%s each), then %s; at most %d a second", k.Interval, k.Failures, k.Timeout, remove, k.MaxPerSecond)
}

// keepaliveViews tells the admin API, for each binding, which node pings
// it (the holder of its ingress socket) and, for those this node pings,
// whether the phone answers.
func (n *Node) keepaliveViews(bs []fsm.Binding) []admin.KeepaliveView {
	out := make([]admin.KeepaliveView, len(bs))
	if n.cfg.keepaliveConfig().Interval == 0 {
		return out
	}
	held := map[string]bool{}
	for _, s := range n.sip.Sockets() {
		held[s] = true
	}
	for i, b := range bs {
		if s, ok := n.sip.KeepaliveStatus(b); ok {
			out[i] = admin.KeepaliveView{Node: n.cfg.NodeID, Known: true, Reachable: s.Reachable, LastSeen: s.LastSeen}
			continue
		}
		out[i].Node = n.socketHolder(b.Ingress, held)
	}
	return out
}

// socketHolder names the node holding the socket called name, "" when
// none is known.
func (n *Node) socketHolder(name string, held map[string]bool) string {
	if held[name] {
		return n.cfg.NodeID
	}
	if n.dispatch != nil {
		node, _ := n.dispatch.Holder(name)
		return node
	}
	if ap, err := transport.ParseSocketName(name); err == nil {
		if a, ok := n.state.Assignment(ap.Addr().String()); ok {
			return a.Node
		}
	}
	return ""
}

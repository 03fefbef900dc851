//go:build linux

package chaos

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/troika-sip/troika/internal/certs"
)

// TOML is a node's configuration file as nested maps: only the keys set
// here are written, so a configuration stays loadable by an older binary
// (rolling upgrades) as long as the test sets no key that binary lacks.
type TOML map[string]any

// Set sets a key given as a dotted path, creating tables on the way:
// Set("sip.addresses", []string{"10.1.2.100"}).
func (t TOML) Set(key string, v any) {
	parts := strings.Split(key, ".")
	m := map[string]any(t)
	for _, p := range parts[:len(parts)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			if s, ok := m[p].(TOML); ok {
				sub = s
			} else {
				sub = map[string]any{}
				m[p] = sub
			}
		}
		m = sub
	}
	m[parts[len(parts)-1]] = v
}

// Get returns the value at a dotted path, or nil.
func (t TOML) Get(key string) any {
	var cur any = map[string]any(t)
	for _, p := range strings.Split(key, ".") {
		switch m := cur.(type) {
		case map[string]any:
			cur = m[p]
		case TOML:
			cur = m[p]
		default:
			return nil
		}
	}
	return cur
}

// Delete removes the key at a dotted path, and the tables it leaves empty.
func (t TOML) Delete(key string) {
	parts := strings.Split(key, ".")
	var del func(m map[string]any, parts []string)
	del = func(m map[string]any, parts []string) {
		if len(parts) == 1 {
			delete(m, parts[0])
			return
		}
		sub, ok := m[parts[0]].(map[string]any)
		if !ok {
			if s, ok2 := m[parts[0]].(TOML); ok2 {
				sub, ok = s, true
			}
		}
		if !ok {
			return
		}
		del(sub, parts[1:])
		if len(sub) == 0 {
			delete(m, parts[0])
		}
	}
	del(t, parts)
}

// Encode renders the configuration as TOML.
func (t TOML) Encode() ([]byte, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(map[string]any(t)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// baseConfig is the generated configuration of node n.
func (c *Cluster) baseConfig(n *Node) TOML {
	peers := make([]string, len(c.Nodes))
	for i, p := range c.Nodes {
		peers[i] = fmt.Sprintf("%s=%s", p.Name, p.ClusterAddr())
	}
	cfg := TOML{}
	cfg.Set("node_id", n.Name)
	cfg.Set("data_dir", n.DataDir)
	cfg.Set("log_level", c.opts.LogLevel)
	cfg.Set("log_format", "text") // the run directory's logs are read by people
	cfg.Set("cluster.bind", n.ClusterAddr())
	cfg.Set("cluster.key", c.clusterKey)
	cfg.Set("cluster.peers", peers)
	cfg.Set("sip.addresses", []string{n.Addr.String()})
	cfg.Set("admin.listen", n.APIAddr())
	cfg.Set("admin.token", c.Token)
	if !c.opts.PlaintextCluster {
		cfg.Set("cluster.tls.ca_file", filepath.Join(c.TLSDir, certs.CACertFile))
		cfg.Set("cluster.tls.cert_file", filepath.Join(c.TLSDir, certs.NodeCertFile(n.Name)))
		cfg.Set("cluster.tls.key_file", filepath.Join(c.TLSDir, certs.NodeKeyFile(n.Name)))
	}
	return cfg
}

// makeCerts makes the run's cluster CA and a certificate for each node
// (naming it, with its address) in RUN_DIR/tls, as `troika cert` would.
func (c *Cluster) makeCerts() error {
	c.TLSDir = filepath.Join(c.Dir, "tls")
	ca, err := certs.NewCA("chaos "+c.ID+" CA", time.Now(), 7*24*time.Hour)
	if err != nil {
		return err
	}
	if err := certs.WriteCA(c.TLSDir, ca, false); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		is, err := ca.IssueNode(certs.NodeRequest{NodeID: n.Name, IPs: []net.IP{n.Addr.AsSlice()}})
		if err != nil {
			return err
		}
		if _, _, err := certs.WriteNode(c.TLSDir, n.Name, is, false); err != nil {
			return err
		}
	}
	return nil
}

// writeConfig (re)writes node n's configuration file from the generated
// one and Options.Config.
func (c *Cluster) writeConfig(n *Node) error {
	cfg := c.baseConfig(n)
	if c.opts.Config != nil {
		c.opts.Config(n, cfg)
	}
	data, err := cfg.Encode()
	if err != nil {
		return fmt.Errorf("%s: configuration: %w", n.Name, err)
	}
	return os.WriteFile(n.ConfigPath, data, 0o600)
}

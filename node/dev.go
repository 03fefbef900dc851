package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
)

// DevOptions are the knobs of `troika dev`: a single node with demo data,
// on loopback, needing no root and no configuration file.
type DevOptions struct {
	DataDir      string // empty: a temporary directory removed at exit
	SIPAddress   string // main address, default 127.0.0.1
	SIPPort      int    // UDP and TCP, default 5060
	AliasAddress string // demo alias, default 127.0.0.2 ("" after "none" disables it)
	AliasUDPPort int    // the alias's extra UDP port, default 5070
	AdminListen  string // default 127.0.0.1:8080
	ClusterBind  string // default 127.0.0.1:0
	LogLevel     string // debug, info (the default), warn or error
	// Keepalive is the NAT keepalive's interval (registrar.keepalive_interval);
	// nil: the default, 0: off.
	Keepalive *time.Duration
	// Algorithms are the digest algorithms offered (registrar.algorithms);
	// empty: MD5 alone.
	Algorithms []string
	// SIPTLSPort is SIP over TLS on the main address and the alias, with
	// the dev node's certificate (DevConfig); 0: no TLS socket (the
	// CLI's default is 5061).
	SIPTLSPort int
}

// DevReadTokenName names the read-only token of a dev node.
const DevReadTokenName = "dev-read"

// DevConfig turns dev options into a node configuration: plain HTTP on
// loopback, an admin token and a read-only one (DevReadTokenName). The
// tokens are kept in the data directory so they survive restarts with
// -data; the cluster port runs TLS with a throwaway CA and node
// certificate made afresh in <data>/dev-tls at every start, and the SIP
// TLS sockets (SIPTLSPort) show that certificate too.
func DevConfig(o DevOptions) (Config, error) {
	if o.SIPAddress == "" {
		o.SIPAddress = "127.0.0.1"
	}
	if o.SIPPort == 0 {
		o.SIPPort = 5060
	}
	if o.AdminListen == "" {
		o.AdminListen = "127.0.0.1:8080"
	}
	if o.ClusterBind == "" {
		o.ClusterBind = "127.0.0.1:0"
	}
	switch {
	case o.SIPTLSPort < 0 || o.SIPTLSPort > 65535:
		return Config{}, fmt.Errorf("SIP TLS port (--sip-tls-port) %d: give a port from 1 to 65535, or 0 for no TLS socket", o.SIPTLSPort)
	case o.SIPTLSPort != 0 && o.SIPTLSPort == o.SIPPort:
		return Config{}, fmt.Errorf("SIP TLS port (--sip-tls-port) %d: SIP over TCP uses it already (--sip-port): give another one, e.g. %d", o.SIPTLSPort, o.SIPPort+1)
	}
	token, err := devToken(o.DataDir, "dev-admin-token")
	if err != nil {
		return Config{}, err
	}
	readToken, err := devToken(o.DataDir, "dev-read-token")
	if err != nil {
		return Config{}, err
	}
	var sipIPs []net.IP
	for _, a := range []string{o.SIPAddress, o.AliasAddress} {
		if ip := net.ParseIP(a); ip != nil {
			sipIPs = append(sipIPs, ip)
		}
	}
	tls, err := devTLS(filepath.Join(o.DataDir, "dev-tls"), "dev", sipIPs...)
	if err != nil {
		return Config{}, err
	}
	c := Config{
		NodeID:    "dev",
		DataDir:   o.DataDir,
		LogLevel:  o.LogLevel,
		LogFormat: "text",
		Registrar: RegistrarConfig{KeepaliveInterval: o.Keepalive, Algorithms: o.Algorithms},
		Cluster:   ClusterConfig{Bind: o.ClusterBind, Key: RandomToken(32), Bootstrap: true, TLS: tls},
		SIP: SIPConfig{
			Addresses: []string{o.SIPAddress}, UDPPorts: []int{o.SIPPort}, TCPPorts: []int{o.SIPPort},
			ServeAliases: true,
		},
		Admin: AdminConfig{Listen: o.AdminListen, Token: token,
			Tokens: []AdminToken{{Name: DevReadTokenName, Scope: string(admin.ScopeRead), Token: readToken}}},
	}
	if o.SIPTLSPort != 0 {
		c.SIP.TLSPorts, c.SIP.TLSCert, c.SIP.TLSKey = []int{o.SIPTLSPort}, tls.CertFile, tls.KeyFile
	}
	c.applyDefaults()
	return c, c.Validate()
}

// devToken reads the token kept in the file name of the data directory,
// or makes one and keeps it there.
func devToken(dataDir, name string) (string, error) {
	file := filepath.Join(dataDir, name)
	token, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		token = []byte(RandomToken(18))
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return "", err
		}
		err = os.WriteFile(file, token, 0o600)
	}
	if err != nil {
		return "", fmt.Errorf("dev token %s: %w", name, err)
	}
	return strings.TrimSpace(string(token)), nil
}

// DevReadToken is the read-only token of a dev configuration.
func (c Config) DevReadToken() string {
	for _, t := range c.Admin.Tokens {
		if t.Name == DevReadTokenName {
			return t.Token
		}
	}
	return ""
}

// DemoAccount is a demo account with its password, for the start banner.
type DemoAccount struct{ ID, Password string }

// SeedDemo stores the demo tariff, the accounts 1001 and 1002 and the demo
// alias unless the state already has accounts (a restarted dev node keeps
// what it had). It returns the demo accounts and their passwords.
func (n *Node) SeedDemo(ctx context.Context, o DevOptions) ([]DemoAccount, error) {
	if err := n.cluster.WaitLeader(ctx); err != nil {
		return nil, err
	}
	// The first leader stores the nonce secret; wait for it so the banner
	// appears when REGISTERs can succeed.
	for n.state.NonceSecret() == nil {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	passwords := map[string]string{}
	if n.state.Counts().Accounts == 0 {
		passwords["1001"], passwords["1002"] = admin.GeneratePassword("1001"), admin.GeneratePassword("1002")
		now := time.Now().UnixMilli()
		cmds := []fsm.Command{
			&fsm.PutTariff{Tariff: fsm.Tariff{ID: "demo", Currency: "USD", Rates: []fsm.Rate{
				{Prefix: "", PerMinute: 100_000, FirstInterval: 60, NextInterval: 60},
				{Prefix: "1", PerMinute: 20_000, ConnectFee: 10_000, FirstInterval: 1, NextInterval: 1, FreeSeconds: 5},
			}}},
			&fsm.CreateAccounts{Now: now, Accounts: []fsm.Account{
				{ID: "1001", Credentials: fsm.Credentials{Legacy: passwords["1001"]}, Billing: fsm.Prepaid, Balance: 10_000_000, TariffOut: "demo", TariffIn: "demo"},
				{ID: "1002", Credentials: fsm.Credentials{Legacy: passwords["1002"]}, Billing: fsm.Prepaid, Balance: 10_000_000, TariffOut: "demo", TariffIn: "demo"},
			}},
		}
		if o.AliasAddress != "" {
			cmds = append(cmds, &fsm.PutAlias{Alias: fsm.Alias{IP: o.AliasAddress, Ports: fsm.AliasPorts{UDP: []int{o.AliasUDPPort}}}})
		}
		for _, c := range cmds {
			res, err := n.Propose(ctx, c) // hashes the passwords

			if err == nil && res.Err != nil {
				err = res.Err
			}
			if err != nil {
				return nil, fmt.Errorf("store demo data: %w", err)
			}
		}
	}
	// Only digest credentials are stored: a restarted node no longer
	// knows the passwords it printed when it made the accounts.
	var out []DemoAccount
	for _, id := range []string{"1001", "1002"} {
		if _, ok := n.state.Account(id); ok {
			out = append(out, DemoAccount{ID: id, Password: passwords[id]})
		}
	}
	return out, nil
}

// Command troika is the troika softswitch: `troika agent` runs a node,
// `troika dev` a single demo node, and the other subcommands manage a
// running switch through its admin API.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		var ae *admin.APIError
		if errors.As(err, &ae) && ae.Status == 401 {
			fmt.Fprintln(os.Stderr, "hint: set TROIKA_TOKEN (or --token) to the token the node printed at start")
		}
		os.Exit(1)
	}
}

// apiFlags are the flags of every subcommand that talks to a node.
type apiFlags struct {
	addr, token, output string
}

func (f *apiFlags) client() *admin.Client { return admin.NewClient(f.addr, f.token) }

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "troika",
		Short:         "troika: a clustered high-availability SIP softswitch",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       node.Version,
	}
	api := &apiFlags{}
	pf := root.PersistentFlags()
	pf.StringVar(&api.addr, "api", envOr("TROIKA_API", "http://127.0.0.1:8080"), "admin API of a node (env TROIKA_API)")
	pf.StringVar(&api.token, "token", os.Getenv("TROIKA_TOKEN"), "admin API bearer token (env TROIKA_TOKEN)")
	pf.StringVarP(&api.output, "output", "o", "table", "output format: table or json")

	root.AddCommand(agentCmd(), devCmd(), accountCmd(api), tariffCmd(api), policyCmd(api), vendorCmd(api), connectionCmd(api),
		aliasCmd(api), registrationCmd(api), callCmd(api), xdrCmd(api), clusterCmd(api), drainCmd(api))
	return root
}

func envOr(key, dflt string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return dflt
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func agentCmd() *cobra.Command {
	var configPath string
	var dev bool
	var devOpts node.DevOptions
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a troika node",
		Long:  "Run a troika node from a configuration file (see deploy/troika.example.toml), or with -dev a single demo node.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dev {
				return runDev(cmd.Context(), devOpts)
			}
			if configPath == "" {
				return errors.New("agent needs --config FILE (or --dev for a demo node)")
			}
			cfg, err := node.LoadConfig(configPath)
			if err != nil {
				return err
			}
			log, err := newLogger(cfg.LogLevel)
			if err != nil {
				return err
			}
			node.ConfigureProcess(log)
			n, err := node.Start(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			return n.Wait()
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "configuration file (TOML)")
	cmd.Flags().BoolVar(&dev, "dev", false, "run a single demo node (same as `troika dev`)")
	addDevFlags(cmd, &devOpts)
	return cmd
}

func devCmd() *cobra.Command {
	var o node.DevOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a single demo node on loopback (no root, no config)",
		Long: `Run one node on loopback with demo data: SIP on 127.0.0.1:5060 (UDP and TCP),
an IP alias 127.0.0.2 with an extra UDP port 5070, the admin API on
127.0.0.1:8080, a demo tariff and accounts 1001 and 1002. The admin token and
the accounts' passwords are printed at start. Data lives in a temporary
directory unless --data is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd.Context(), o) },
	}
	addDevFlags(cmd, &o)
	return cmd
}

func addDevFlags(cmd *cobra.Command, o *node.DevOptions) {
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data", "", "data directory (default: a temporary one, removed at exit)")
	f.StringVar(&o.SIPAddress, "sip-address", "127.0.0.1", "main SIP address")
	f.IntVar(&o.SIPPort, "sip-port", 5060, "main SIP port (UDP and TCP)")
	f.StringVar(&o.AliasAddress, "alias", "127.0.0.2", `demo IP alias ("" for none)`)
	f.IntVar(&o.AliasUDPPort, "alias-udp-port", 5070, "the demo alias's extra UDP port")
	f.StringVar(&o.AdminListen, "admin", "127.0.0.1:8080", "admin API listen address")
}

func runDev(ctx context.Context, o node.DevOptions) error {
	log, _ := newLogger("info")
	if o.DataDir == "" {
		dir, err := os.MkdirTemp("", "troika-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.DataDir = dir
	}
	cfg, err := node.DevConfig(o)
	if err != nil {
		return err
	}
	node.ConfigureProcess(log)
	n, err := node.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	demo, err := n.SeedDemo(ctx, o)
	if err != nil {
		return err
	}
	if o.AliasAddress != "" {
		if err := n.WaitSocket(ctx, fmt.Sprintf("udp:%s:%d", o.AliasAddress, o.AliasUDPPort)); err != nil {
			return err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ntroika dev node is up (data in %s)\n", o.DataDir)
	fmt.Fprintf(&b, "  SIP sockets:  %s\n", strings.Join(n.Sockets(), ", "))
	fmt.Fprintf(&b, "  admin API:    http://%s\n", n.AdminAddr())
	fmt.Fprintf(&b, "  admin token:  export TROIKA_API=http://%s TROIKA_TOKEN=%s\n", n.AdminAddr(), cfg.Admin.Token)
	for _, a := range demo {
		if a.Password == "" {
			fmt.Fprintf(&b, "  account %s:  password as printed when %s was made (only its digest is stored; "+
				"`troika account update %s --password-file F` sets a new one)\n", a.ID, o.DataDir, a.ID)
			continue
		}
		fmt.Fprintf(&b, "  account %s:  password %s (realm %s)\n", a.ID, a.Password, cfg.Registrar.Realm)
	}
	fmt.Fprintf(&b, "Register a phone to sip:1001@%s:%d (or via the alias %s:%d); Ctrl-C stops.\n\n",
		cfg.SIP.Addresses[0], cfg.SIP.UDPPorts[0], o.AliasAddress, o.AliasUDPPort)
	fmt.Print(b.String())
	return n.Wait()
}

// Command troika is the troika softswitch: `troika agent` runs a node,
// `troika dev` a single demo node, and the other subcommands manage a
// running switch through its admin API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		if hint := errorHint(err); hint != "" {
			fmt.Fprintln(os.Stderr, "hint:", hint)
		}
		os.Exit(exitCode(err))
	}
}

// errorHint says what to do about an API error the message alone may not
// explain.
func errorHint(err error) string {
	var ae *admin.APIError
	if !errors.As(err, &ae) {
		return ""
	}
	switch {
	case ae.Status == http.StatusUnauthorized:
		return "set TROIKA_TOKEN (or --token-file) to a token of the node: the one it printed at start, or one of its admin.tokens"
	case ae.Status == http.StatusForbidden && strings.HasPrefix(ae.Msg, "this token is read-only"):
		return "this needs a token of scope admin: set TROIKA_TOKEN (or --token-file) to one"
	case ae.Status == http.StatusBadRequest && strings.Contains(ae.Msg, "HTTPS server"):
		return "the node serves the API over TLS: use https:// in --api (TROIKA_API), with --ca-file (TROIKA_CA_FILE) if a private CA signed its certificate"
	}
	return ""
}

// apiFlags are the flags of every subcommand that talks to a node. The
// environment variables they fall back on are read when the command
// runs, never shown as defaults: a token would appear in every --help.
type apiFlags struct {
	addr, token, tokenFile, caFile, clientCert, clientKey, output string
	c                                                             *admin.Client
}

// API flags' environment variables and defaults.
const (
	envAPI        = "TROIKA_API"
	envToken      = "TROIKA_TOKEN"
	envTokenFile  = "TROIKA_TOKEN_FILE"
	envCAFile     = "TROIKA_CA_FILE"
	envClientCert = "TROIKA_CLIENT_CERT"
	envClientKey  = "TROIKA_CLIENT_KEY"
	defaultAPI    = "http://127.0.0.1:8080"
)

// usesAPI marks the commands (and their subcommands) that talk to a node.
const usesAPI = "troika/api"

// client is the API client connect made.
func (f *apiFlags) client() *admin.Client { return f.c }

// connect makes the client from the flags, or the environment for those
// not given. A token given on the command line is visible to every user
// of the host (ps): warn.
func (f *apiFlags) connect(changed func(flag string) bool, stderr io.Writer) error {
	pick := func(flag, value, env string) string {
		if changed(flag) {
			return value
		}
		return os.Getenv(env)
	}
	addr := pick("api", f.addr, envAPI)
	if addr == "" {
		addr = defaultAPI
	}
	// --token, --token-file, TROIKA_TOKEN, TROIKA_TOKEN_FILE: the first given.
	token, tokenFile := f.token, ""
	switch {
	case changed("token"):
		fmt.Fprintln(stderr, "warning: --token is visible to other users of this host (ps); prefer TROIKA_TOKEN or --token-file")
	case changed("token-file"):
		tokenFile = f.tokenFile
	case os.Getenv(envToken) != "":
		token = os.Getenv(envToken)
	default:
		tokenFile = os.Getenv(envTokenFile)
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file (TROIKA_TOKEN_FILE): %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	t := admin.ClientTLS{
		CAFile:   pick("ca-file", f.caFile, envCAFile),
		CertFile: pick("client-cert", f.clientCert, envClientCert),
		KeyFile:  pick("client-key", f.clientKey, envClientKey),
	}
	if t == (admin.ClientTLS{}) && !strings.HasPrefix(addr, "https://") {
		f.c = admin.NewClient(addr, token)
		f.c.Stale = staleWarning(addr, stderr)
		return nil
	}
	c, err := admin.NewClientTLS(addr, token, t)
	if err != nil {
		return fmt.Errorf("--api %s: %w (flags --ca-file, --client-cert, --client-key; env %s, %s, %s)", addr, err, envCAFile, envClientCert, envClientKey)
	}
	f.c = c
	f.c.Stale = staleWarning(addr, stderr)
	return nil
}

// staleWarning warns once, on stderr, that the node answered while it
// knew no raft leader.
func staleWarning(addr string, stderr io.Writer) func(method, path string) {
	warned := false
	return func(method, path string) {
		if !warned {
			warned = true
			fmt.Fprintf(stderr, "warning: %s knows no raft leader (no quorum, or it is cut off): its answer may be stale\n", addr)
		}
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "troika",
		Short:         "troika: a clustered high-availability SIP softswitch",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       node.Build().String(),
	}
	root.SetVersionTemplate("troika {{.Version}}\n")
	api := &apiFlags{}
	pf := root.PersistentFlags()
	pf.StringVar(&api.addr, "api", "", "admin API of a node: https://HOST:PORT, or http:// (env TROIKA_API; default "+defaultAPI+")")
	pf.StringVar(&api.token, "token", "", "admin API bearer token (env TROIKA_TOKEN, preferred: a flag is visible in ps)")
	pf.StringVar(&api.tokenFile, "token-file", "", "file holding the admin API bearer token (env TROIKA_TOKEN_FILE)")
	pf.StringVar(&api.caFile, "ca-file", "", "CA certificates (PEM) that signed the node's certificate, for https (env TROIKA_CA_FILE; default the system's)")
	pf.StringVar(&api.clientCert, "client-cert", "", "client certificate (PEM), for a node that asks for one (env TROIKA_CLIENT_CERT)")
	pf.StringVar(&api.clientKey, "client-key", "", "the client certificate's key (PEM) (env TROIKA_CLIENT_KEY)")
	pf.StringVarP(&api.output, "output", "o", "table", "output format: table or json")
	root.MarkFlagsMutuallyExclusive("token", "token-file")

	apiCmds := []*cobra.Command{accountCmd(api), tariffCmd(api), policyCmd(api), vendorCmd(api), connectionCmd(api),
		aliasCmd(api), registrationCmd(api), callCmd(api), xdrCmd(api), clusterCmd(api), drainCmd(api), logLevelCmd(api), authCmd(api),
		operatorCmd(api)}
	for _, c := range apiCmds {
		c.Annotations = map[string]string{usesAPI: "true"}
	}
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		for c := cmd; c != nil; c = c.Parent() {
			if c.Annotations[usesAPI] != "" {
				return api.connect(cmd.Flags().Changed, cmd.ErrOrStderr())
			}
		}
		return nil
	}
	root.AddCommand(agentCmd(), devCmd(), certCmd(), snapshotCmd(api))
	root.AddCommand(apiCmds...)
	root.Long = root.Short + "\n\n" + exitCodesHelp
	strictCommands(root)
	return root
}

// newLogger returns the process's logger, writing to stderr in format at
// level, and the level's variable (which the admin API and SIGHUP change).
func newLogger(level, format string) (*slog.Logger, *slog.LevelVar, error) {
	l, err := node.ParseLogLevel(level)
	if err != nil {
		return nil, nil, fmt.Errorf("log level: %w", err)
	}
	v := new(slog.LevelVar)
	v.Set(l)
	log, err := node.NewLogger(os.Stderr, format, v)
	return log, v, err
}

// durationPtr is a flag setting a *time.Duration only when given.
type durationPtr struct{ p **time.Duration }

func (d durationPtr) String() string {
	if d.p == nil || *d.p == nil {
		return ""
	}
	return (**d.p).String()
}

func (d durationPtr) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d.p = &v
	return nil
}

func (durationPtr) Type() string { return "duration" }

// reloadLogLevelOnHUP sets the log level from the configuration file at
// path on every SIGHUP, until ctx ends.
func reloadLogLevelOnHUP(ctx context.Context, path string, level *slog.LevelVar, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			cfg, err := node.LoadConfig(path)
			if err != nil {
				log.Error("SIGHUP: configuration not reloaded; the log level stays", "file", path, "error", err, "level", level.Level())
				continue
			}
			l, _ := node.ParseLogLevel(cfg.LogLevel)
			before := level.Level()
			level.Set(l)
			log.Warn("SIGHUP: log level reloaded from the configuration file", "file", path, "from", before, "to", l)
		}
	}()
}

func agentCmd() *cobra.Command {
	var configPath string
	var dev, check bool
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
			if check {
				lines, err := cfg.Check(time.Now())
				if err != nil {
					return fmt.Errorf("%s: %w", configPath, err)
				}
				for _, l := range lines {
					fmt.Fprintln(cmd.OutOrStdout(), l)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration OK (nothing was started)\n", configPath)
				return nil
			}
			log, level, err := newLogger(cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return err
			}
			cfg.LogLevelVar = level
			reloadLogLevelOnHUP(cmd.Context(), configPath, level, log)
			node.ConfigureProcess(log)
			if err := node.ConfigureRuntime(cmd.Context(), cfg.Runtime, log); err != nil {
				return err
			}
			n, err := node.Start(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			return n.Wait()
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "configuration file (TOML)")
	cmd.Flags().BoolVar(&check, "check", false, "check the configuration and its files, print what the node would do (addresses it would take, peers, ports), start nothing")
	cmd.Flags().BoolVar(&dev, "dev", false, "run a single demo node (same as `troika dev`)")
	addDevFlags(cmd, &devOpts)
	return cmd
}

func devCmd() *cobra.Command {
	var o node.DevOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a single demo node on loopback (no root, no config)",
		Long: `Run one node on loopback with demo data: SIP on 127.0.0.1:5060 (UDP and TCP)
and 5061 (TLS, with a certificate made at start, its path printed), an IP
alias 127.0.0.2 on the same ports and an extra UDP port 5070, the admin API on
127.0.0.1:8080 (plain HTTP, as it is on loopback), a demo tariff and accounts
1001 and 1002. An admin token, a read-only token and the accounts' passwords
are printed at start. Data lives in a temporary directory unless --data is
given.`,
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
	f.StringSliceVar(&o.Algorithms, "algorithms", nil, `digest algorithms offered, in order: MD5 (the default, which every phone accepts), SHA-256, or "SHA-256,MD5"`)
	f.Var(durationPtr{&o.Keepalive}, "keepalive", "NAT keepalive interval: OPTIONS to every registered phone this often (0 turns it off; default 30s)")
	f.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error (`troika log-level` changes it while the node runs)")
	f.IntVar(&o.SIPTLSPort, "sip-tls-port", 5061, "SIP over TLS on the main address and the alias, with a generated certificate (0: none)")
}

func runDev(ctx context.Context, o node.DevOptions) error {
	log, level, err := newLogger(o.LogLevel, "text")
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
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
	cfg.LogLevelVar = level
	node.ConfigureProcess(log)
	if err := node.ConfigureRuntime(ctx, cfg.Runtime, log); err != nil {
		return err
	}
	n, err := node.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	demo, err := n.SeedDemo(ctx, o)
	if err != nil {
		return err
	}
	if o.AliasAddress != "" {
		want := []string{fmt.Sprintf("udp:%s:%d", o.AliasAddress, o.AliasUDPPort)}
		if o.SIPTLSPort != 0 {
			want = append(want, fmt.Sprintf("tls:%s:%d", o.AliasAddress, o.SIPTLSPort))
		}
		for _, s := range want {
			if err := n.WaitSocket(ctx, s); err != nil {
				return err
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ntroika dev node is up (data in %s)\n", o.DataDir)
	fmt.Fprintf(&b, "  SIP sockets:  %s\n", strings.Join(n.Sockets(), ", "))
	if len(cfg.SIP.TLSPorts) > 0 {
		fmt.Fprintf(&b, "  TLS cert:     %s (signed by the throwaway CA %s; both made afresh at every start)\n",
			cfg.SIP.TLSCert, cfg.Cluster.TLS.CAFile)
	}
	fmt.Fprintf(&b, "  admin API:    http://%s\n", n.AdminAddr())
	fmt.Fprintf(&b, "  admin token:  export TROIKA_API=http://%s TROIKA_TOKEN=%s\n", n.AdminAddr(), cfg.Admin.Token)
	fmt.Fprintf(&b, "  read token:   %s (read-only: GET requests)\n", cfg.DevReadToken())
	fmt.Fprintf(&b, "  status page:  http://%s/ (paste the read token into it)\n", n.AdminAddr())
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

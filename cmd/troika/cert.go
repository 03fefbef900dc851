package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/internal/certs"
)

// certCmd makes the certificates of the cluster port's TLS ([cluster.tls]).
// It works on files only; no node is involved.
func certCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Make the cluster CA and node certificates for [cluster.tls]",
		Long: `Make the certificates that encrypt and authenticate the cluster port
([cluster.tls], deploy/runbook.md): one cluster CA (ECDSA P-256, 10 years),
then one certificate per node (ECDSA P-256, 2 years) that names the node
(URI SAN troika-node:<node_id>). Private keys are written 0600: keep the
CA's key off the nodes.`,
	}
	cmd.AddCommand(certCreateCACmd(), certCreateNodeCmd())
	return cmd
}

func certCreateCACmd() *cobra.Command {
	var dir, name string
	var days int
	var force bool
	cmd := &cobra.Command{
		Use:   "create-ca --dir DIR",
		Short: "Make the cluster CA: DIR/ca.pem and DIR/ca-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("create-ca needs --dir DIR, where ca.pem and ca-key.pem are written")
			}
			if days < 1 {
				return errors.New("--days: at least 1")
			}
			ca, err := certs.NewCA(name, time.Now(), time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			if err := certs.WriteCA(dir, ca, force); err != nil {
				return fmt.Errorf("create-ca: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (the CA certificate: ca_file on every node)\nwrote %s (its private key, 0600: keep it off the nodes)\nvalid until %s\nnext: troika cert create-node --ca %s --node sip1 --ip ADDRESS --out DIR\n",
				filepath.Join(dir, certs.CACertFile), filepath.Join(dir, certs.CAKeyFile), ca.Cert.NotAfter.Format(time.DateOnly), dir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory for ca.pem and ca-key.pem (made 0700 if missing)")
	f.StringVar(&name, "name", "troika cluster CA", "the CA's common name")
	f.IntVar(&days, "days", int(certs.CAValidity/(24*time.Hour)), "validity in days")
	f.BoolVar(&force, "force", false, "replace an existing CA (every certificate it signed stops being trusted)")
	return cmd
}

func certCreateNodeCmd() *cobra.Command {
	var caDir, id, out string
	var ips []net.IP
	var dns []string
	var days int
	var force bool
	cmd := &cobra.Command{
		Use:   "create-node --ca DIR --node ID --ip ADDRESS --out DIR",
		Short: "Make a node certificate: OUT/ID.pem and OUT/ID-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case caDir == "":
				return errors.New("create-node needs --ca DIR, the directory of `troika cert create-ca`")
			case id == "":
				return errors.New("create-node needs --node ID, the node's node_id")
			case out == "":
				return errors.New("create-node needs --out DIR, where ID.pem and ID-key.pem are written")
			case days < 1:
				return errors.New("--days: at least 1")
			}
			ca, err := certs.ReadCA(caDir)
			if err != nil {
				return err
			}
			is, err := ca.IssueNode(certs.NodeRequest{NodeID: id, IPs: ips, DNSNames: dns, Validity: time.Duration(days) * 24 * time.Hour})
			if err != nil {
				return err
			}
			certPath, keyPath, err := certs.WriteNode(out, id, is, force)
			if err != nil {
				return fmt.Errorf("create-node: %w", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s (cert_file of node %s)\nwrote %s (key_file, 0600)\nnames troika-node:%s", certPath, id, keyPath, id)
			for _, ip := range is.Cert.IPAddresses {
				fmt.Fprintf(w, ", IP %s", ip)
			}
			for _, d := range is.Cert.DNSNames {
				fmt.Fprintf(w, ", DNS %s", d)
			}
			fmt.Fprintf(w, "; valid until %s\n", is.Cert.NotAfter.Format(time.DateOnly))
			if is.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
				fmt.Fprintln(w, "note: cut to the CA's own end of validity: plan the CA's replacement (deploy/runbook.md)")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caDir, "ca", "", "directory holding ca.pem and ca-key.pem")
	f.StringVar(&id, "node", "", "the node's node_id")
	f.IPSliceVar(&ips, "ip", nil, "an address of the node (repeat for several): for people and tools, troika checks the node name")
	f.StringSliceVar(&dns, "dns", nil, "a DNS name of the node (repeat for several); the node id is always one")
	f.StringVar(&out, "out", "", "directory for ID.pem and ID-key.pem (made 0700 if missing)")
	f.IntVar(&days, "days", int(certs.NodeValidity/(24*time.Hour)), "validity in days")
	f.BoolVar(&force, "force", false, "replace existing files (rotation)")
	return cmd
}

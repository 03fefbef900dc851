package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/fsm"
)

func snapshotCmd(api *apiFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up and restore the whole replicated state (save, restore, inspect)",
		Long: `A backup file holds the whole replicated state (accounts and balances,
tariffs, policies, vendors, IP aliases, registrations, calls in progress,
xDRs) with a header naming the troika version, the snapshot format, the
raft index and term, the realm, the raft members and the time, and the
SHA-256 of its body. It holds every account's digest credentials (HA1s),
which answer SIP challenges as well as passwords do: keep backups as safe
as the cluster key. deploy/runbook.md, "Back up and restore", has the
procedure.`,
	}
	save := snapshotSaveCmd(api)
	restore := snapshotRestoreCmd(api)
	for _, c := range []*cobra.Command{save, restore} {
		c.Annotations = map[string]string{usesAPI: "true"}
	}
	cmd.AddCommand(save, restore, snapshotInspectCmd(api))
	return cmd
}

func snapshotSaveCmd(api *apiFlags) *cobra.Command {
	var stale, force bool
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a backup of the whole replicated state to FILE",
		Long: `Save asks the node at --api for a consistent snapshot of the whole replicated
state, as of the request (a follower first catches up with the leader), and
writes it to FILE (mode 0600) once it has checked it: the body's checksum
and every record. A partial download never becomes FILE. Needs an admin
token: the file holds every account's digest credentials.

--stale saves the node's replica as it is, without the catch-up: when the
cluster has lost its quorum, for one (the header's raft index says how
recent it is).`,
		Example: `  troika snapshot save /var/backups/troika/$(date -u +%Y%m%dT%H%M%SZ).backup`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			if _, err := os.Stat(file); err == nil && !force {
				return fmt.Errorf("%s exists: choose another name, or --force to replace it", file)
			}
			start := time.Now()
			out := cmd.OutOrStdout()
			body, size, err := api.client().SaveSnapshot(cmd.Context(), stale)
			if err != nil {
				var ae *admin.APIError
				if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
					return answerError{"save refused: " + ae.Msg, err}
				}
				return err
			}
			defer body.Close()
			partial := file + ".partial"
			f, err := os.OpenFile(partial, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			defer os.Remove(partial) // a no-op once renamed
			p := newProgress(out, start, "downloading", size)
			n, err := io.Copy(f, &progressReader{r: body, p: p})
			if err == nil && size >= 0 && n != size {
				err = fmt.Errorf("the node sent %d of %d bytes", n, size)
			}
			if err == nil {
				p.done(n)
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("downloading the backup: %w; nothing was written to %s: try again", err, file)
			}
			h, err := checkBackupFile(out, start, partial)
			if err != nil {
				return fmt.Errorf("the node sent a backup that does not check (%v); nothing was written to %s: try again, or save from another node", err, file)
			}
			if err := os.Rename(partial, file); err != nil {
				return err
			}
			fmt.Fprintf(out, "saved %s (%s) in %s: taken on %s at raft index %d (term %d), %s, troika %s, realm %q\n  %s\n  sha256 %s\n",
				file, bytesText(n), time.Since(start).Round(time.Millisecond), h.TakenOn, h.RaftIndex, h.RaftTerm,
				h.CreatedAt.UTC().Format(time.RFC3339), h.TroikaVersion, h.Realm, h.Counts, h.SHA256)
			fmt.Fprintln(out, "It holds every account's digest credentials: keep it as safe as the cluster key.")
			return nil
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "save the node's replica as it is, without catching up with the leader (a cluster without quorum)")
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}

func snapshotRestoreCmd(api *apiFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the cluster's whole replicated state with a backup",
		Long: `Restore checks FILE here (checksum, every record), sends it to the node at
--api, which checks it again and refuses a file of another realm or of a
format it cannot read, then replaces the state of the whole cluster with
it through raft: that node becomes the leader, takes the backup's state
and sends it to the other voters; the restore is done once a majority has
it. It is all or nothing: a refused or failed restore changes nothing.
The cluster keeps its own address assignments and nonce secret.

A cluster that holds data (accounts, bindings, xDRs...) is refused unless
--force: everything written since the backup would be lost. Save the
current state first.`,
		Example: `  troika snapshot restore /var/backups/troika/20261202T030405Z.backup
  troika snapshot restore --force last-night.backup     # into a cluster that holds data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			start := time.Now()
			out := cmd.OutOrStdout()
			h, err := checkBackupFile(out, start, file)
			if err != nil {
				return fmt.Errorf("%s refused, nothing was sent: %w", file, err)
			}
			fmt.Fprintf(out, "%6.1fs  %s: taken on %s at raft index %d, %s, troika %s, realm %q: %s\n", time.Since(start).Seconds(), file,
				h.TakenOn, h.RaftIndex, h.CreatedAt.UTC().Format(time.RFC3339), h.TroikaVersion, h.Realm, h.Counts)
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			info, err := f.Stat()
			if err != nil {
				return err
			}
			p := newProgress(out, start, "uploading", info.Size())
			summary, err := api.client().RestoreSnapshot(cmd.Context(), &progressReader{r: f, p: p}, info.Size(), force, func(line string) {
				p.finish()
				fmt.Fprintf(out, "%6.1fs  %s\n", time.Since(start).Seconds(), line)
			})
			if err != nil {
				var ae *admin.APIError
				var re *admin.RestoreError
				switch {
				case errors.As(err, &ae) && ae.Status/100 == 4 && ae.Status != http.StatusUnauthorized && ae.Status != http.StatusForbidden:
					return answerError{"restore refused, nothing changed: " + strings.TrimPrefix(ae.Msg, "backup refused, nothing changed: "), err}
				case errors.As(err, &re):
					return fmt.Errorf("restore stopped: %s", re.Msg)
				}
				return err
			}
			fmt.Fprintf(out, "%6.1fs  restored: %s\n", time.Since(start).Seconds(), summary)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace the state of a cluster that holds data")
	return cmd
}

func snapshotInspectCmd(api *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Check a backup file and show its header and counts (no node needed)",
		Long: `Inspect reads FILE whole, checks it as a restore would (format, length,
checksum, every record) and prints its header and what it holds. It needs
no node. -o json prints the header as JSON.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			quiet := io.Discard
			if api.output != "json" {
				quiet = cmd.ErrOrStderr()
			}
			h, err := checkBackupFile(quiet, time.Now(), args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			switch api.output {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(h)
			case "table":
				return printBackupHeader(out, args[0], h)
			default:
				return fmt.Errorf("--output %q: use table or json", api.output)
			}
		},
	}
}

// answerError is an error of the node told in the command's words; it
// keeps the node's answer for the exit status.
type answerError struct {
	msg string
	err error
}

func (e answerError) Error() string { return e.msg }
func (e answerError) Unwrap() error { return e.err }

// checkBackupFile reads and checks a whole backup file, with progress.
func checkBackupFile(out io.Writer, start time.Time, file string) (fsm.BackupHeader, error) {
	f, err := os.Open(file)
	if err != nil {
		return fsm.BackupHeader{}, err
	}
	defer f.Close()
	p := newProgress(out, start, "checking "+file+":", -1)
	h, _, err := fsm.ReadBackup(bufio.NewReaderSize(f, 64<<10), func(done, total int64) {
		p.total = total
		p.update(done)
	})
	if err != nil {
		return h, err
	}
	p.finish()
	return h, nil
}

func printBackupHeader(out io.Writer, file string, h fsm.BackupHeader) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "file:\t%s (checked: length, sha256 and every record)\n", file)
	fmt.Fprintf(w, "backup format:\t%d\n", fsm.BackupFormat)
	fmt.Fprintf(w, "snapshot format:\t%d\n", h.SnapshotFormat)
	fmt.Fprintf(w, "troika version:\t%s\n", h.TroikaVersion)
	fmt.Fprintf(w, "created:\t%s\n", h.CreatedAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "taken on:\t%s\n", dash(h.TakenOn))
	fmt.Fprintf(w, "raft index:\t%d (term %d)\n", h.RaftIndex, h.RaftTerm)
	fmt.Fprintf(w, "realm:\t%s\n", dash(h.Realm))
	var nodes []string
	for _, n := range h.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s=%s (%s)", n.ID, n.Addr, strings.ToLower(n.Suffrage)))
	}
	fmt.Fprintf(w, "raft members:\t%s\n", dash(strings.Join(nodes, ", ")))
	fmt.Fprintf(w, "body:\t%s, sha256 %s\n", bytesText(h.Size), h.SHA256)
	c := h.Counts
	for _, row := range []struct {
		name string
		n    int
	}{{"accounts", c.Accounts}, {"tariffs", c.Tariffs}, {"IP aliases", c.Aliases}, {"service policies", c.ServicePolicies},
		{"vendors", c.Vendors}, {"connections", c.Connections}, {"bindings", c.Bindings}, {"calls in progress", c.Calls}, {"xDRs", c.XDRs}} {
		fmt.Fprintf(w, "%s:\t%d\n", row.name, row.n)
	}
	return w.Flush()
}

// progress prints how far a transfer has come: a line at most every
// second (and at the end), for transfers long enough to need one.
type progress struct {
	out   io.Writer
	now   func() time.Time
	start time.Time
	what  string
	total int64 // -1: unknown
	last  time.Time
	n     int64
	shown bool // a line was printed: the end gets one too
	ended bool
}

func newProgress(out io.Writer, start time.Time, what string, total int64) *progress {
	return &progress{out: out, now: time.Now, start: start, what: what, total: total, last: time.Now()}
}

func (p *progress) update(n int64) {
	p.n = n
	if now := p.now(); now.Sub(p.last) >= time.Second {
		p.last = now
		p.shown = true
		p.print()
	}
}

func (p *progress) print() {
	at := p.now().Sub(p.start).Seconds()
	if p.total > 0 {
		fmt.Fprintf(p.out, "%6.1fs  %s %d%% (%s of %s)\n", at, p.what, p.n*100/p.total, bytesText(p.n), bytesText(p.total))
		return
	}
	fmt.Fprintf(p.out, "%6.1fs  %s %s\n", at, p.what, bytesText(p.n))
}

// done ends a transfer of n bytes.
func (p *progress) done(n int64) {
	p.n = n
	p.finish()
}

// finish prints the last line, if earlier ones were printed.
func (p *progress) finish() {
	if p.shown && !p.ended {
		p.print()
	}
	p.ended = true
}

type progressReader struct {
	r io.Reader
	p *progress
	n int64
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.n += int64(n)
	r.p.update(r.n)
	return n, err
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/troika-sip/troika/fsm"
)

// Backups of the whole replicated state (fsm/backup.go has the file):
//
//	POST /v1/snapshot/save      the answer is a backup file
//	POST /v1/snapshot/restore   the body is a backup file; the answer
//	                            streams the restore's progress as text
//
// Both need scope admin: a backup holds every account's digest
// credentials, and a restore replaces everything.

// Snapshots is the part of the Backend that saves and restores the whole
// replicated state. A backend without it answers 501.
type Snapshots interface {
	// SaveSnapshot makes a backup file of the whole replicated state, as
	// of the request (stale: of this node's replica as it is).
	SaveSnapshot(ctx context.Context, stale bool) (Backup, error)
	// PrepareRestore reads a backup file from r and checks it, and that
	// it may replace the cluster's state (force: even one that holds
	// data). Nothing changes yet. A *Refused says why not.
	PrepareRestore(ctx context.Context, r io.Reader, force bool) (Restore, error)
}

// Backup is a backup file ready to send.
type Backup interface {
	Header() fsm.BackupHeader
	// Size is the whole file's.
	Size() int64
	WriteTo(w io.Writer) (int64, error)
	Close() error
}

// Restore is a checked backup, ready to replace the cluster's state.
type Restore interface {
	Header() fsm.BackupHeader
	// Run replaces the cluster's state with the backup's, telling
	// progress each step, and returns a summary of the outcome.
	Run(ctx context.Context, progress func(string)) (string, error)
	Close() error
}

// Refused is an operation refused before anything changed: its HTTP
// status and what to do.
type Refused struct {
	Status int
	Msg    string
}

func (e *Refused) Error() string { return e.Msg }

// refusedError maps a *Refused to its answer; other errors pass.
func refusedError(err error) error {
	var rf *Refused
	if errors.As(err, &rf) {
		return &httpError{status: rf.Status, body: Error{Error: rf.Msg}}
	}
	return err
}

// Backup answers and progress lines.
const (
	// BackupContentType is the media type of a backup file.
	BackupContentType = "application/vnd.troika.backup"
	restoredPrefix    = "restored: "
	// maxRestoreBody bounds the body of a restore.
	maxRestoreBody = 64 << 30
	// maxRestoreTime bounds a restore, the wait for the voters included.
	maxRestoreTime = time.Hour
)

// Headers of the answer to a save, for clients that do not read the file.
const (
	headerRaftIndex = "X-Troika-Raft-Index"
	headerSHA256    = "X-Troika-Sha256"
)

func (s *Server) snapshotRoutes(v1 func(string, handler)) {
	v1("POST /snapshot/save", backendPart(s, noSnapshots, s.saveSnapshot))
	// The body of a restore is a whole backup file: no 8 MiB limit.
	s.mux.Handle("POST /v1/snapshot/restore", s.authedLimit(ScopeAdmin, maxRestoreBody, backendPart(s, noSnapshots, s.restoreSnapshot)))
}

// noSnapshots is the 501 answer of a backend that is not a Snapshots.
const noSnapshots = "this node cannot save or restore snapshots"

// flagParams reads optional boolean query parameters; the request may
// have no others.
func flagParams(r *http.Request, names ...string) (map[string]bool, error) {
	q := r.URL.Query()
	out := map[string]bool{}
	for k, vs := range q {
		known := false
		for _, n := range names {
			known = known || k == n
		}
		if !known {
			return nil, badRequest(k, "unknown query parameter (this endpoint takes %s)", strings.Join(names, ", "))
		}
		if len(vs) != 1 {
			return nil, badRequest(k, "given %d times", len(vs))
		}
		b, err := strconv.ParseBool(vs[0])
		if err != nil {
			return nil, badRequest(k, "%q is not true or false", vs[0])
		}
		out[k] = b
	}
	return out, nil
}

func (s *Server) saveSnapshot(w http.ResponseWriter, r *http.Request, sn Snapshots) error {
	flags, err := flagParams(r, "stale")
	if err != nil {
		return err
	}
	b, err := sn.SaveSnapshot(r.Context(), flags["stale"])
	if err != nil {
		return refusedError(err)
	}
	defer b.Close()
	h := b.Header()
	s.cfg.Logger.Info("snapshot saved for a backup", "token", TokenName(r.Context()), "remote", r.RemoteAddr,
		"raft_index", h.RaftIndex, "size", b.Size(), "counts", h.Counts.String())
	liftDeadlines(w) // a big file takes as long as the client reads
	w.Header().Set("Content-Type", BackupContentType)
	w.Header().Set("Content-Length", strconv.FormatInt(b.Size(), 10))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="troika-%s-%d.backup"`, h.TakenOn, h.RaftIndex))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(headerRaftIndex, strconv.FormatUint(h.RaftIndex, 10))
	w.Header().Set(headerSHA256, h.SHA256)
	w.WriteHeader(http.StatusOK)
	if _, err := b.WriteTo(w); err != nil {
		// The status is sent: the client sees a short file, which no
		// reader accepts.
		s.cfg.Logger.Warn("sending a backup failed", "remote", r.RemoteAddr, "error", err)
	}
	return nil
}

// restoreSnapshot checks the backup file in the body, then replaces the
// cluster's state with it. The checks answer with a JSON error; once they
// pass, the answer is a text/plain stream of progress lines whose last is
//
//	restored: SUMMARY    done
//	error: MESSAGE       it stopped (MESSAGE says what happened and what to do)
func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request, sn Snapshots) error {
	flags, err := flagParams(r, "force")
	if err != nil {
		return err
	}
	liftDeadlines(w) // the upload takes as long as the file does
	ctx, cancel := context.WithTimeout(r.Context(), maxRestoreTime)
	defer cancel()
	start := time.Now()
	rs, err := sn.PrepareRestore(ctx, r.Body, flags["force"])
	if err != nil {
		// Read what the client still sends, so that it gets this answer
		// rather than a reset connection.
		_, _ = io.Copy(io.Discard, r.Body)
		s.cfg.Logger.Warn("snapshot restore refused", "token", TokenName(r.Context()), "remote", r.RemoteAddr, "error", err)
		return refusedError(err)
	}
	defer rs.Close()
	h := rs.Header()
	s.cfg.Logger.Warn("snapshot restore: replacing the replicated state with a backup", "token", TokenName(r.Context()),
		"remote", r.RemoteAddr, "force", flags["force"], "backup_raft_index", h.RaftIndex, "backup_taken_on", h.TakenOn,
		"backup_created_at", h.CreatedAt, "counts", h.Counts.String())
	write := startProgress(w)
	write(fmt.Sprintf("received and checked the backup in %s: taken on %s at raft index %d, %s, troika %s, realm %q: %s",
		time.Since(start).Round(time.Millisecond), dash(h.TakenOn), h.RaftIndex, h.CreatedAt.UTC().Format(time.RFC3339), h.TroikaVersion, h.Realm, h.Counts))
	summary, err := rs.Run(ctx, write)
	if err != nil {
		s.cfg.Logger.Error("snapshot restore failed", "error", err)
		write(progressErrorPrefix + err.Error())
		return nil
	}
	s.cfg.Logger.Warn("snapshot restore done", "summary", summary, "took", time.Since(start).Round(time.Millisecond))
	write(restoredPrefix + summary)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// restoreProgress reads a restore's progress stream.
var restoreProgress = progressStream{
	what:       "restore",
	donePrefix: restoredPrefix,
	stopped:    func(msg string) error { return &RestoreError{Msg: msg} },
	leftHint:   "once the node has checked the file, the restore goes on: check `troika cluster status`",
	cutHint:    "check `troika cluster status` on each node before trying again",
}

// RestoreError is a restore that stopped after its checks passed; Msg is
// the node's message.
type RestoreError struct{ Msg string }

func (e *RestoreError) Error() string { return e.Msg }

// SaveSnapshot asks the node for a backup file of the whole replicated
// state (stale: of its replica as it is, without making sure it is
// current). The caller reads the file from the returned body, of size
// bytes, and closes it. Only ctx bounds the transfer.
func (c *Client) SaveSnapshot(ctx context.Context, stale bool) (body io.ReadCloser, size int64, err error) {
	path := "/v1/snapshot/save"
	if stale {
		path += "?stale=true"
	}
	resp, err := c.stream(ctx, http.MethodPost, path, nil)
	if err != nil {
		return nil, 0, err
	}
	if ct := resp.Header.Get("Content-Type"); ct != BackupContentType {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("POST %s: the answer is %q, not a backup file: is --api a troika node?", path, ct)
	}
	return resp.Body, resp.ContentLength, nil
}

// RestoreSnapshot sends a backup file (size bytes from body) to replace
// the cluster's whole state (force: even one that holds data), and calls
// line with each progress line the node sends. It returns the node's
// summary, an *APIError when the node refused the file (nothing
// changed), or a *RestoreError when the restore stopped. Only ctx bounds
// it.
func (c *Client) RestoreSnapshot(ctx context.Context, body io.Reader, size int64, force bool, line func(string)) (string, error) {
	path := "/v1/snapshot/restore"
	if force {
		path += "?force=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+path, body)
	if err != nil {
		return "", err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", BackupContentType)
	resp, err := c.streamRequest(req, req.URL.Path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return restoreProgress.follow(ctx, resp.Body, line)
}

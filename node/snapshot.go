package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/cluster"
	"github.com/troika-sip/troika/fsm"
)

// Backups and restores of the whole replicated state (admin.Snapshots):
// the file is fsm/backup.go's, raft's user snapshots carry the state
// (cluster/snapshot.go). Work files go in data_dir, removed when done.

var _ admin.Snapshots = (*Node)(nil)

// SaveSnapshot implements admin.Snapshots: a raft snapshot of this node's
// replica (current as of the request unless stale), checked by decoding
// it, with its header.
func (n *Node) SaveSnapshot(ctx context.Context, stale bool) (admin.Backup, error) {
	meta, rc, err := n.cluster.BackupSnapshot(ctx, stale)
	if errors.Is(err, cluster.ErrNotCurrent) {
		return nil, &admin.Refused{Status: http.StatusServiceUnavailable, Msg: err.Error() +
			": ask another node, or save this node's replica as it is with --stale (for one when the cluster has lost its quorum)"}
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(n.cfg.DataDir, "backup-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("backup: work file in data_dir: %w", err)
	}
	b := &backupFile{f: tmp}
	h, err := fsm.DescribeSnapshot(io.TeeReader(rc, tmp))
	if err == nil && h.Size != meta.Size {
		err = fmt.Errorf("raft's snapshot is %d bytes, %d were read", meta.Size, h.Size)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("backup: the snapshot does not check: %w", err)
	}
	h.TroikaVersion, h.TakenOn, h.CreatedAt = Version, n.cfg.NodeID, time.Now().UTC().Truncate(time.Millisecond)
	h.RaftIndex, h.RaftTerm = meta.Index, meta.Term
	h.Nodes = []fsm.BackupNode{}
	for _, s := range meta.Servers {
		h.Nodes = append(h.Nodes, fsm.BackupNode{ID: s.ID, Addr: s.Addr, Suffrage: s.Suffrage})
	}
	if b.head, err = fsm.EncodeBackupHeader(h); err != nil {
		b.Close()
		return nil, err
	}
	b.h = h
	return b, nil
}

// backupFile is a backup ready to send: its header, and its body in a
// work file.
type backupFile struct {
	h    fsm.BackupHeader
	head []byte
	f    *os.File
}

func (b *backupFile) Header() fsm.BackupHeader { return b.h }

func (b *backupFile) Size() int64 { return int64(len(b.head)) + b.h.Size }

// WriteTo writes the file; it checks the body against the header as it
// goes.
func (b *backupFile) WriteTo(w io.Writer) (int64, error) {
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return fsm.WriteBackup(w, b.h, bufio.NewReaderSize(b.f, 64<<10))
}

func (b *backupFile) Close() error {
	b.f.Close()
	return os.Remove(b.f.Name())
}

// PrepareRestore implements admin.Snapshots: it reads the backup file
// from r, refuses it (*admin.Refused, nothing changed) when it is not
// readable or does not fit this cluster, and otherwise prepares the
// state to restore: the backup's, with this cluster's address ownership
// and nonce secret (fsm.KeepClusterParts), written to a work file.
func (n *Node) PrepareRestore(ctx context.Context, r io.Reader, force bool) (admin.Restore, error) {
	if !n.restoring.TryLock() {
		return nil, &admin.Refused{Status: http.StatusConflict, Msg: "a restore is already running on this node: wait for it to finish"}
	}
	ok := false
	defer func() {
		if !ok {
			n.restoring.Unlock()
		}
	}()
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := fsm.ReadBackupHeader(br)
	if err != nil {
		return nil, backupRefused(err)
	}
	if err := n.restoreFits(h, force); err != nil {
		return nil, err
	}
	start, lastLog := time.Now(), time.Now()
	st, err := fsm.ReadBackupBody(br, h, func(done, total int64) {
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			n.log.Info("restore: receiving the backup", "received", done, "size", total, "percent", done*100/max(total, 1))
		}
	})
	if err != nil {
		return nil, backupRefused(err)
	}
	n.log.Info("restore: backup received and checked", "size", h.Size, "took", time.Since(start).Round(time.Millisecond))
	st.KeepClusterParts(n.state)
	sn := st.Snapshot()
	if sn.Format() > 2 && !n.quotaThroughLog() {
		return nil, &admin.Refused{Status: http.StatusConflict, Msg: fmt.Sprintf("the backup holds calls reserved by chunks (snapshot format %d), "+
			"which a voter running an older troika cannot restore: finish the rolling upgrade first (every voter announces %q in gossip)", sn.Format(), roleQuota)}
	}
	tmp, err := os.CreateTemp(n.cfg.DataDir, "restore-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("restore: work file in data_dir: %w", err)
	}
	rs := &restoreRun{n: n, h: h, f: tmp}
	if rs.size, err = sn.WriteTo(tmp); err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err == nil {
		// raft stops a leader whose state machine fails to restore: what
		// it gets must decode.
		err = fsm.New().Restore(bufio.NewReader(tmp))
	}
	if err != nil {
		rs.removeFile()
		return nil, fmt.Errorf("restore: writing the state to restore in data_dir: %w", err)
	}
	ok = true
	return rs, nil
}

// restoreFits refuses a backup this cluster cannot take: credentials of
// another realm, or data in the cluster unless force.
func (n *Node) restoreFits(h fsm.BackupHeader, force bool) error {
	realm := n.state.Realm()
	if realm == "" {
		realm = n.cfg.Registrar.Realm
	}
	if h.Realm != "" && h.Realm != realm {
		return &admin.Refused{Status: http.StatusUnprocessableEntity, Msg: fmt.Sprintf("the backup is of another cluster: its accounts' "+
			"digest credentials are made for realm %q, this cluster's for %q, and would not verify here. Restore it into a cluster "+
			"whose nodes have registrar.realm = %q (a fresh one, for a disaster recovery)", h.Realm, realm, h.Realm)}
	}
	if now := fsm.BackupCountsOf(n.state); !now.Empty() && !force {
		return &admin.Refused{Status: http.StatusConflict, Msg: fmt.Sprintf("this cluster holds data (%s; raft index %d): the restore "+
			"would replace all of it with the backup's (taken %s at raft index %d), and everything written since the backup would be "+
			"lost. Save the current state first (troika snapshot save), then restore with --force",
			now, n.cluster.Status().AppliedIndex, h.CreatedAt.UTC().Format(time.RFC3339), h.RaftIndex)}
	}
	return nil
}

// backupRefused maps a file fsm refuses to its answer.
func backupRefused(err error) error {
	var be *fsm.BackupError
	if !errors.As(err, &be) {
		return fmt.Errorf("restore: reading the backup: %w", err)
	}
	status := http.StatusBadRequest
	if be.Kind == fsm.BackupNewer {
		status = http.StatusUnprocessableEntity
	}
	return &admin.Refused{Status: status, Msg: "backup refused, nothing changed: " + be.Msg}
}

// restoreRun is a checked backup ready to replace the cluster's state.
// Its work file and the node's restore lock are released when raft is
// done with them (Run), or at Close when it did not run.
type restoreRun struct {
	n    *Node
	h    fsm.BackupHeader
	f    *os.File
	size int64
	ran  bool
	once sync.Once
}

func (rs *restoreRun) Header() fsm.BackupHeader { return rs.h }

// Run replaces the cluster's state through raft (this node becomes the
// leader for it), then reports what the state holds.
func (rs *restoreRun) Run(ctx context.Context, progress func(string)) (string, error) {
	n := rs.n
	start := time.Now()
	if _, err := rs.f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	rs.ran = true
	index, err := n.cluster.RestoreBackup(ctx, bufio.NewReaderSize(rs.f, 64<<10), rs.size, rs.h.RaftIndex, progress, rs.release)
	if err != nil {
		return "", err
	}
	now := fsm.BackupCountsOf(n.state)
	summary := fmt.Sprintf("the cluster's state is the backup's, at raft index %d, in %s: %s. This cluster's address "+
		"assignments and nonce secret were kept", index, time.Since(start).Round(time.Millisecond), now)
	if now != rs.h.Counts {
		// Only writes after the restore change them: it replaced the whole
		// state at once.
		summary += fmt.Sprintf(" (the backup held %s; writes since the restore account for the difference)", rs.h.Counts)
	}
	return summary, nil
}

// Close releases a restore that did not run; one that ran is released
// when raft is done with it, which may be after its client went away.
func (rs *restoreRun) Close() error {
	if !rs.ran {
		rs.release()
	}
	return nil
}

// release removes the work file and lets the next restore run.
func (rs *restoreRun) release() {
	rs.once.Do(func() {
		rs.removeFile()
		rs.n.restoring.Unlock()
	})
}

func (rs *restoreRun) removeFile() {
	rs.f.Close()
	os.Remove(rs.f.Name())
}

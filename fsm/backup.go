package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"
)

// A backup file (`troika snapshot save`) is a snapshot of the whole
// replicated state with a header that says what it is:
//
//	TROIKA-BACKUP 1\n          the magic and the backup format, one text line
//	{"troika_version":...}\n    the header: one line of JSON (BackupHeader)
//	body                        a snapshot (snapshot.go), Size bytes, whose
//	                            SHA-256 the header holds
//
// Both lines are text, so `head -n 2 FILE` shows what a file holds.
// testdata/golden/backup_v1.hex pins the format; a reader of a later
// format keeps reading format 1.
const backupMagic = "TROIKA-BACKUP "

// BackupFormat is the backup format this build writes and reads.
const BackupFormat = 1

// maxBackupHeader bounds the header line.
const maxBackupHeader = 64 << 10

// BackupHeader describes a backup file.
type BackupHeader struct {
	// TroikaVersion is the version of the troika that wrote the file.
	TroikaVersion string `json:"troika_version"`
	// SnapshotFormat is the body's snapshot format (snapshot.go).
	SnapshotFormat int `json:"snapshot_format"`
	// RaftIndex and RaftTerm are those of the last log entry the state
	// holds.
	RaftIndex uint64 `json:"raft_index"`
	RaftTerm  uint64 `json:"raft_term"`
	// Realm is the digest realm of the state's credentials ("" before a
	// leader recorded one): with Nodes, it names the cluster.
	Realm string `json:"realm"`
	// Nodes are the members of the raft configuration at RaftIndex.
	Nodes []BackupNode `json:"nodes"`
	// TakenOn is the node that wrote the file.
	TakenOn   string    `json:"taken_on"`
	CreatedAt time.Time `json:"created_at"`
	// Size and SHA256 (hex) are those of the body.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Counts are the body's records.
	Counts BackupCounts `json:"counts"`
}

// BackupNode is a member of the raft configuration.
type BackupNode struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Suffrage string `json:"suffrage"`
}

// BackupCounts are the records a backup holds.
type BackupCounts struct {
	Accounts        int `json:"accounts"`
	Tariffs         int `json:"tariffs"`
	Aliases         int `json:"aliases"`
	ServicePolicies int `json:"service_policies"`
	Vendors         int `json:"vendors"`
	Connections     int `json:"connections"`
	Bindings        int `json:"bindings"`
	Calls           int `json:"calls"`
	XDRs            int `json:"xdrs"`
}

// BackupCountsOf are the records s holds.
func BackupCountsOf(s *State) BackupCounts {
	c := s.Counts()
	return BackupCounts{Accounts: c.Accounts, Tariffs: c.Tariffs, Aliases: c.Aliases, ServicePolicies: c.ServicePolicies,
		Vendors: c.Vendors, Connections: c.Connections, Bindings: c.Bindings, Calls: c.Calls, XDRs: c.XDRs}
}

// String lists the counts as "3 accounts, 1 tariff, ...".
func (c BackupCounts) String() string {
	parts := []string{}
	for _, p := range []struct {
		n          int
		one, other string
	}{
		{c.Accounts, "account", "accounts"}, {c.Tariffs, "tariff", "tariffs"}, {c.Aliases, "IP alias", "IP aliases"},
		{c.ServicePolicies, "service policy", "service policies"}, {c.Vendors, "vendor", "vendors"},
		{c.Connections, "connection", "connections"}, {c.Bindings, "binding", "bindings"},
		{c.Calls, "call in progress", "calls in progress"}, {c.XDRs, "xDR", "xDRs"},
	} {
		name := p.other
		if p.n == 1 {
			name = p.one
		}
		parts = append(parts, strconv.Itoa(p.n)+" "+name)
	}
	return strings.Join(parts, ", ")
}

// Empty reports whether there is no record at all.
func (c BackupCounts) Empty() bool { return c == BackupCounts{} }

// BackupErrorKind says what is wrong with a backup file.
type BackupErrorKind int

const (
	// BackupCorrupt: not a backup file, or damaged (checksum, length,
	// header, records).
	BackupCorrupt BackupErrorKind = iota + 1
	// BackupTruncated: the file ends early.
	BackupTruncated
	// BackupNewer: written in a format this build cannot read.
	BackupNewer
)

// BackupError is a backup file this build refuses, with what to do.
type BackupError struct {
	Kind BackupErrorKind
	Msg  string
	Err  error // the underlying error, if any
}

func (e *BackupError) Error() string { return e.Msg }

func (e *BackupError) Unwrap() error { return e.Err }

func backupErr(kind BackupErrorKind, err error, format string, args ...any) *BackupError {
	return &BackupError{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: err}
}

// EncodeBackupHeader returns the first two lines of a backup file with
// header h.
func EncodeBackupHeader(h BackupHeader) ([]byte, error) {
	line, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("backup header: %w", err)
	}
	head := fmt.Appendf(nil, "%s%d\n%s\n", backupMagic, BackupFormat, line)
	if len(head) > maxBackupHeader {
		return nil, fmt.Errorf("backup header of %d bytes is over %d", len(head), maxBackupHeader)
	}
	return head, nil
}

// WriteBackup writes a backup file: h, whose Size and SHA256 must be
// those of body, then body. It checks both as it copies: a mismatch is
// an error, and w then holds a file no reader accepts.
func WriteBackup(w io.Writer, h BackupHeader, body io.Reader) (int64, error) {
	head, err := EncodeBackupHeader(h)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(head)
	total := int64(n)
	if err != nil {
		return total, fmt.Errorf("write backup header: %w", err)
	}
	sum := sha256.New()
	m, err := io.Copy(io.MultiWriter(w, sum), body)
	total += m
	if err != nil {
		return total, fmt.Errorf("write backup body: %w", err)
	}
	if m != h.Size || hex.EncodeToString(sum.Sum(nil)) != h.SHA256 {
		return total, fmt.Errorf("write backup: the body (%d bytes, sha256 %x) is not the one the header describes (%d bytes, sha256 %s)",
			m, sum.Sum(nil), h.Size, h.SHA256)
	}
	return total, nil
}

// DescribeSnapshot reads a whole snapshot and returns the header of a
// backup of it, with the fields the snapshot gives (its format, size,
// checksum, realm and counts): the caller adds the raft index and term,
// the members, the node, the time and the version. The snapshot must
// decode.
func DescribeSnapshot(r io.Reader) (BackupHeader, error) {
	var h BackupHeader
	sum := sha256.New()
	counted := &countingWriter{w: sum}
	br := bufio.NewReaderSize(io.TeeReader(r, counted), 64<<10)
	head, err := br.Peek(len(snapshotMagic) + 1)
	if err != nil {
		return h, fmt.Errorf("describe snapshot: %w", err)
	}
	// Peek's bytes are the buffer's: keep the format before reading on.
	h.SnapshotFormat = int(head[len(snapshotMagic)])
	st := New()
	if err := st.Restore(br); err != nil {
		return h, fmt.Errorf("describe snapshot: %w", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return h, fmt.Errorf("describe snapshot: %w", err)
	}
	h.Size = counted.n
	h.SHA256 = hex.EncodeToString(sum.Sum(nil))
	h.Realm = st.Realm()
	h.Counts = BackupCountsOf(st)
	return h, nil
}

// MarshalBackup returns the backup file of st: h with the body's format,
// size, checksum, realm and counts filled in, then st's snapshot.
func MarshalBackup(st *State, h BackupHeader) ([]byte, error) {
	sn := st.Snapshot()
	var body bytes.Buffer
	if _, err := sn.WriteTo(&body); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body.Bytes())
	h.SnapshotFormat = int(sn.version())
	h.Size = int64(body.Len())
	h.SHA256 = hex.EncodeToString(sum[:])
	h.Realm = st.Realm()
	h.Counts = BackupCountsOf(st)
	var out bytes.Buffer
	if _, err := WriteBackup(&out, h, &body); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// ReadBackupHeader reads a backup file's first two lines. It refuses a
// file that is not a backup, or one of a format this build cannot read.
func ReadBackupHeader(r *bufio.Reader) (BackupHeader, error) {
	var h BackupHeader
	magic, err := readLine(r, len(backupMagic)+8)
	if err != nil || !strings.HasPrefix(magic, backupMagic) {
		if errors.Is(err, io.EOF) && len(magic) < len(backupMagic) && strings.HasPrefix(backupMagic, magic) && magic != "" {
			return h, backupErr(BackupTruncated, err, "the file ends inside its first line: it is truncated; use a complete copy")
		}
		return h, backupErr(BackupCorrupt, err, "not a troika backup file: it does not begin with %q "+
			"(a raft snapshot from a data dir is not one: make backups with `troika snapshot save`)", strings.TrimSpace(backupMagic))
	}
	format, err := strconv.Atoi(strings.TrimPrefix(magic, backupMagic))
	switch {
	case err != nil || format < 1:
		return h, backupErr(BackupCorrupt, err, "not a troika backup file: its first line %q names no format", magic)
	case format > BackupFormat:
		return h, backupErr(BackupNewer, nil, "backup format %d is newer than this troika reads (%d): use the troika version that wrote it, or a newer one", format, BackupFormat)
	}
	line, err := readLine(r, maxBackupHeader)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return h, backupErr(BackupTruncated, err, "the file ends inside its header: it is truncated; use a complete copy")
		}
		return h, backupErr(BackupCorrupt, err, "the backup header is damaged: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, backupErr(BackupCorrupt, err, "the backup header is damaged (not the JSON this troika writes): %v", err)
	}
	switch {
	case h.Size < int64(len(snapshotMagic))+1 || len(h.SHA256) != 2*sha256.Size:
		return h, backupErr(BackupCorrupt, nil, "the backup header is damaged: size %d, sha256 %q", h.Size, h.SHA256)
	case h.SnapshotFormat < 1 || h.SnapshotFormat > 255:
		return h, backupErr(BackupCorrupt, nil, "the backup header is damaged: snapshot format %d", h.SnapshotFormat)
	case !readableVersions[byte(h.SnapshotFormat)]:
		return h, backupErr(BackupNewer, nil, "the backup holds a snapshot of format %d, which this troika cannot read (it reads %s): "+
			"it was written by troika %s; restore it with that version or a newer one", h.SnapshotFormat, readableFormats(), h.TroikaVersion)
	}
	return h, nil
}

// readLine reads one line of at most limit bytes, without its "\n".
func readLine(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for len(b) <= limit {
		c, err := r.ReadByte()
		if err != nil {
			return string(b), err
		}
		if c == '\n' {
			return string(b), nil
		}
		b = append(b, c)
	}
	return "", fmt.Errorf("a line longer than %d bytes", limit)
}

func readableFormats() string {
	var vs []string
	for v := range 256 {
		if readableVersions[byte(v)] {
			vs = append(vs, strconv.Itoa(v))
		}
	}
	return strings.Join(vs, ", ")
}

// ReadBackup reads a whole backup file and decodes its body into a new
// State, which nothing else holds: the file is checked entirely (format,
// length, checksum, every record, the counts and realm the header gives)
// before anything uses it. progress, if not nil, is called as the body
// is read with the bytes read so far and the body's size.
func ReadBackup(r io.Reader, progress func(done, total int64)) (BackupHeader, *State, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := ReadBackupHeader(br)
	if err != nil {
		return h, nil, err
	}
	st, err := ReadBackupBody(br, h, progress)
	return h, st, err
}

// ReadBackupBody reads the rest of a backup file whose header
// ReadBackupHeader read from r, as ReadBackup does.
func ReadBackupBody(r *bufio.Reader, h BackupHeader, progress func(done, total int64)) (*State, error) {
	sum := sha256.New()
	body := &bodyReader{r: r, left: h.Size, total: h.Size, sum: sum, progress: progress}
	st := New()
	decodeErr := st.Restore(body)
	// Read what the decoder left (it stops at the end record), so that
	// the checksum covers the whole body: a damaged file is reported as
	// damaged rather than as whatever its records decode to.
	if _, err := io.Copy(io.Discard, body); err != nil && body.readErr == nil {
		body.readErr = err
	}
	read := h.Size - body.left
	switch {
	case body.left > 0:
		return nil, backupErr(BackupTruncated, body.readErr,
			"the file is truncated: its body ends after %d of %d bytes (an interrupted copy or download?); use a complete copy", read, h.Size)
	case hex.EncodeToString(sum.Sum(nil)) != h.SHA256:
		return nil, backupErr(BackupCorrupt, nil, "checksum mismatch: the body's SHA-256 is %x, the header says %s: "+
			"the file is damaged; use another copy", sum.Sum(nil), h.SHA256)
	}
	if extra, _ := r.Peek(1); len(extra) > 0 {
		return nil, backupErr(BackupCorrupt, nil, "the file goes on after its %d-byte body: it is damaged (two files joined?); use another copy", h.Size)
	}
	if decodeErr != nil {
		return nil, backupErr(BackupCorrupt, decodeErr, "the body does not decode although its checksum matches (%v): "+
			"the file was not written by `troika snapshot save`", decodeErr)
	}
	// Restore checked the records against the snapshot's own end record;
	// the header must describe the same state.
	if got := BackupCountsOf(st); got != h.Counts {
		return nil, backupErr(BackupCorrupt, nil, "the header's counts (%s) are not the body's (%s): the header was edited; use another copy", h.Counts, got)
	}
	if st.Realm() != h.Realm {
		return nil, backupErr(BackupCorrupt, nil, "the header names realm %q, the body holds %q: the header was edited; use another copy", h.Realm, st.Realm())
	}
	return st, nil
}

// bodyReader reads a backup's body: at most its size, hashed as read.
type bodyReader struct {
	r           io.Reader
	left, total int64
	sum         hash.Hash
	progress    func(done, total int64)
	readErr     error // why the body ended early
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	b.sum.Write(p[:n])
	if n > 0 && b.progress != nil {
		b.progress(b.total-b.left, b.total)
	}
	if err == io.EOF && b.left > 0 {
		b.readErr = io.ErrUnexpectedEOF
		return n, io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		b.readErr = err
	}
	return n, err
}

// Format is the snapshot format the snapshot is written in: the oldest
// that holds its records.
func (sn *Snapshot) Format() int { return int(sn.version()) }

// KeepClusterParts makes s, a state decoded from a backup to restore in
// place of current, keep what belongs to the running cluster rather than
// to the backup: the address ownership map and its epoch (which node
// holds which virtual IP and alias, as the running nodes hold them), and
// the digest-nonce secret (the nonces phones hold stay valid). Everything
// else is the backup's.
func (s *State) KeepClusterParts(current *State) {
	current.mu.RLock()
	assignments := make(map[string]*Assignment, len(current.own.assignments))
	for ip, a := range current.own.assignments {
		assignments[ip] = a
	}
	epoch, secret := current.own.epoch, current.nonceSecret
	current.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.own.assignments, s.own.epoch = assignments, epoch
	if secret != nil {
		s.nonceSecret = secret
	}
	s.own.changed()
}

package fsm

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// backupFixtureHeader is the header of the golden backup file: every
// field set. Do not change it: it is what testdata/golden/backup_v1.hex
// holds.
func backupFixtureHeader() BackupHeader {
	return BackupHeader{
		TroikaVersion: "v1.4.0", RaftIndex: 48213, RaftTerm: 7, TakenOn: "sip2",
		Nodes: []BackupNode{
			{ID: "sip1", Addr: "192.0.2.1:7000", Suffrage: "Voter"},
			{ID: "sip2", Addr: "192.0.2.2:7000", Suffrage: "Voter"},
			{ID: "sip3", Addr: "192.0.2.3:7000", Suffrage: "Voter"},
		},
		CreatedAt: time.Date(2026, 12, 2, 3, 4, 5, 678_000_000, time.UTC),
	}
}

const goldenBackupPath = "testdata/golden/backup_v1.hex"

func readGoldenBackup(t *testing.T) []byte {
	t.Helper()
	return readGoldenHex(t, goldenBackupPath, "run go test ./fsm -run Backup -update once to write it")
}

// The backup format is pinned both ways: the fixture's backup is exactly
// the golden file, and the golden file reads back to the fixture's state
// and header. A backup written by this version must stay readable by
// every later one: a changed header needs a new backup format (and this
// golden file and test stay), never a rewritten golden file.
func TestBackupGolden(t *testing.T) {
	data, err := MarshalBackup(snapshotFixtureV3(t), backupFixtureHeader())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(goldenBackupPath); *update && errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(goldenBackupPath, []byte(hex.EncodeToString(data)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden := readGoldenBackup(t)
	if !bytes.Equal(data, golden) {
		t.Fatalf("the backup encoding changed:\n got %.300q\nwant %.300q\nA changed header needs a new backup format; keep reading this one.", data, golden)
	}
	// The first two lines are text a person can read.
	lines := strings.SplitN(string(golden), "\n", 3)
	wantHead := `{"troika_version":"v1.4.0","snapshot_format":3,"raft_index":48213,"raft_term":7,"realm":"troika",` +
		`"nodes":[{"id":"sip1","addr":"192.0.2.1:7000","suffrage":"Voter"},{"id":"sip2","addr":"192.0.2.2:7000","suffrage":"Voter"},` +
		`{"id":"sip3","addr":"192.0.2.3:7000","suffrage":"Voter"}],"taken_on":"sip2","created_at":"2026-12-02T03:04:05.678Z",`
	if lines[0] != "TROIKA-BACKUP 1" || !strings.HasPrefix(lines[1], wantHead) {
		t.Fatalf("golden backup header:\n%s\n%s\nwant the magic line and a header beginning %s", lines[0], lines[1], wantHead)
	}

	h, st, err := ReadBackup(bytes.NewReader(golden), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := backupFixtureHeader()
	want.SnapshotFormat, want.Realm = 3, "troika"
	want.Counts = BackupCounts{Accounts: 5, Tariffs: 3, Aliases: 3, ServicePolicies: 2, Vendors: 2, Connections: 3, Bindings: 5, Calls: 7, XDRs: 3}
	want.Size, want.SHA256 = h.Size, h.SHA256
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("golden backup header:\n got %+v\nwant %+v", h, want)
	}
	if got, want := contentsOf(st), contentsOf(snapshotFixtureV3(t)); !reflect.DeepEqual(got, want) {
		t.Fatalf("golden backup restored:\n got %+v\nwant %+v", got, want)
	}
}

// withHeader rewrites the golden backup's header with edit.
func withHeader(t *testing.T, edit func(*BackupHeader)) []byte {
	t.Helper()
	golden := readGoldenBackup(t)
	br := bufio.NewReader(bytes.NewReader(golden))
	h, err := ReadBackupHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	edit(&h)
	line, _ := json.Marshal(h)
	var out bytes.Buffer
	out.WriteString("TROIKA-BACKUP 1\n")
	out.Write(line)
	out.WriteByte('\n')
	out.ReadFrom(br)
	return out.Bytes()
}

// A damaged, truncated, foreign or newer file is refused with what is
// wrong and what to do, and nothing is decoded from it.
func TestBackupRefusesBadFiles(t *testing.T) {
	golden := readGoldenBackup(t)
	headerLen := bytes.IndexByte(golden[bytes.IndexByte(golden, '\n')+1:], '\n') + bytes.IndexByte(golden, '\n') + 2
	flipped := bytes.Clone(golden)
	flipped[headerLen+len(golden[headerLen:])/2] ^= 0x40
	rawSnapshot := snapshotBytes(t, snapshotFixtureV3(t))

	cases := []struct {
		name string
		data []byte
		kind BackupErrorKind
		msg  string
	}{
		{"empty file", nil, BackupCorrupt, "not a troika backup file"},
		{"a raw raft snapshot", rawSnapshot, BackupCorrupt, "not a troika backup file"},
		{"a text file", []byte("hello\nworld\n"), BackupCorrupt, "not a troika backup file"},
		{"cut in the magic", golden[:7], BackupTruncated, "truncated"},
		{"cut in the header", golden[:headerLen-20], BackupTruncated, "truncated"},
		{"cut after the header", golden[:headerLen], BackupTruncated, "ends after 0 of"},
		{"cut in the body", golden[:headerLen+100], BackupTruncated, "ends after 100 of"},
		{"cut one byte short", golden[:len(golden)-1], BackupTruncated, "truncated"},
		{"a flipped bit in the body", flipped, BackupCorrupt, "checksum mismatch"},
		{"bytes after the body", append(bytes.Clone(golden), "more"...), BackupCorrupt, "goes on after"},
		{"a newer backup format", append([]byte("TROIKA-BACKUP 2\n"), golden[16:]...), BackupNewer, "backup format 2 is newer"},
		{"a newer snapshot format", withHeader(t, func(h *BackupHeader) { h.SnapshotFormat = 9; h.TroikaVersion = "v9.0.0" }), BackupNewer,
			"snapshot of format 9, which this troika cannot read (it reads 1, 2, 3): it was written by troika v9.0.0"},
		{"an unknown header field", bytes.Replace(golden, []byte(`{"troika_version"`), []byte(`{"cluster_uuid":"x","troika_version"`), 1),
			BackupCorrupt, "header is damaged"},
		{"edited counts", withHeader(t, func(h *BackupHeader) { h.Counts.Accounts = 6 }), BackupCorrupt, "header's counts (6 accounts"},
		{"an edited realm", withHeader(t, func(h *BackupHeader) { h.Realm = "other.example" }), BackupCorrupt, `names realm "other.example", the body holds "troika"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, st, err := ReadBackup(bytes.NewReader(c.data), nil)
			var be *BackupError
			if !errors.As(err, &be) {
				t.Fatalf("got %v, want a BackupError", err)
			}
			if be.Kind != c.kind || !strings.Contains(be.Msg, c.msg) {
				t.Fatalf("got kind %d %q, want kind %d containing %q", be.Kind, be.Msg, c.kind, c.msg)
			}
			if st != nil {
				t.Fatal("a refused file gave a state")
			}
		})
	}
}

// Progress reports the body as it is read, up to its size.
func TestBackupReadProgress(t *testing.T) {
	golden := readGoldenBackup(t)
	var last, total int64
	calls := 0
	h, _, err := ReadBackup(bytes.NewReader(golden), func(done, of int64) {
		if done < last {
			t.Fatalf("progress went back from %d to %d", last, done)
		}
		last, total = done, of
		calls++
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last != h.Size || total != h.Size {
		t.Fatalf("progress: %d calls, last %d of %d, want up to %d", calls, last, total, h.Size)
	}
}

// A restored state keeps the running cluster's address ownership and
// nonce secret, and everything else from the backup.
func TestKeepClusterParts(t *testing.T) {
	backup := snapshotFixtureV3(t)
	current := New()
	mustApply(t, current, &InitNonceSecret{Secret: []byte("current-secret-0123456789abcdef!")})
	mustApply(t, current, &AssignAddresses{Now: 1, Changes: []AddressChange{{IP: "10.0.0.100", Node: "n7"}}})
	mustApply(t, current, &AssignAddresses{Now: 2, Changes: []AddressChange{{IP: "10.0.0.100", Node: "n8", PrevEpoch: 1}}})
	watch := backup.AssignmentsChanged()
	backup.KeepClusterParts(current)
	select {
	case <-watch:
	default:
		t.Error("watchers of the assignments were not told")
	}
	got := contentsOf(backup)
	if a := got.Assignments["10.0.0.100"]; len(got.Assignments) != 1 || a.Node != "n8" || a.Epoch != 2 || got.AddrEpoch != 2 {
		t.Fatalf("assignments %v epoch %d, want the current cluster's", got.Assignments, got.AddrEpoch)
	}
	if string(got.NonceSecret) != "current-secret-0123456789abcdef!" {
		t.Fatalf("nonce secret %q, want the current cluster's", got.NonceSecret)
	}
	if got.Realm != "troika" || len(got.Accounts) != 5 || len(got.XDRs) != 3 {
		t.Fatalf("the backup's own records changed: realm %q, %d accounts, %d xdrs", got.Realm, len(got.Accounts), len(got.XDRs))
	}
	// The result writes and reads back as any state.
	r := restored(t, snapshotBytes(t, backup))
	if !reflect.DeepEqual(contentsOf(r), contentsOf(backup)) {
		t.Fatal("the composed state does not survive a snapshot")
	}
}

// DescribeSnapshot gives the body's fields of the header that
// MarshalBackup writes for the same state.
func TestDescribeSnapshot(t *testing.T) {
	golden := readGoldenBackup(t)
	want, err := ReadBackupHeader(bufio.NewReader(bytes.NewReader(golden)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DescribeSnapshot(bytes.NewReader(snapshotBytes(t, snapshotFixtureV3(t))))
	if err != nil {
		t.Fatal(err)
	}
	if got.SnapshotFormat != want.SnapshotFormat || got.Size != want.Size || got.SHA256 != want.SHA256 ||
		got.Realm != want.Realm || got.Counts != want.Counts {
		t.Fatalf("described %+v, want the golden header's body fields %+v", got, want)
	}
	if _, err := DescribeSnapshot(bytes.NewReader(golden[:40])); err == nil {
		t.Fatal("a snapshot that does not decode was described")
	}
}

// A snapshot larger than the reader's buffers keeps its format (the
// first bytes are long gone when the last record is read).
func TestDescribeLargeSnapshot(t *testing.T) {
	s := New()
	cmd := &CreateAccounts{Now: 1}
	for i := range 2000 {
		id := "acct" + strings.Repeat("0", 4) + string(rune('a'+i%26)) + hex.EncodeToString([]byte{byte(i >> 8), byte(i)})
		cmd.Accounts = append(cmd.Accounts, Account{ID: id, Billing: Prepaid, Credentials: HashCredentials(id, "troika", "Pw-long-enough-1")})
	}
	mustApply(t, s, cmd)
	data := snapshotBytes(t, s)
	if len(data) < 128<<10 {
		t.Fatalf("the snapshot is %d bytes: make it larger than the buffers", len(data))
	}
	h, err := DescribeSnapshot(bytes.NewReader(data))
	if err != nil || h.SnapshotFormat != 2 || h.Size != int64(len(data)) || h.Counts.Accounts != 2000 {
		t.Fatalf("described %+v, %v", h, err)
	}
}

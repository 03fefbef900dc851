package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// A snapshot is a header (magic and version byte) followed by type-tagged
// records, each a record type byte, a uvarint body length and a msgpack
// body, and ends with an end record holding the record counts. Records of
// one kind are written sorted by their key, so one state always gives the
// same bytes. Like command types, a record type names one body layout
// forever. testdata/golden/snapshot_v<version>.hex pins each released
// format; each keeps its golden file and restore test for good.
const snapshotMagic = "TROIKA-SNAPSHOT\x00"

// snapshotVersion is the newest format this build writes. It reads every
// format in readableVersions: format 1 stored clear passwords (legacy.go);
// format 3 is format 2 with calls reserved by chunks (recCallQuota). A
// snapshot without such calls is written as format 2, byte for byte what
// builds before quota reservations wrote, so that their nodes still
// restore it during a rolling upgrade (no call is reserved by chunks
// before every voter applies the quota commands).
const snapshotVersion = 3

var readableVersions = map[byte]bool{1: true, 2: true, 3: true}

// version is the format of the snapshot: the oldest that holds its
// records.
func (sn *Snapshot) version() byte {
	if len(sn.quotas) > 0 {
		return 3
	}
	return 2
}

type recordType byte

const (
	recAccountV1    recordType = 0x01 // format 1, legacy.go
	recTariff       recordType = 0x02
	recAlias        recordType = 0x03
	recBinding      recordType = 0x04
	recNonceSecret  recordType = 0x05
	recCall         recordType = 0x06
	recXDR          recordType = 0x07
	recTxKey        recordType = 0x08
	recXDRSeq       recordType = 0x09
	recPolicy       recordType = 0x0a
	recVendorV1     recordType = 0x0b // format 1, legacy.go
	recConnectionV1 recordType = 0x0c // format 1, legacy.go
	recAccount      recordType = 0x0d
	recVendor       recordType = 0x0e
	recConnection   recordType = 0x0f
	recRealm        recordType = 0x10
	recCallQuota    recordType = 0x11 // format 3: a call reserved by chunks, and its quota (quota.go)
	recAssignment   recordType = 0x19 // ownership.go; numbered like its command
	recAddrEpoch    recordType = 0x1a
	recEnd          recordType = 0xff
)

const maxRecordSize = 1 << 20

type snapshotEnd struct {
	Accounts, Tariffs, Aliases, Bindings, Calls, XDRs, TxKeys, Policies, Vendors, Connections int
	Assignments                                                                               int
}

type txKeyRecord struct {
	Key string
	At  int64
}

// quotaCallRecord is a call reserved by chunks with its quota.
type quotaCallRecord struct {
	Call  *Call
	Quota *CallQuota
}

// Snapshot is a point-in-time view of the state, cheap to take: it shares
// the state's immutable records.
type Snapshot struct {
	accounts    []*Account
	tariffs     []*Tariff
	aliases     []*Alias
	bindings    [][]*Binding // one slice per AOR
	nonceSecret []byte
	realm       string
	calls       []*Call
	quotas      map[string]*CallQuota // by call ID
	xdrs        []*XDR
	xdrSeq      uint64
	txKeys      []txKeyRecord
	policies    []*ServicePolicy
	vendors     []*Vendor
	connections []*Connection
	assignments []*Assignment
	addrEpoch   uint64

	sortOnce sync.Once
}

// Snapshot captures the current state. It holds the lock only while copying
// pointers; sorting and writing happen later in WriteTo, concurrently with
// Apply.
func (s *State) Snapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &Snapshot{
		accounts:    slices.Collect(maps.Values(s.accounts)),
		tariffs:     slices.Collect(maps.Values(s.tariffs)),
		aliases:     slices.Collect(maps.Values(s.aliases)),
		bindings:    slices.Collect(maps.Values(s.bindings)),
		nonceSecret: s.nonceSecret,
		realm:       s.realm,
		calls:       slices.Collect(maps.Values(s.calls)),
		quotas:      maps.Clone(s.quotas),
		xdrs:        slices.Clone(s.xdrs.live()),
		xdrSeq:      s.xdrSeq,
		txKeys:      txKeyRecords(s.txKeys),
		policies:    slices.Collect(maps.Values(s.policies)),
		vendors:     slices.Collect(maps.Values(s.vendors)),
		connections: slices.Collect(maps.Values(s.connections)),
		assignments: slices.Collect(maps.Values(s.own.assignments)),
		addrEpoch:   s.own.epoch,
	}
}

func txKeyRecords(m map[string]int64) []txKeyRecord {
	out := make([]txKeyRecord, 0, len(m))
	for k, at := range m {
		out = append(out, txKeyRecord{Key: k, At: at})
	}
	return out
}

// sort puts the records of each kind in the order of their key, so one
// state always gives the same bytes. It sorts the snapshot's own slices,
// outside the state lock.
func (sn *Snapshot) sort() {
	sortBy(sn.accounts, (*Account).id)
	sortBy(sn.tariffs, (*Tariff).id)
	sortBy(sn.aliases, (*Alias).id)
	// By AOR; inside one AOR the bindings keep their stored order (the
	// order they registered in), which is state: queries return it.
	sortBy(sn.bindings, func(bs []*Binding) string {
		if len(bs) == 0 {
			return ""
		}
		return bs[0].AOR
	})
	sortBy(sn.calls, (*Call).id)
	// The xDR log is in Seq order already, the order Restore requires.
	sortBy(sn.txKeys, func(k txKeyRecord) string { return k.Key })
	sortBy(sn.policies, (*ServicePolicy).id)
	sortBy(sn.vendors, (*Vendor).id)
	sortBy(sn.connections, (*Connection).id)
	sortBy(sn.assignments, (*Assignment).id)
}

func sortBy[T any](xs []T, key func(T) string) {
	slices.SortFunc(xs, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}

// WriteTo streams the snapshot to w: the header, then each kind of record
// in a fixed order, each kind sorted by its key, then the end record.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	sn.sortOnce.Do(sn.sort)
	cw := &countingWriter{w: bufio.NewWriterSize(w, 64<<10)}
	sw := &snapshotWriter{w: cw}
	sw.raw([]byte(snapshotMagic))
	sw.raw([]byte{sn.version()})
	var end snapshotEnd
	end.Accounts = writeAll(sw, recAccount, sn.accounts)
	end.Tariffs = writeAll(sw, recTariff, sn.tariffs)
	end.Aliases = writeAll(sw, recAlias, sn.aliases)
	for _, bs := range sn.bindings {
		end.Bindings += writeAll(sw, recBinding, bs)
	}
	if sn.nonceSecret != nil {
		sw.record(recNonceSecret, sn.nonceSecret)
	}
	if sn.realm != "" {
		sw.record(recRealm, sn.realm)
	}
	for _, c := range sn.calls {
		if q, ok := sn.quotas[c.ID]; ok {
			sw.record(recCallQuota, &quotaCallRecord{Call: c, Quota: q})
		} else {
			sw.record(recCall, c)
		}
	}
	end.Calls = len(sn.calls)
	end.XDRs = writeAll(sw, recXDR, sn.xdrs)
	end.TxKeys = writeAll(sw, recTxKey, sn.txKeys)
	sw.record(recXDRSeq, sn.xdrSeq)
	end.Policies = writeAll(sw, recPolicy, sn.policies)
	end.Vendors = writeAll(sw, recVendor, sn.vendors)
	end.Connections = writeAll(sw, recConnection, sn.connections)
	end.Assignments = writeAll(sw, recAssignment, sn.assignments)
	if sn.addrEpoch != 0 {
		sw.record(recAddrEpoch, sn.addrEpoch)
	}
	sw.record(recEnd, &end)
	if sw.err == nil {
		sw.err = cw.w.(*bufio.Writer).Flush()
	}
	if sw.err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", sw.err)
	}
	return cw.n, nil
}

// writeAll writes one record of type t per item and returns how many.
func writeAll[T any](sw *snapshotWriter, t recordType, items []T) int {
	for _, x := range items {
		sw.record(t, x)
	}
	return len(items)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type snapshotWriter struct {
	w   io.Writer
	buf bytes.Buffer
	err error
}

func (sw *snapshotWriter) raw(p []byte) {
	if sw.err == nil {
		_, sw.err = sw.w.Write(p)
	}
}

func (sw *snapshotWriter) record(t recordType, v any) {
	if sw.err != nil {
		return
	}
	sw.buf.Reset()
	enc := msgpack.NewEncoder(&sw.buf)
	enc.UseArrayEncodedStructs(true)
	if sw.err = enc.Encode(v); sw.err != nil {
		return
	}
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = byte(t)
	n := binary.PutUvarint(hdr[1:], uint64(sw.buf.Len()))
	sw.raw(hdr[:1+n])
	sw.raw(sw.buf.Bytes())
}

// restore is a Restore in progress: the fresh state being built and the
// records counted so far.
type restore struct {
	s    *State
	got  snapshotEnd
	done bool // the end record was read and matched
}

// restorers is the table of record types this build reads, each to its
// restorer. A record type missing here is an error naming the type, never
// skipped: every record is state (money, calls, keys), and a replica that
// skipped one would silently diverge from the others. Like command types,
// a record type names one body layout forever: a changed body gets a new
// record type, and the old restorer stays for snapshots already written.
var restorers = map[recordType]func(*restore, []byte) error{
	recAccountV1:    decoded("account", restoreAccountV1),
	recVendorV1:     decoded("vendor", restoreVendorV1),
	recConnectionV1: decoded("connection", restoreConnectionV1),
	recRealm:        decoded("realm", restoreRealm),
	recAccount:      decoded("account", restoreAccount),
	recTariff:       decoded("tariff", restoreTariff),
	recAlias:        decoded("alias", restoreAlias),
	recBinding:      decoded("binding", restoreBinding),
	recNonceSecret:  decoded("nonce secret", restoreNonceSecret),
	recCall:         decoded("call", restoreCall),
	recCallQuota:    decoded("call with a quota", restoreQuotaCall),
	recXDR:          decoded("xdr", restoreXDR),
	recTxKey:        decoded("transaction key", restoreTxKey),
	recXDRSeq:       decoded("xdr sequence", restoreXDRSeq),
	recPolicy:       decoded("service policy", restorePolicy),
	recVendor:       decoded("vendor", restoreVendor),
	recConnection:   decoded("connection", restoreConnection),
	recAssignment:   decoded("address assignment", restoreAssignment),
	recAddrEpoch:    decoded("address epoch", restoreAddrEpoch),
	recEnd:          decoded("end record", restoreEnd),
}

// decoded makes a restorer from a function that keeps one decoded record
// body of type T; name labels the record in errors.
func decoded[T any](name string, keep func(*restore, *T) error) func(*restore, []byte) error {
	return func(r *restore, body []byte) error {
		v := new(T)
		if err := decodeBody(body, v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return keep(r, v)
	}
}

// store keeps a record under its id and counts it.
func store[T interface{ id() string }](m map[string]T, v T, count *int) error {
	m[v.id()] = v
	*count++
	return nil
}

func restoreAccount(r *restore, a *Account) error {
	r.s.internAccount(a)
	return store(r.s.accounts, a, &r.got.Accounts)
}

func restoreTariff(r *restore, t *Tariff) error { return store(r.s.tariffs, t, &r.got.Tariffs) }

func restoreAlias(r *restore, a *Alias) error { return store(r.s.aliases, a, &r.got.Aliases) }

// restoreBinding appends: an AOR's bindings come in their stored order.
func restoreBinding(r *restore, b *Binding) error {
	r.s.internBinding(b)
	r.s.bindings[b.AOR] = append(r.s.bindings[b.AOR], b)
	r.s.nBindings++
	r.got.Bindings++
	return nil
}

func restoreRealm(r *restore, realm *string) error {
	r.s.realm = *realm
	return nil
}

func restoreNonceSecret(r *restore, secret *[]byte) error {
	r.s.nonceSecret = *secret
	return nil
}

// restoreCall also rebuilds what is derived from the calls: the money
// they hold, the calls each account takes part in and the index of their
// legs' Call-IDs.
func restoreCall(r *restore, c *Call) error {
	r.s.putCall(c)
	for _, ch := range c.Charges {
		r.s.reserved[ch.Account] += ch.Reserved
	}
	for _, acct := range c.Parties {
		r.s.activeCalls[acct]++
	}
	r.got.Calls++
	return nil
}

func restoreQuotaCall(r *restore, qc *quotaCallRecord) error {
	if qc.Call == nil || qc.Quota == nil {
		return errors.New("a call with a quota lacks one of them")
	}
	r.s.quotas[qc.Call.ID] = qc.Quota
	return restoreCall(r, qc.Call)
}

func restoreXDR(r *restore, x *XDR) error {
	if n := r.s.xdrs.len(); n > 0 && r.s.xdrs.live()[n-1].Seq >= x.Seq {
		return fmt.Errorf("xdr %d out of order", x.Seq)
	}
	r.s.xdrs.add(x)
	r.s.xdrByCall[x.CallID] = x.Seq
	r.got.XDRs++
	return nil
}

func restoreTxKey(r *restore, k *txKeyRecord) error {
	r.s.txKeys[k.Key] = k.At
	r.got.TxKeys++
	return nil
}

func restoreXDRSeq(r *restore, seq *uint64) error {
	r.s.xdrSeq = *seq
	return nil
}

func restorePolicy(r *restore, p *ServicePolicy) error {
	return store(r.s.policies, p, &r.got.Policies)
}

func restoreVendor(r *restore, v *Vendor) error { return store(r.s.vendors, v, &r.got.Vendors) }

func restoreConnection(r *restore, c *Connection) error {
	return store(r.s.connections, c, &r.got.Connections)
}

func restoreAssignment(r *restore, a *Assignment) error {
	return store(r.s.own.assignments, a, &r.got.Assignments)
}

func restoreAddrEpoch(r *restore, epoch *uint64) error {
	r.s.own.epoch = *epoch
	return nil
}

// restoreEnd checks the counts the writer recorded against the records
// read: a snapshot that lost records is not restored.
func restoreEnd(r *restore, want *snapshotEnd) error {
	if *want != r.got {
		return fmt.Errorf("counts %+v do not match the end record %+v", r.got, *want)
	}
	r.done = true
	return nil
}

// Restore replaces the whole state with the snapshot read from r. The
// state changes only if the snapshot is complete and valid.
func (s *State) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return fmt.Errorf("restore snapshot: read header: %w", err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return errors.New("restore snapshot: not a troika snapshot")
	}
	if !readableVersions[head[len(snapshotMagic)]] {
		return fmt.Errorf("restore snapshot: version %d is unknown to this build", head[len(snapshotMagic)])
	}
	rs := &restore{s: New()}
	body := make([]byte, 0, 512)
	for !rs.done {
		t, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("restore snapshot: truncated, no end record: %w", err)
		}
		size, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("restore snapshot: record length: %w", err)
		}
		if size > maxRecordSize {
			return fmt.Errorf("restore snapshot: record of %d bytes is over the limit", size)
		}
		body = slices.Grow(body[:0], int(size))[:size]
		if _, err := io.ReadFull(br, body); err != nil {
			return fmt.Errorf("restore snapshot: record body: %w", err)
		}
		restorer, ok := restorers[recordType(t)]
		if !ok {
			return fmt.Errorf("restore snapshot: record type %#x is unknown to this build: upgrade this node", t)
		}
		if err := restorer(rs, body); err != nil {
			return fmt.Errorf("restore snapshot: %w", err)
		}
	}
	s.replace(rs.s)
	return nil
}

func (s *State) replace(fresh *State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts = fresh.accounts
	s.tariffs = fresh.tariffs
	s.aliases = fresh.aliases
	s.policies = fresh.policies
	s.vendors = fresh.vendors
	s.connections = fresh.connections
	s.bindings = fresh.bindings
	s.nBindings = fresh.nBindings
	s.nonceSecret = fresh.nonceSecret
	s.realm = fresh.realm
	s.calls = fresh.calls
	s.callByLeg = fresh.callByLeg
	s.quotas = fresh.quotas
	s.reserved = fresh.reserved
	s.activeCalls = fresh.activeCalls
	s.xdrs = fresh.xdrs
	s.xdrByCall = fresh.xdrByCall
	s.xdrSeq = fresh.xdrSeq
	s.txKeys = fresh.txKeys
	s.strs = fresh.strs
	s.aliasesChanged()
	s.own.assignments = fresh.own.assignments
	s.own.epoch = fresh.own.epoch
	s.own.changed()
}

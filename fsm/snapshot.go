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

	"github.com/vmihailenco/msgpack/v5"
)

// A snapshot is a header followed by type-tagged records, each a record
// type byte, a uvarint body length and a msgpack body, and ends with an end
// record holding the record counts. Like command types, a record type names
// one body layout forever.
const snapshotMagic = "TROIKA-SNAPSHOT\x00"

const snapshotVersion = 1

type recordType byte

const (
	recAccount     recordType = 0x01
	recTariff      recordType = 0x02
	recAlias       recordType = 0x03
	recBinding     recordType = 0x04
	recNonceSecret recordType = 0x05
	recCall        recordType = 0x06
	recXDR         recordType = 0x07
	recTxKey       recordType = 0x08
	recXDRSeq      recordType = 0x09
	recPolicy      recordType = 0x0a
	recVendor      recordType = 0x0b
	recConnection  recordType = 0x0c
	recAssignment  recordType = 0x19 // ownership.go; numbered like its command
	recAddrEpoch   recordType = 0x1a
	recEnd         recordType = 0xff
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

// Snapshot is a point-in-time view of the state, cheap to take: it shares
// the state's immutable records.
type Snapshot struct {
	accounts    []*Account
	tariffs     []*Tariff
	aliases     []*Alias
	bindings    [][]*Binding
	nonceSecret []byte
	calls       []*Call
	xdrs        []*XDR
	xdrSeq      uint64
	txKeys      []txKeyRecord
	policies    []*ServicePolicy
	vendors     []*Vendor
	connections []*Connection
	assignments []*Assignment
	addrEpoch   uint64
}

// Snapshot captures the current state. It holds the lock only while copying
// pointers; writing happens later in WriteTo, concurrently with Apply.
func (s *State) Snapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &Snapshot{
		accounts:    slices.Collect(maps.Values(s.accounts)),
		tariffs:     slices.Collect(maps.Values(s.tariffs)),
		aliases:     slices.Collect(maps.Values(s.aliases)),
		bindings:    slices.Collect(maps.Values(s.bindings)),
		nonceSecret: s.nonceSecret,
		calls:       slices.Collect(maps.Values(s.calls)),
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

// WriteTo streams the snapshot to w.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: bufio.NewWriterSize(w, 64<<10)}
	sw := snapshotWriter{w: cw}
	sw.raw([]byte(snapshotMagic))
	sw.raw([]byte{snapshotVersion})
	var end snapshotEnd
	for _, a := range sn.accounts {
		sw.record(recAccount, a)
		end.Accounts++
	}
	for _, t := range sn.tariffs {
		sw.record(recTariff, t)
		end.Tariffs++
	}
	for _, a := range sn.aliases {
		sw.record(recAlias, a)
		end.Aliases++
	}
	for _, bs := range sn.bindings {
		for _, b := range bs {
			sw.record(recBinding, b)
			end.Bindings++
		}
	}
	if sn.nonceSecret != nil {
		sw.record(recNonceSecret, sn.nonceSecret)
	}
	for _, c := range sn.calls {
		sw.record(recCall, c)
		end.Calls++
	}
	for _, x := range sn.xdrs {
		sw.record(recXDR, x)
		end.XDRs++
	}
	for i := range sn.txKeys {
		sw.record(recTxKey, &sn.txKeys[i])
		end.TxKeys++
	}
	sw.record(recXDRSeq, sn.xdrSeq)
	for _, p := range sn.policies {
		sw.record(recPolicy, p)
		end.Policies++
	}
	for _, v := range sn.vendors {
		sw.record(recVendor, v)
		end.Vendors++
	}
	for _, c := range sn.connections {
		sw.record(recConnection, c)
		end.Connections++
	}
	for _, a := range sn.assignments {
		sw.record(recAssignment, a)
		end.Assignments++
	}
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

// Restore replaces the whole state with the snapshot read from r. The
// state changes only if the snapshot is complete and valid.
func (s *State) Restore(r io.Reader) error {
	fresh := New()
	br := bufio.NewReaderSize(r, 64<<10)
	head := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return fmt.Errorf("restore snapshot: read header: %w", err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return errors.New("restore snapshot: not a troika snapshot")
	}
	if head[len(snapshotMagic)] != snapshotVersion {
		return fmt.Errorf("restore snapshot: version %d is unknown to this build", head[len(snapshotMagic)])
	}
	var got snapshotEnd
	body := make([]byte, 0, 512)
	for {
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
		switch recordType(t) {
		case recAccount:
			a := new(Account)
			if err := decodeBody(body, a); err != nil {
				return fmt.Errorf("restore snapshot: account: %w", err)
			}
			fresh.accounts[a.ID] = a
			got.Accounts++
		case recTariff:
			tr := new(Tariff)
			if err := decodeBody(body, tr); err != nil {
				return fmt.Errorf("restore snapshot: tariff: %w", err)
			}
			fresh.tariffs[tr.ID] = tr
			got.Tariffs++
		case recAlias:
			a := new(Alias)
			if err := decodeBody(body, a); err != nil {
				return fmt.Errorf("restore snapshot: alias: %w", err)
			}
			fresh.aliases[a.IP] = a
			got.Aliases++
		case recBinding:
			b := new(Binding)
			if err := decodeBody(body, b); err != nil {
				return fmt.Errorf("restore snapshot: binding: %w", err)
			}
			fresh.bindings[b.AOR] = append(fresh.bindings[b.AOR], b)
			fresh.nBindings++
			got.Bindings++
		case recNonceSecret:
			var secret []byte
			if err := decodeBody(body, &secret); err != nil {
				return fmt.Errorf("restore snapshot: nonce secret: %w", err)
			}
			fresh.nonceSecret = secret
		case recCall:
			c := new(Call)
			if err := decodeBody(body, c); err != nil {
				return fmt.Errorf("restore snapshot: call: %w", err)
			}
			fresh.calls[c.ID] = c
			for _, ch := range c.Charges {
				fresh.reserved[ch.Account] += ch.Reserved
			}
			for _, acct := range c.Parties {
				fresh.activeCalls[acct]++
			}
			got.Calls++
		case recXDR:
			x := new(XDR)
			if err := decodeBody(body, x); err != nil {
				return fmt.Errorf("restore snapshot: xdr: %w", err)
			}
			if n := fresh.xdrs.len(); n > 0 && fresh.xdrs.live()[n-1].Seq >= x.Seq {
				return fmt.Errorf("restore snapshot: xdr %d out of order", x.Seq)
			}
			fresh.xdrs.add(x)
			fresh.xdrByCall[x.CallID] = x.Seq
			got.XDRs++
		case recTxKey:
			var k txKeyRecord
			if err := decodeBody(body, &k); err != nil {
				return fmt.Errorf("restore snapshot: transaction key: %w", err)
			}
			fresh.txKeys[k.Key] = k.At
			got.TxKeys++
		case recXDRSeq:
			if err := decodeBody(body, &fresh.xdrSeq); err != nil {
				return fmt.Errorf("restore snapshot: xdr sequence: %w", err)
			}
		case recPolicy:
			p := new(ServicePolicy)
			if err := decodeBody(body, p); err != nil {
				return fmt.Errorf("restore snapshot: service policy: %w", err)
			}
			fresh.policies[p.ID] = p
			got.Policies++
		case recVendor:
			v := new(Vendor)
			if err := decodeBody(body, v); err != nil {
				return fmt.Errorf("restore snapshot: vendor: %w", err)
			}
			fresh.vendors[v.ID] = v
			got.Vendors++
		case recConnection:
			c := new(Connection)
			if err := decodeBody(body, c); err != nil {
				return fmt.Errorf("restore snapshot: connection: %w", err)
			}
			fresh.connections[c.ID] = c
			got.Connections++
		case recAssignment:
			a := new(Assignment)
			if err := decodeBody(body, a); err != nil {
				return fmt.Errorf("restore snapshot: address assignment: %w", err)
			}
			fresh.own.assignments[a.IP] = a
			got.Assignments++
		case recAddrEpoch:
			if err := decodeBody(body, &fresh.own.epoch); err != nil {
				return fmt.Errorf("restore snapshot: address epoch: %w", err)
			}
		case recEnd:
			var want snapshotEnd
			if err := decodeBody(body, &want); err != nil {
				return fmt.Errorf("restore snapshot: end record: %w", err)
			}
			if want != got {
				return fmt.Errorf("restore snapshot: counts %+v do not match the end record %+v", got, want)
			}
			s.replace(fresh)
			return nil
		default:
			return fmt.Errorf("restore snapshot: record type %#x is unknown to this build: upgrade this node", t)
		}
	}
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
	s.calls = fresh.calls
	s.reserved = fresh.reserved
	s.activeCalls = fresh.activeCalls
	s.xdrs = fresh.xdrs
	s.xdrByCall = fresh.xdrByCall
	s.xdrSeq = fresh.xdrSeq
	s.txKeys = fresh.txKeys
	s.aliasesChanged()
	s.own.assignments = fresh.own.assignments
	s.own.epoch = fresh.own.epoch
	s.own.changed()
}

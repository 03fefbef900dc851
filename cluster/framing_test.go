package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"testing"
)

// The bytes of each link's frames, as nodes of the previous and the next
// version exchange them during a rolling upgrade: they must not change.
func TestFrameBytesPinned(t *testing.T) {
	fwd := onWire(t, func(w *bufio.Writer) error {
		return errors.Join(writeFrame(w, frame{code: opApply, id: 0x0102030405060708, body: []byte("hi")}),
			writeFrame(w, frame{code: respErr, id: 7, body: encodeErrBody(kindRetry, "10.0.0.1:7000", "no")}))
	})
	pinned(t, "forwarding frames", fwd,
		"0000000b"+"01"+"0102030405060708"+"6869",
		"0000001a"+"81"+"0000000000000007"+"01"+"0d"+hex.EncodeToString([]byte("10.0.0.1:7000"))+"6e6f")
	r := bufio.NewReader(bytes.NewReader(fwd))
	if f, err := readFrame(r); err != nil || f.code != opApply || f.id != 0x0102030405060708 || string(f.body) != "hi" {
		t.Fatalf("pinned request read back as %+v, %v", f, err)
	}
	if f, err := readFrame(r); err != nil || f.code != respErr || f.id != 7 {
		t.Fatalf("pinned error response read back as %+v, %v", f, err)
	}

	link := onWire(t, func(w *bufio.Writer) error {
		return errors.Join(writeLinkFrame(w, linkHello, encodeHello("n1", []byte("10.0.0.1"))),
			writeLinkFrame(w, linkData, []byte("hi")))
	})
	pinned(t, "dispatch link frames", link,
		"0000000c"+"48"+"02"+hex.EncodeToString([]byte("n1"))+hex.EncodeToString([]byte("10.0.0.1")),
		"00000003"+"44"+"6869")
	r = bufio.NewReader(bytes.NewReader(link))
	if typ, body, err := readLinkFrame(r); err != nil || typ != linkHello || len(body) != 11 {
		t.Fatalf("pinned hello read back as %c %q %v", typ, body, err)
	}
	if typ, body, err := readLinkFrame(r); err != nil || typ != linkData || string(body) != "hi" {
		t.Fatalf("pinned data read back as %c %q %v", typ, body, err)
	}
}

// onWire returns the bytes write puts through a buffered writer; an error
// fails the test.
func onWire(t testing.TB, write func(w *bufio.Writer) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := write(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pinned compares got with the concatenation of the hex strings want.
func pinned(t *testing.T, what string, got []byte, want ...string) {
	t.Helper()
	var all string
	for _, w := range want {
		all += w
	}
	if g := hex.EncodeToString(got); g != all {
		t.Fatalf("%s changed on the wire:\n got %s\nwant %s", what, g, all)
	}
}

func TestFrameLimits(t *testing.T) {
	data := onWire(t, func(w *bufio.Writer) error { return writeFrame(w, frame{code: opApply, id: 7, body: []byte("hello")}) })
	f, err := readFrame(bufio.NewReader(bytes.NewReader(data)))
	if err != nil || f.code != opApply || f.id != 7 || string(f.body) != "hello" {
		t.Fatalf("round trip: %+v %v", f, err)
	}
	for _, n := range []uint32{0, frameHeader - 1, maxFrameSize + 1, 1<<32 - 1} {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], n)
		if _, err := readFrame(bufio.NewReader(bytes.NewReader(hdr[:]))); !errors.Is(err, errBadFrame) {
			t.Errorf("length %d: err = %v, want errBadFrame", n, err)
		}
	}
	if err := writeFrame(bufio.NewWriter(io.Discard), frame{body: make([]byte, maxFrameSize)}); err == nil {
		t.Error("oversized frame written")
	}
	re, err := decodeErrBody("x", encodeErrBody(kindRetry, "10.0.0.1:7000", "not the leader"))
	if err != nil || re.kind != kindRetry || re.leader != "10.0.0.1:7000" || re.msg != "not the leader" {
		t.Fatalf("error body round trip: %+v %v", re, err)
	}
}

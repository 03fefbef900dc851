package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/troika-sip/troika/internal/testkit"
)

// linkSink collects what a link receives.
type linkSink struct {
	mu     sync.Mutex
	msgs   map[string][]string // by sender
	hellos map[string]string
}

func newLinkSink() *linkSink {
	return &linkSink{msgs: map[string][]string{}, hellos: map[string]string{}}
}

func (s *linkSink) onMessage(from string, msg []byte) {
	s.mu.Lock()
	s.msgs[from] = append(s.msgs[from], string(msg))
	s.mu.Unlock()
}

func (s *linkSink) onHello(from string, hello []byte) {
	s.mu.Lock()
	s.hellos[from] = string(hello)
	s.mu.Unlock()
}

func (s *linkSink) count(from string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs[from])
}

func startLink(t *testing.T, n *Node, sink *linkSink) *Link {
	t.Helper()
	l, err := n.StartLink(LinkConfig{OnMessage: sink.onMessage, OnHello: sink.onHello, Hello: []byte("hello from " + n.ID()),
		QueueLen: 256, Refresh: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// Every node connects to every other over the cluster port; messages
// arrive in order with their sender's id, hellos are exchanged, a node
// restarted is reconnected to, and a second link on a node is refused.
func TestLinkCarriesMessagesInOrder(t *testing.T) {
	c := newCluster(t, 3, nil)
	sinks := make([]*linkSink, 3)
	links := make([]*Link, 3)
	for i, tn := range c.nodes {
		sinks[i] = newLinkSink()
		links[i] = startLink(t, tn.node, sinks[i])
	}
	if _, err := c.nodes[0].node.StartLink(LinkConfig{OnMessage: func(string, []byte) {}}); err == nil {
		t.Fatal("a second link started on one node")
	}
	testkit.WaitFor(t, 10*time.Second, "links up", func() bool {
		for _, l := range links {
			if l.Stats().Connected != 2 {
				return false
			}
		}
		return true
	})
	sinks[1].mu.Lock()
	h := sinks[1].hellos["n1"]
	sinks[1].mu.Unlock()
	if h != "hello from n1" {
		t.Fatalf("n2 got hello %q from n1", h)
	}
	const n = 2000
	for i := range n {
		msg := []byte(fmt.Sprintf("m%05d", i))
		for _, to := range []string{"n2", "n3"} {
			// A queue of 256: when it is full, wait for the writer.
			testkit.WaitFor(t, 5*time.Second, "room in the queue to "+to, func() bool { return links[0].Send(to, msg) })
		}
	}
	testkit.WaitFor(t, 10*time.Second, "messages", func() bool { return sinks[1].count("n1") == n && sinks[2].count("n1") == n })
	for _, s := range sinks[1:] {
		s.mu.Lock()
		for i, m := range s.msgs["n1"] {
			if m != fmt.Sprintf("m%05d", i) {
				s.mu.Unlock()
				t.Fatalf("message %d is %q: out of order", i, m)
			}
		}
		s.mu.Unlock()
	}
	if st := links[0].Stats(); st.Sent != 2*n || st.Connected != 2 {
		t.Fatalf("stats %+v, want %d sent", st, 2*n)
	}
	if links[0].Send("nobody", []byte("x")) || links[0].Send("n2", make([]byte, MaxLinkMessage+1)) {
		t.Fatal("sent to an unknown node, or an oversized message")
	}

	// Restart n3 with a new link: n1 reconnects.
	links[2].Close()
	c.stop(2)
	testkit.WaitFor(t, 10*time.Second, "n1 sees n3 gone", func() bool { return !links[0].Connected("n3") })
	if links[0].Send("n3", []byte("lost")) {
		t.Fatal("a message for a node that is down was queued")
	}
	c.start(2)
	sinks[2] = newLinkSink()
	links[2] = startLink(t, c.nodes[2].node, sinks[2])
	testkit.WaitFor(t, 10*time.Second, "n1 reconnects to n3", func() bool { return links[0].Connected("n3") })
	if !links[0].Send("n3", []byte("again")) {
		t.Fatal("not sent after reconnecting")
	}
	testkit.WaitFor(t, 5*time.Second, "message after restart", func() bool { return sinks[2].count("n1") == 1 })
}

// A connection of the link type with the wrong cluster key is refused by
// the handshake; one that does not start with a hello is closed.
func TestLinkAuthentication(t *testing.T) {
	c := newCluster(t, 1, nil)
	sink := newLinkSink()
	startLink(t, c.nodes[0].node, sink)
	addr := c.nodes[0].node.Addr()
	if _, err := dialAuth(addr, newKey(t), connLink, time.Second); err == nil {
		t.Fatal("a link connection with the wrong key was accepted")
	}
	conn, err := dialAuth(addr, c.key, connLink, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := bufio.NewWriter(conn)
	writeLinkFrame(w, linkData, []byte("no hello first"))
	w.Flush()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection stayed open")
	}
	if sink.count("") != 0 {
		t.Fatal("a message without a hello was delivered")
	}
}

func TestLinkFrames(t *testing.T) {
	r := bufio.NewReader(bytes.NewReader(onWire(t, func(w *bufio.Writer) error {
		return errors.Join(writeLinkFrame(w, linkHello, encodeHello("sip-1", []byte("10.0.0.1"))),
			writeLinkFrame(w, linkData, []byte("payload")),
			writeLinkFrame(w, linkData, nil))
	})))
	if err := writeLinkFrame(bufio.NewWriter(io.Discard), linkData, make([]byte, MaxLinkMessage+1)); err == nil {
		t.Fatal("oversized frame written")
	}
	typ, body, err := readLinkFrame(r)
	id, data, herr := decodeHello(body)
	if err != nil || herr != nil || typ != linkHello || id != "sip-1" || string(data) != "10.0.0.1" {
		t.Fatalf("hello: %c %q %q %v %v", typ, id, data, err, herr)
	}
	if typ, body, err := readLinkFrame(r); err != nil || typ != linkData || string(body) != "payload" {
		t.Fatalf("data: %c %q %v", typ, body, err)
	}
	if typ, body, err := readLinkFrame(r); err != nil || typ != linkData || len(body) != 0 {
		t.Fatalf("empty data: %c %q %v", typ, body, err)
	}
	for _, bad := range [][]byte{{0, 0, 0, 0}, {0, 2, 0, 2, 'D'}, {0, 0, 0, 2, 'X', 1}, {0, 0, 0, 5, 'D', 1}, {0, 0}} {
		if _, _, err := readLinkFrame(bufio.NewReader(bytes.NewReader(bad))); err == nil {
			t.Errorf("frame %x accepted", bad)
		}
	}
	if _, _, err := decodeHello(encodeHello("bad id!", nil)); err == nil {
		t.Fatal("hello with a bad node id accepted")
	}
}

// FuzzLinkFrame: the frame decoder never panics on any byte stream and
// never returns a body over the limit; what it decodes re-encodes to the
// bytes it read. Seeds: testdata/fuzz/FuzzLinkFrame.
func FuzzLinkFrame(f *testing.F) {
	f.Add(onWire(f, func(w *bufio.Writer) error {
		return errors.Join(writeLinkFrame(w, linkHello, encodeHello("n1", []byte("10.0.0.1,10.0.0.2"))),
			writeLinkFrame(w, linkData, []byte("I\x00\x00\x00\x00\x00\x00\x00\x01\x11udp:10.0.0.1:5060\x04\x0a\x00\x00\x09\x13\xc4OPTIONS")))
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var out bytes.Buffer
		ow := bufio.NewWriter(&out)
		for {
			typ, body, err := readLinkFrame(r)
			if err != nil {
				break
			}
			if len(body) > MaxLinkMessage {
				t.Fatalf("body of %d bytes", len(body))
			}
			if typ == linkHello {
				decodeHello(body)
			}
			writeLinkFrame(ow, typ, body)
		}
		ow.Flush()
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatal("decoded frames do not re-encode to the input")
		}
	})
}

package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The handshake every internal connection starts with:
//
//	server -> client: magic "TRK\x01" | 32-byte random challenge
//	client -> server: connection type | HMAC-SHA256(key, challenge || type)
//	server -> client: ackOK, or ackRefused (ackTLSRequired) and close
//
// After ackOK the connection belongs to the handler of its type.
//
// With [cluster.tls] (tls.go, port.go) the server offers TLS: its
// challenge starts with tlsOffer (the other 28 bytes stay random; an
// older node just signs all 32). A client that dials TLS answers the
// offer with a TLS ClientHello instead of a connection type: its first
// byte, 0x16, is no connection type, so the server tells the two apart
// by it. Once TLS is up (both sides present a certificate of the cluster
// CA), the handshake above runs again, whole and unchanged, inside TLS:
// the cluster key still has to be proven (defense in depth: a certificate
// of a CA shared with another cluster is not enough).
const (
	handshakeMagic   = "TRK\x01"
	challengeLen     = 32
	macLen           = sha256.Size
	handshakeTimeout = 5 * time.Second

	// tlsOffer starts the challenge of a node that accepts TLS.
	tlsOffer = "TLS\x01"
	// tlsHandshakeRecord is the first byte of a TLS ClientHello.
	tlsHandshakeRecord byte = 0x16

	connRaft    byte = 'R'
	connForward byte = 'F'
	connLink    byte = 'L' // the SIP dispatch link (link.go)

	ackOK      byte = 0x01
	ackRefused byte = 0x00
	// ackTLSRequired refuses a plaintext answer: the server requires TLS
	// (verify_incoming). An older client reads it as a refusal.
	ackTLSRequired byte = 0x02
)

// errAuthRefused is returned by the client side of a handshake the server
// refused: the two nodes do not share the cluster key.
var errAuthRefused = errors.New("refused the cluster key: do both nodes use the same key?")

// errTLSRequired is returned by the client side of a plaintext handshake
// the server refused because it requires TLS.
var errTLSRequired = errors.New("the peer requires TLS (its cluster.tls.verify_incoming = true): give this node [cluster.tls] with verify_outgoing = true")

// errWrongKey: the client's answer was not signed with the cluster key.
var errWrongKey = errors.New("wrong cluster key")

func handshakeMAC(key, challenge []byte, typ byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(challenge)
	m.Write([]byte{typ})
	return m.Sum(nil)
}

// newHello is the server's first message: the magic and a fresh
// challenge, which starts with tlsOffer when offerTLS.
func newHello(offerTLS bool) []byte {
	hello := make([]byte, len(handshakeMagic)+challengeLen)
	copy(hello, handshakeMagic)
	challenge := hello[len(handshakeMagic):]
	rand.Read(challenge) // never fails: crypto/rand crashes the program rather than return weak bytes
	if offerTLS {
		copy(challenge, tlsOffer)
	}
	return hello
}

// checkAnswer reads the rest of a client's answer whose first byte, the
// connection type, was typ, checks it against challenge and acknowledges
// it. The caller closes conn on error.
func checkAnswer(conn net.Conn, key, challenge []byte, typ byte) (byte, error) {
	mac := make([]byte, macLen)
	if _, err := io.ReadFull(conn, mac); err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	if !hmac.Equal(handshakeMAC(key, challenge, typ), mac) {
		_, _ = conn.Write([]byte{ackRefused})
		return 0, errWrongKey
	}
	if typ != connRaft && typ != connForward && typ != connLink {
		_, _ = conn.Write([]byte{ackRefused})
		return 0, fmt.Errorf("unknown connection type %#x", typ)
	}
	if _, err := conn.Write([]byte{ackOK}); err != nil {
		return 0, fmt.Errorf("send ack: %w", err)
	}
	return typ, nil
}

// serverHandshake authenticates an accepted connection and returns its
// type: the plain handshake, without a TLS offer (inside TLS, and in
// tests). The caller closes conn on error.
func serverHandshake(conn net.Conn, key []byte, timeout time.Duration) (byte, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	hello := newHello(false)
	if _, err := conn.Write(hello); err != nil {
		return 0, fmt.Errorf("send challenge: %w", err)
	}
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	typ, err := checkAnswer(conn, key, hello[len(handshakeMagic):], first[0])
	if err != nil {
		return 0, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return 0, err
	}
	return typ, nil
}

// readChallenge reads the server's first message; offered reports a TLS
// offer.
func readChallenge(conn net.Conn) (challenge []byte, offered bool, err error) {
	hello := make([]byte, len(handshakeMagic)+challengeLen)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return nil, false, fmt.Errorf("read challenge: %w", err)
	}
	if string(hello[:len(handshakeMagic)]) != handshakeMagic {
		return nil, false, errors.New("not a troika cluster port (bad handshake magic)")
	}
	challenge = hello[len(handshakeMagic):]
	return challenge, string(challenge[:len(tlsOffer)]) == tlsOffer, nil
}

// answerChallenge proves knowledge of key, asks for a connection of type
// typ and reads the server's verdict.
func answerChallenge(conn net.Conn, key, challenge []byte, typ byte) error {
	answer := make([]byte, 0, 1+macLen)
	answer = append(answer, typ)
	answer = append(answer, handshakeMAC(key, challenge, typ)...)
	if _, err := conn.Write(answer); err != nil {
		return fmt.Errorf("send answer: %w", err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return fmt.Errorf("read ack: %w", err)
	}
	switch ack[0] {
	case ackOK:
		return nil
	case ackTLSRequired:
		return errTLSRequired
	default:
		return errAuthRefused
	}
}

// clientHandshake proves knowledge of key to the server at the other end
// of conn and asks for a connection of type typ, in the plain handshake
// (inside TLS, or without it).
func clientHandshake(conn net.Conn, key []byte, typ byte, timeout time.Duration) error {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	challenge, _, err := readChallenge(conn)
	if err != nil {
		return err
	}
	if err := answerChallenge(conn, key, challenge, typ); err != nil {
		return err
	}
	return conn.SetDeadline(time.Time{})
}

// dialAuth opens a plaintext authenticated connection of type typ to
// addr (what a node without [cluster.tls] dials; tests).
func dialAuth(addr string, key []byte, typ byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: dialKeepAlive}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := clientHandshake(conn, key, typ, timeout); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	return conn, nil
}

const dialKeepAlive = 15 * time.Second

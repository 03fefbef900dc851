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
//	server -> client: ackOK, or ackRefused and close
//
// After ackOK the connection belongs to the handler of its type.
const (
	handshakeMagic   = "TRK\x01"
	challengeLen     = 32
	macLen           = sha256.Size
	handshakeTimeout = 5 * time.Second

	connRaft    byte = 'R'
	connForward byte = 'F'
	connLink    byte = 'L' // the SIP dispatch link (link.go)

	ackOK      byte = 0x01
	ackRefused byte = 0x00
)

// errAuthRefused is returned by the client side of a handshake the server
// refused: the two nodes do not share the cluster key.
var errAuthRefused = errors.New("refused the cluster key: do both nodes use the same key?")

func handshakeMAC(key, challenge []byte, typ byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(challenge)
	m.Write([]byte{typ})
	return m.Sum(nil)
}

// serverHandshake authenticates an accepted connection and returns its type.
// The caller closes conn on error.
func serverHandshake(conn net.Conn, key []byte, timeout time.Duration) (byte, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	hello := make([]byte, len(handshakeMagic)+challengeLen)
	copy(hello, handshakeMagic)
	challenge := hello[len(handshakeMagic):]
	if _, err := rand.Read(challenge); err != nil {
		return 0, fmt.Errorf("challenge: %w", err)
	}
	if _, err := conn.Write(hello); err != nil {
		return 0, fmt.Errorf("send challenge: %w", err)
	}
	answer := make([]byte, 1+macLen)
	if _, err := io.ReadFull(conn, answer); err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	typ := answer[0]
	want := handshakeMAC(key, challenge, typ)
	if !hmac.Equal(want, answer[1:]) {
		_, _ = conn.Write([]byte{ackRefused})
		return 0, errors.New("wrong cluster key")
	}
	if typ != connRaft && typ != connForward && typ != connLink {
		_, _ = conn.Write([]byte{ackRefused})
		return 0, fmt.Errorf("unknown connection type %#x", typ)
	}
	if _, err := conn.Write([]byte{ackOK}); err != nil {
		return 0, fmt.Errorf("send ack: %w", err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return 0, err
	}
	return typ, nil
}

// clientHandshake proves knowledge of key to the server at the other end
// of conn and asks for a connection of type typ.
func clientHandshake(conn net.Conn, key []byte, typ byte, timeout time.Duration) error {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	hello := make([]byte, len(handshakeMagic)+challengeLen)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return fmt.Errorf("read challenge: %w", err)
	}
	if string(hello[:len(handshakeMagic)]) != handshakeMagic {
		return errors.New("not a troika cluster port (bad handshake magic)")
	}
	answer := make([]byte, 0, 1+macLen)
	answer = append(answer, typ)
	answer = append(answer, handshakeMAC(key, hello[len(handshakeMagic):], typ)...)
	if _, err := conn.Write(answer); err != nil {
		return fmt.Errorf("send answer: %w", err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return fmt.Errorf("read ack: %w", err)
	}
	if ack[0] != ackOK {
		return errAuthRefused
	}
	return conn.SetDeadline(time.Time{})
}

// dialAuth opens an authenticated connection of type typ to addr.
func dialAuth(addr string, key []byte, typ byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
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

package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// ServeUDP serves sock's sipgo stack on uc until ctx is done or uc is
// closed, then closes uc. A reader that ends to forget remote addresses
// (UDPConn) is started again on the same socket.
func ServeUDP(ctx context.Context, sock *Socket, uc *UDPConn) error {
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()
	defer uc.Close()
	for {
		// Again after a reader restart, which drops the pool entry.
		sock.Listen(uc)
		err := sock.Srv.ServeUDP(uc) // returns when the reader ends
		if uc.closed.Load() {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// StreamLimits bound the connections of a TCP or TLS socket.
type StreamLimits struct {
	// Idle closes a connection that has sent nothing for this long.
	Idle time.Duration
	// MaxConns bounds the open connections; more are closed on accept,
	// each counted by Refused (which may be nil).
	MaxConns int
	Refused  func()
	// TLS, when not nil, adds the TLS layer with this configuration (for
	// a plain TCP listener serving a tls socket).
	TLS *tls.Config
}

// ServeStream serves sock's sipgo stack over the connections of l until
// ctx is done or l is closed, then closes l and its connections.
func ServeStream(ctx context.Context, sock *Socket, l net.Listener, lim StreamLimits) error {
	tl := &tcpListener{Listener: l, idle: lim.Idle, max: lim.MaxConns, refused: lim.Refused}
	var ln net.Listener = tl
	if lim.TLS != nil {
		ln = tls.NewListener(tl, lim.TLS)
	}
	stop := context.AfterFunc(ctx, func() { tl.Close() })
	defer stop()
	defer tl.Close()
	var err error
	if sock.Transport == "tls" {
		err = sock.Srv.ServeTLS(ln)
	} else {
		err = sock.Srv.ServeTCP(ln)
	}
	if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
		return nil
	}
	return err
}

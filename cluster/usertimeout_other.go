//go:build !linux

package cluster

import (
	"net"
	"time"
)

// setUserTimeout is Linux only; elsewhere TCP keepalive alone notices a
// dead peer, later.
func setUserTimeout(net.Conn, time.Duration) {}

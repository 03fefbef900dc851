//go:build linux

package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/troika-sip/troika/internal/netns"
)

// run runs a command and returns its combined output; the error includes
// the command and its output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ip runs iproute2.
func ip(args ...string) error {
	_, err := run(context.Background(), "ip", args...)
	return err
}

// openIn runs open (a dial, a listen) inside the named namespace and
// returns what it opened: the socket stays in that namespace.
func openIn[T any](ns string, open func() (T, error)) (T, error) {
	var v T
	err := netns.Do(ns, func() error {
		var err error
		v, err = open()
		return err
	})
	return v, err
}

// dialIn dials from inside the named namespace.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	return openIn(ns, func() (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
}

// ifaFlags is IFA_FLAGS (32-bit address flags), missing from package syscall.
const ifaFlags = 8

// netlinkSock is a NETLINK_ROUTE socket made inside one namespace: its
// dumps list that namespace's addresses.
type netlinkSock struct {
	fd  int
	seq uint32
	buf []byte
}

func openNetlink(ns string) (*netlinkSock, error) {
	s := &netlinkSock{fd: -1, buf: make([]byte, 1<<16)}
	err := netns.Do(ns, func() error {
		fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlink socket in %s: %w", ns, err)
	}
	if err := syscall.Bind(s.fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		s.close()
		return nil, err
	}
	tv := syscall.NsecToTimeval(int64(time.Second))
	if err := syscall.SetsockoptTimeval(s.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *netlinkSock) close() {
	if s.fd >= 0 {
		syscall.Close(s.fd)
		s.fd = -1
	}
}

// NSAddr is one address configured in a namespace.
type NSAddr struct {
	Prefix netip.Prefix // address and prefix length
	Dev    string       // interface label (IPv4) or index ("if3", IPv6)
	Flags  uint32       // IFA_F_*: tentative, dadfailed, secondary...
}

// Tentative reports an IPv6 address still in duplicate address detection.
func (a NSAddr) Tentative() bool { return a.Flags&syscall.IFA_F_TENTATIVE != 0 }

// addrs dumps every address of the namespace (RTM_GETADDR), like
// `ip -o addr`.
func (s *netlinkSock) addrs() ([]NSAddr, error) {
	s.seq++
	req := make([]byte, syscall.NLMSG_HDRLEN+syscall.SizeofRtGenmsg+3) // padded to 4 bytes
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], syscall.RTM_GETADDR)
	binary.NativeEndian.PutUint16(req[6:8], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:12], s.seq)
	req[syscall.NLMSG_HDRLEN] = syscall.AF_UNSPEC
	if err := syscall.Sendto(s.fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []NSAddr
	for {
		n, _, err := syscall.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(s.buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != s.seq {
				continue // the tail of an earlier, abandoned dump
			}
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				return out, nil
			case syscall.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data[:4])); e != 0 {
						return nil, syscall.Errno(-e)
					}
				}
				return out, nil
			case syscall.RTM_NEWADDR:
				if a, ok := parseAddr(&m); ok {
					out = append(out, a)
				}
			}
		}
	}
}

func parseAddr(m *syscall.NetlinkMessage) (NSAddr, bool) {
	if len(m.Data) < syscall.SizeofIfAddrmsg {
		return NSAddr{}, false
	}
	hdr := (*syscall.IfAddrmsg)(unsafe.Pointer(&m.Data[0]))
	attrs, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return NSAddr{}, false
	}
	var addr, local []byte
	a := NSAddr{Dev: fmt.Sprintf("if%d", hdr.Index), Flags: uint32(hdr.Flags)}
	for _, at := range attrs {
		switch at.Attr.Type {
		case syscall.IFA_ADDRESS:
			addr = at.Value
		case syscall.IFA_LOCAL:
			local = at.Value
		case syscall.IFA_LABEL:
			a.Dev = strings.TrimRight(string(at.Value), "\x00")
		case ifaFlags:
			if len(at.Value) >= 4 {
				a.Flags = binary.NativeEndian.Uint32(at.Value)
			}
		}
	}
	if local != nil { // point-to-point links: IFA_LOCAL is ours, IFA_ADDRESS the peer's
		addr = local
	}
	ip, ok := netip.AddrFromSlice(addr)
	if !ok {
		return NSAddr{}, false
	}
	a.Prefix = netip.PrefixFrom(ip.Unmap(), int(hdr.Prefixlen))
	return a, true
}

// netnsNames lists the named network namespaces.
func netnsNames() ([]string, error) {
	ents, err := os.ReadDir(netns.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

// killNetnsProcs SIGKILLs every process inside the namespace and waits
// (briefly) until none is left.
func killNetnsProcs(ns string) error {
	var last string
	for range 50 {
		out, err := run(context.Background(), "ip", "netns", "pids", ns)
		if err != nil {
			return err
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return nil
		}
		last = out
		for _, p := range pids {
			var pid int
			if _, err := fmt.Sscan(p, &pid); err == nil && pid > 1 && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("namespace %s: processes %s survive SIGKILL", ns, strings.TrimSpace(last))
}

// deleteNetns kills the processes inside a namespace and deletes it (with
// its interfaces and iptables rules).
func deleteNetns(ns string) error {
	if _, err := os.Stat(netns.Dir + "/" + ns); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := killNetnsProcs(ns)
	return errors.Join(err, ip("netns", "delete", ns))
}

//go:build !linux

package cluster

import "errors"

// NewNetlinkAddrs is Linux only: address management needs netlink.
func NewNetlinkAddrs(iface string) (AddrOps, error) {
	return nil, errors.New("virtual IP management ([vip]) needs Linux")
}

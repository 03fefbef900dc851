// Package depspin is temporary: it keeps pinned dependencies in go.mod while
// the packages that use them are being written. Delete it once they are.
package depspin

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/dlclark/regexp2"
	_ "github.com/emiago/sipgo"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/icholy/digest"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
)

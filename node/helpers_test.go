package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
)

// soloConfigNoAdmin is the smallest configuration a node loads but for
// its [admin] section: one bootstrapping voter on loopback.
const soloConfigNoAdmin = `node_id = "a"
data_dir = "/tmp/x"
[cluster]
bind = "127.0.0.1:7000"
key = "0123456789abcdef0123"
bootstrap = true
[sip]
addresses = ["127.0.0.1"]
`

// soloConfig is soloConfigNoAdmin with an admin token: the smallest
// configuration a node loads.
const soloConfig = soloConfigNoAdmin + `[admin]
token = "0123456789abcdef0123"
`

// startNodes starts a node per configuration (defaults applied) in this
// process, all at once, and stops them when the test ends; a node that
// fails to start fails the test. cancels[i] stops node i.
func startNodes(t *testing.T, cfgs []Config) (nodes []*Node, cancels []context.CancelFunc) {
	t.Helper()
	nodes, cancels = make([]*Node, len(cfgs)), make([]context.CancelFunc, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		c.applyDefaults()
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		cfgs[i] = c
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			if testing.Verbose() {
				log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_node", c.NodeID)
			}
			nodes[i], errs[i] = Start(ctx, c, log)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for i, n := range nodes {
			cancels[i]()
			if n != nil {
				n.Wait()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return nodes, cancels
}

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

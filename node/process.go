package node

import (
	"log/slog"

	"github.com/troika-sip/troika/sipstack"
)

// ConfigureProcess makes the settings a node needs that belong to the
// whole process, not to one node: today sipgo's UDP size limit and its
// package-level logger (sipstack.ConfigureLibrary). The program calls it
// once, before Start, from one goroutine; Start fails without it. A test
// process running several nodes calls it once in TestMain.
func ConfigureProcess(log *slog.Logger) { sipstack.ConfigureLibrary(log) }

package node

import (
	"log/slog"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	ConfigureProcess(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

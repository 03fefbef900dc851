package sipstack

import (
	"log/slog"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	ConfigureLibrary(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

package chaos

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/troika-sip/troika/internal/testkit"
)

// SIPpScenario returns the path of one of sipstack's SIPp scenarios
// (sipstack/testdata/NAME): the callers and callees of the call loads.
func SIPpScenario(name string) (string, error) {
	root, err := testkit.ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "sipstack", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("SIPp scenario %s: %w", name, err)
	}
	return p, nil
}

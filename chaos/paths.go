package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// module is troika's module path: ModuleRoot looks for its go.mod.
const module = "github.com/troika-sip/troika"

// ModuleRoot returns the directory of troika's go.mod, the working
// directory or one above it: the chaos command runs in a checkout.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			first := ""
			if sc.Scan() {
				first = strings.TrimSpace(sc.Text())
			}
			f.Close()
			if first == "module "+module {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside a troika checkout (no go.mod of " + module + " above the working directory): run from the repository")
		}
		dir = parent
	}
}

// SIPpScenario returns the path of one of sipstack's SIPp scenarios
// (sipstack/testdata/NAME): the callers and callees of the call loads.
func SIPpScenario(name string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "sipstack", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("SIPp scenario %s: %w", name, err)
	}
	return p, nil
}

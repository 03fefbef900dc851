package testkit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// BinaryEnv names a prebuilt troika binary for the tests to use instead of
// building one (CI may build it once up front).
const BinaryEnv = "TROIKA_TEST_BINARY"

// Binary returns the path of the troika binary built from this checkout
// with the given go build flags (for example an -ldflags version stamp).
//
// Every test package of one `go test ./...` run shares one build per set
// of flags: the binary is kept under the system temporary directory,
// named after a hash of the module's Go sources, go.mod, go.sum, the Go
// version and the flags, and a file lock lets one package build it while
// the others wait. Without flags, $TROIKA_TEST_BINARY wins when set.
func Binary(flags ...string) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" && len(flags) == 0 {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, p, err)
		}
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	key, err := sourceKey(root, flags)
	if err != nil {
		return "", err
	}
	base := filepath.Join(os.TempDir(), "troika-testbin")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(base, key+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	bin := filepath.Join(base, key, "troika")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	removeStale(base, key)
	tmp := bin + ".tmp"
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	args := append([]string{"build", "-o", tmp}, flags...)
	args = append(args, "./cmd/troika")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build troika: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// BinaryWithTags is Binary built with the given build tags (go build
// -tags=a,b), e.g. one of the deliberately broken builds the chaos
// checkers are tested against (chaosbroken_set, chaosbroken_bank,
// chaosbroken_holder: chaos/broken_test.go). Each set of tags and flags is
// built and cached on its own; no tags is Binary(flags...).
func BinaryWithTags(tags []string, flags ...string) (string, error) {
	if len(tags) == 0 {
		return Binary(flags...)
	}
	return Binary(append([]string{"-tags=" + strings.Join(tags, ",")}, flags...)...)
}

// module is troika's module path: ModuleRoot looks for its go.mod.
const module = "github.com/troika-sip/troika"

// ModuleRoot returns the directory of troika's go.mod, the working
// directory or one above it: the tests and the chaos command run in a
// checkout.
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

// sourceKey hashes what the binary is built from.
func sourceKey(root string, flags []string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", runtime.Version(), strings.Join(flags, "\x00"))
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !(strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")) && name != "go.mod" && name != "go.sum" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		rel, _ := filepath.Rel(root, path)
		fmt.Fprintf(h, "%s\x00", rel)
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("hash the sources: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// removeStale removes binaries of other sources left for more than a day.
func removeStale(base, keep string) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if !e.IsDir() || e.Name() == keep {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			os.RemoveAll(filepath.Join(base, e.Name()))
			os.Remove(filepath.Join(base, e.Name()+".lock"))
		}
	}
}

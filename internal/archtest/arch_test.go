// Package archtest checks troika's dependency rule (docs/ARCHITECTURE.md):
// every package's imports point down its layer table, and the pure
// packages import neither sipgo nor raft.
package archtest

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/troika-sip/troika"

// layers lists troika's packages from the top down. A package may import
// packages of lower layers only (none of its own layer, none above);
// internal/* are tools any package may import.
var layers = [][]string{
	{"cmd/troika", "chaos/cmd/chaos", "bench/sipload"},
	{"node"},
	{"chaos"},
	{"admin", "sipstack"},
	{"sipstack/b2bua", "sipstack/registrar", "sipstack/dispatch", "sipstack/keepalive"},
	{"sipstack/auth", "sipstack/transport"},
	{"sipstack/sipmsg", "cluster"},
	{"fsm"},
	{"billing"},
}

// pure packages hold domain logic only.
var pure = []string{"fsm", "billing"}

// forbiddenInPure are modules the pure packages must not depend on, even
// indirectly.
var forbiddenInPure = []string{"github.com/emiago/sipgo", "github.com/hashicorp/raft"}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = p
	}
	return pkgs
}

func TestImportsPointDown(t *testing.T) {
	layer := map[string]int{}
	for i, names := range layers {
		for _, n := range names {
			layer[n] = i
		}
	}
	for name, p := range listPackages(t) {
		if strings.HasPrefix(name, "internal/") {
			continue
		}
		own, ok := layer[name]
		if !ok {
			t.Errorf("package %s is in no layer of internal/archtest: place it (and in docs/ARCHITECTURE.md)", name)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if strings.HasPrefix(dep, "internal/") {
				continue
			}
			if l, ok := layer[dep]; ok && l <= own {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", name, own, dep, l)
			}
		}
	}
}

func TestPurePackagesStayPure(t *testing.T) {
	pkgs := listPackages(t)
	for _, name := range pure {
		p, ok := pkgs[name]
		if !ok {
			t.Fatalf("no package %s", name)
		}
		for _, d := range p.Deps {
			for _, f := range forbiddenInPure {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s depends on %s", name, d)
				}
			}
		}
	}
}

// Package buildinfo says which version and commit a troika binary was
// built from: the linker's -X stamps when a release build sets them, else
// what the Go toolchain recorded (the main module's version and the VCS
// revision, with -buildvcs), else "dev" and an unknown commit.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Info is what a binary reports about its build.
type Info struct {
	// Version is the release version (-X), else the main module's version
	// as the toolchain recorded it (a pseudo-version such as
	// v0.0.0-20260102150405-1a2b3c4d5e6f+dirty when built from a VCS
	// checkout), else "dev".
	Version string `json:"version"`
	// Commit is the VCS revision (-X, else vcs.revision), "" when unknown
	// (a build with -buildvcs=false, or outside a checkout).
	Commit string `json:"commit"`
	// Modified: the working tree had changes the commit does not hold
	// (vcs.modified), so the commit alone does not say what was built.
	Modified bool `json:"modified"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// DevVersion is the version of a build that carries none.
const DevVersion = "dev"

// Read returns the running binary's Info. version and commit are the
// linker's stamps (-ldflags "-X ...=..."); empty ones are filled from
// the toolchain's build information.
func Read(version, commit string) Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return Resolve(version, commit, bi)
}

// Resolve is Read for the given build information (nil: none).
func Resolve(version, commit string, bi *debug.BuildInfo) Info {
	info := Info{Version: strings.TrimSpace(version), Commit: strings.TrimSpace(commit)}
	if bi != nil {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		vcsCommit := ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsCommit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
		switch {
		case info.Commit == "":
			info.Commit = vcsCommit
		case vcsCommit != "" && !strings.HasPrefix(vcsCommit, info.Commit) && !strings.HasPrefix(info.Commit, vcsCommit):
			// A stamped commit that is not the checkout's: the
			// toolchain's modified flag is about another tree.
			info.Modified = false
		}
	}
	if info.Version == "" {
		info.Version = DevVersion
	}
	return info
}

// ShortCommit is the commit's first 12 characters, with "+modified" when
// the tree had changes; "unknown" when the commit is not known.
func (i Info) ShortCommit() string {
	if i.Commit == "" {
		return "unknown"
	}
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if i.Modified {
		c += "+modified"
	}
	return c
}

// String is "VERSION (commit SHORT, GOVERSION)", as `troika --version`
// prints it.
func (i Info) String() string {
	s := i.Version + " (commit " + i.ShortCommit()
	if i.GoVersion != "" {
		s += ", " + i.GoVersion
	}
	return s + ")"
}

package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20260102150405-1a2b3c4d5e6f+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}}
	}
	const rev = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
	for _, tc := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
		str             string
	}{
		{"no build information at all", "", "", nil, Info{Version: "dev"}, "dev (commit unknown)"},
		{"-buildvcs=false", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			Info{Version: "dev", GoVersion: "go1.26.8"}, "dev (commit unknown, go1.26.8)"},
		{"a checkout with changes", "", "", vcs(rev, "true"),
			Info{Version: "v0.0.0-20260102150405-1a2b3c4d5e6f+dirty", Commit: rev, Modified: true, GoVersion: "go1.26.8"},
			"v0.0.0-20260102150405-1a2b3c4d5e6f+dirty (commit 1a2b3c4d5e6f+modified, go1.26.8)"},
		{"a clean checkout", "", "", vcs(rev, "false"),
			Info{Version: "v0.0.0-20260102150405-1a2b3c4d5e6f+dirty", Commit: rev, GoVersion: "go1.26.8"}, ""},
		{"a release stamped by the linker", "1.4.0", rev, vcs(rev, "false"),
			Info{Version: "1.4.0", Commit: rev, GoVersion: "go1.26.8"}, "1.4.0 (commit 1a2b3c4d5e6f, go1.26.8)"},
		{"the linker's short commit matches the checkout", "1.4.0", "1a2b3c4", vcs(rev, "true"),
			Info{Version: "1.4.0", Commit: "1a2b3c4", Modified: true, GoVersion: "go1.26.8"}, ""},
		{"the linker's commit is another tree's", "1.4.0", "ffffffff", vcs(rev, "true"),
			Info{Version: "1.4.0", Commit: "ffffffff", GoVersion: "go1.26.8"}, ""},
		{"only a version stamped", " 2.0.0-rc1 ", "", nil, Info{Version: "2.0.0-rc1"}, "2.0.0-rc1 (commit unknown)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Resolve(tc.version, tc.commit, tc.bi)
			if got != tc.want {
				t.Errorf("Resolve = %+v, want %+v", got, tc.want)
			}
			if tc.str != "" && got.String() != tc.str {
				t.Errorf("String() = %q, want %q", got.String(), tc.str)
			}
		})
	}
}

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/testkit"
	"github.com/troika-sip/troika/node"
)

// A binary stamped by the linker with a version and a commit reports them
// everywhere: troika --version, /healthz, GET /v1/cluster (and its own
// gossip metadata in it), troika cluster status, the status page's data
// and the build_info metric.
func TestVersionStampedEverywhere(t *testing.T) {
	const version, commit = "9.8.7-test", "0123456789abcdef0123456789abcdef01234567"
	bin, err := testkit.Binary("-ldflags=-X github.com/troika-sip/troika/node.Version=" + version +
		" -X github.com/troika-sip/troika/node.Commit=" + commit)
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--version", "-v"} {
		out, err := exec.Command(bin, flag).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "troika 9.8.7-test (commit 0123456789ab, go") {
			t.Errorf("troika %s: %q %v", flag, out, err)
		}
	}

	const ip = "127.0.0.55"
	_, api, token := startDevNode(t, bin, ip)
	c := newClient(api, token)

	res, err := http.Get("http://" + api + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var live admin.Liveness
	json.NewDecoder(res.Body).Decode(&live)
	res.Body.Close()
	if live.Version != version || live.Commit != "0123456789ab" {
		t.Errorf("/healthz: %+v", live)
	}

	var st node.Status
	testkit.WaitFor(t, 10*time.Second, "the node's own gossip metadata", func() bool {
		raw, err := c.ClusterStatus(context.Background())
		if err != nil || json.Unmarshal(raw, &st) != nil {
			return false
		}
		return len(st.Members) == 1 && st.Members[0].Meta.Version == version
	})
	if st.Version != version || st.Commit != "0123456789ab" || st.Members[0].Meta.Commit != "0123456789ab" {
		t.Errorf("GET /v1/cluster: version %q commit %q, gossip %+v", st.Version, st.Commit, st.Members[0].Meta)
	}
	ov, err := c.Status(context.Background())
	if err != nil || ov.Version != version || ov.Commit != "0123456789ab" || len(ov.Members) != 1 ||
		ov.Members[0].Version != version || ov.Members[0].Commit != "0123456789ab" {
		t.Errorf("GET /v1/status: %+v %v", ov, err)
	}
	cmd := exec.Command(bin, "cluster", "status")
	cmd.Env = append(os.Environ(), "TROIKA_API=http://"+api, "TROIKA_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "(version 9.8.7-test, commit 0123456789ab)") ||
		!strings.Contains(string(out), " 9.8.7-test  0123456789ab ") {
		t.Errorf("troika cluster status: %v\n%s", err, out)
	}
	m := metricsOf(t, api)
	found := false
	for name, v := range m {
		if strings.HasPrefix(name, "troika_build_info{") {
			found = v == 1 && strings.Contains(name, `commit="`+commit+`"`) && strings.Contains(name, `version="`+version+`"`)
			if !found {
				t.Errorf("%s %v", name, v)
			}
		}
	}
	if !found {
		t.Error("no troika_build_info metric")
	}
}

//go:build linux

package chaos

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// deploy/rolling-upgrade.sh, as an operator runs it, on the namespace
// cluster under a steady REGISTER load through the virtual IP and the
// alias: it drains each node (leader last), installs the new build,
// starts it, waits until /readyz answers and it runs the new version.
// Installing and starting are the harness's (INSTALL_CMD and START_CMD
// ask this test over HTTP, as ssh would ask a server). No REGISTER
// fails, no binding is lost, never two holders, every node runs the new
// version, and the script printed its progress.
func TestRollingUpgradeScript(t *testing.T) {
	c, vip, alias, ids := setupVIP(t, 200)
	const nextVersion = "chaos-script-next"
	next := versionBuild(t, nextVersion)
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "deploy", "rolling-upgrade.sh")

	// The operator's hands: install sets the node's binary, start starts
	// it. The script runs in the client's namespace (as on an operator's
	// machine), and reaches these there.
	ln, err := c.Client.Listen("tcp", net.JoinHostPort(c.Client.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	node := func(w http.ResponseWriter, r *http.Request) *Node {
		n := c.Node(r.URL.Query().Get("node"))
		if n == nil {
			http.Error(w, "no such node", http.StatusNotFound)
		}
		return n
	}
	mux.HandleFunc("/install", func(w http.ResponseWriter, r *http.Request) {
		if n := node(w, r); n != nil {
			n.Binary = r.URL.Query().Get("binary")
			c.Mark(n.Name + " new binary installed by the script")
		}
	})
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		if n := node(w, r); n != nil {
			if err := n.Start(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ctl := "http://" + ln.Addr().String()

	loads := rollingLoads(t, c, vip, alias, ids, 90*time.Second)
	waitLoads(t, loads, 50)

	args := []string{script, next}
	for _, n := range c.Nodes {
		args = append(args, n.Name+"=http://"+n.APIAddr())
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.Client.NS, "bash"}, args...)...)
	cmd.Env = append(os.Environ(), "TROIKA="+troikaBin, "TROIKA_TOKEN="+c.Token, "TROIKA_TOKEN_FILE=", "TROIKA_CA_FILE=",
		"INSTALL_CMD=curl -fsS '"+ctl+"/install?node={id}&binary={binary}'",
		"START_CMD=curl -fsS '"+ctl+"/start?node={id}'", "DRAIN_TIMEOUT=60s", "READY_TIMEOUT=60")
	c.Mark("rolling-upgrade.sh started")
	out, err := cmd.CombinedOutput()
	c.Mark("rolling-upgrade.sh ended")
	t.Logf("deploy/rolling-upgrade.sh:\n%s", out)
	if err != nil {
		t.Fatalf("the script failed: %v", err)
	}
	waitLoads(t, loads, 25) // served after the last node came back
	results := []*LoadResult{loads[0].Stop(), loads[1].Stop()}
	t.Logf("REGISTER loads through the upgrade: %s; %s", results[0].Summary(), results[1].Summary())
	for _, lr := range results {
		if lr.Failed != 0 || lr.OK == 0 {
			t.Errorf("load %s: %d ok, %d failed: want no failed REGISTER\n%s", lr.Name, lr.OK, lr.Failed, lr.Errors)
		}
	}
	text := string(out)
	for _, n := range c.Nodes {
		for _, want := range []string{n.Name + ": draining", n.Name + ": ready, runs " + nextVersion} {
			if !strings.Contains(text, want) {
				t.Errorf("the script did not say %q", want)
			}
		}
		st, err := n.Status(t.Context())
		if err != nil || st.Version != nextVersion {
			t.Errorf("%s: version %q (%v) after the script, want %q", n.Name, st.Version, err, nextVersion)
		}
	}
	// The leader at the start went last.
	order := []string{}
	for _, m := range regexp.MustCompile(`\] (\S+): draining \(`).FindAllStringSubmatch(text, -1) {
		order = append(order, m[1])
	}
	if len(order) != len(c.Nodes) || !strings.Contains(text, "(leader "+order[len(order)-1]+" last)") {
		t.Errorf("drain order %v: want every node once, the leader last", order)
	}
	everyBindingEverywhere(t, c, ids, len(ids))
	if d := c.DoubleHolders(); len(d) != 0 {
		t.Errorf("double holders: %v", d)
	}
}

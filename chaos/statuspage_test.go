//go:build linux

package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/troika-sip/troika/admin"
	"github.com/troika-sip/troika/internal/browsertest"
)

// forwardAPI serves node n's admin API on a loopback port of the test's
// own namespace (where the browser runs), each connection dialled inside
// n's namespace, until the test ends. It returns the API's base URL.
func forwardAPI(t *testing.T, n *Node) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer down.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				up, err := dialIn(ctx, n.NS, "tcp", n.APIAddr())
				cancel()
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{})
				go func() { io.Copy(up, down); up.Close(); close(done) }()
				io.Copy(down, up)
				down.Close()
				<-done
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/"
}

// The status page in headless Chromium, served by a node of a three-node
// cluster with a virtual IP and an alias: with a read token it shows the
// three members alive and which node holds each address. The virtual IP's
// holder is SIGKILLed: without a reload the page shows it dead, the new
// holder of the virtual IP (the node the harness sees holding it) and the
// failover. The leaders count the move once, and the new holder counts the
// time it was assigned the address before it held it. Screenshots before
// and after are saved in the run directory (kept with CHAOS_KEEP=1) or
// $TROIKA_TEST_ARTIFACTS.
func TestStatusPageShowsFailover(t *testing.T) {
	NeedRoot(t)
	browsertest.Need(t)
	readToken := randomHex(16)
	o := vipOptions()
	vipConfig := o.Config
	o.Config = func(n *Node, cfg TOML) {
		vipConfig(n, cfg)
		cfg.Set("admin.tokens", []map[string]any{{"name": "noc", "scope": "read", "token": readToken}})
	}
	c := newCluster(t, o)
	vip, alias := vipAddr(c.Nodes[0].Addr), aliasAddr(c.Nodes[0].Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Nodes[0].Admin().PutAlias(ctx, admin.Alias{IP: alias.String()}); err != nil {
		t.Fatal(err)
	}
	holder, _ := soleHolder(t, c, vip, 20*time.Second)
	aliasHolder, _ := soleHolder(t, c, alias, 20*time.Second)
	page := c.Others(holder)[0] // the page's node outlives the holder
	t.Logf("%s held by %s, alias %s by %s; the page is served by %s", vip, holder.Name, alias, aliasHolder.Name, page.Name)

	url := forwardAPI(t, page)
	b := browsertest.New(t, 3*time.Minute)
	wait := func(what, expr string) {
		t.Helper()
		if err := browsertest.WaitFor(b, 30*time.Second, expr); err != nil {
			browsertest.Screenshot(t, b, c.Dir, "status-page-failed.png")
			t.Fatalf("the page does not show %s: %v", what, err)
		}
	}
	if err := chromedp.Do(b, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), readToken), chromedp.Click(chromedp.CSS("#show"))); err != nil {
		t.Fatal(err)
	}
	// The address is assigned to holder, in state, and holder says it
	// holds it.
	row := func(ip netip.Addr, holder, state string) string {
		return fmt.Sprintf(`!!document.querySelector('#addresses tr[data-address="%s"][data-holder="%s"][data-holder-state="%s"][data-held="%s"]')`,
			ip, holder, state, holder)
	}
	member := func(id, state string) string {
		return fmt.Sprintf(`!!document.querySelector('#members tr[data-member="%s"][data-state="%s"]')`, id, state)
	}
	for _, n := range c.Nodes {
		wait(n.Name+" alive", member(n.Name, "alive"))
	}
	wait("three members", `document.querySelectorAll('#members tr[data-member]').length === 3`)
	wait("every member's raft indexes", `[...document.querySelectorAll('#members tr[data-member]')].every((tr) => +tr.children[8].textContent > 0)`)
	wait("the virtual IP's holder", row(vip, holder.Name, "alive"))
	wait("the alias's holder", row(alias, aliasHolder.Name, "alive"))
	browsertest.Screenshot(t, b, c.Dir, "status-page-before.png")
	load, err := chromedp.Run(b, chromedp.Evaluate[string](`window.troikaPageLoad`))
	if err != nil || load == "" {
		t.Fatalf("page load mark %q: %v", load, err)
	}
	failoversBefore := 0.0
	for _, n := range c.Others(holder) {
		failoversBefore += nodeMetric(t, n, fmt.Sprintf(`troika_address_failovers_total{address="%s",reason="failed"}`, vip))
	}

	c.Mark("kill the virtual IP's holder " + holder.Name)
	if err := holder.Kill(); err != nil {
		t.Fatal(err)
	}
	newHolder, at := soleHolder(t, c, vip, 20*time.Second, holder)
	t.Logf("%s now held by %s (the harness saw it)", vip, newHolder.Name)
	wait("the new holder", row(vip, newHolder.Name, "alive"))
	t.Logf("the page showed it %s after the harness did", time.Since(at).Round(time.Millisecond))
	wait(holder.Name+" dead", member(holder.Name, "dead"))
	wait("the failover", fmt.Sprintf(`!!document.querySelector('#failovers tr[data-address="%s"][data-from="%s"][data-to="%s"]')`, vip, holder.Name, newHolder.Name))
	if again, _ := chromedp.Run(b, chromedp.Evaluate[string](`window.troikaPageLoad`)); again != load {
		t.Fatalf("the page was reloaded (%q, then %q): it must update in place", load, again)
	}
	browsertest.Screenshot(t, b, c.Dir, "status-page-after.png")

	failovers := -failoversBefore
	for _, n := range c.Others(holder) {
		failovers += nodeMetric(t, n, fmt.Sprintf(`troika_address_failovers_total{address="%s",reason="failed"}`, vip))
	}
	if failovers != 1 {
		t.Errorf("troika_address_failovers_total{address=%s} grew by %v over the running nodes, want 1", vip, failovers)
	}
	if v := nodeMetric(t, newHolder, fmt.Sprintf(`troika_address_held{address="%s"}`, vip)); v != 1 {
		t.Errorf("%s: troika_address_held{address=%s} = %v, want 1", newHolder.Name, vip, v)
	}
	if v := nodeMetric(t, page, fmt.Sprintf(`troika_address_holder{address="%s",node="%s"}`, vip, newHolder.Name)); v != 1 {
		t.Errorf("%s: troika_address_holder{address=%s,node=%s} = %v, want 1", page.Name, vip, newHolder.Name, v)
	}
	// The new holder waited out the handover (lease + leader lease + margin)
	// after the assignment before taking the address.
	if v := nodeMetric(t, newHolder, fmt.Sprintf(`troika_address_unheld_seconds_total{address="%s"}`, vip)); v < 1 || v > 10 {
		t.Errorf("%s: troika_address_unheld_seconds_total{address=%s} = %v, want the handover wait (about 1.75 s)", newHolder.Name, vip, v)
	} else {
		t.Logf("%s was assigned %s for %.2f s before it held it", newHolder.Name, vip, v)
	}
	res, err := newHolder.Admin().HTTP.Get("http://" + newHolder.APIAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("the new holder %s: GET /readyz = %d", newHolder.Name, res.StatusCode)
	}
}

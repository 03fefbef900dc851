package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/troika-sip/troika/internal/browsertest"
	"github.com/troika-sip/troika/internal/sipptest"
)

// The status page of a dev node in headless Chromium: served without a
// token, it asks for one and refuses a wrong one; with the read token
// (typed into the page, never in a URL) it shows the node as the leader,
// alive and ready; a phone that registers shows up in the registrations
// count without a reload; a reload keeps the token for the tab.
func TestStatusPageOfADevNode(t *testing.T) {
	sipptest.Need(t)
	browsertest.Need(t)
	const ip = "127.0.0.53"
	p, admin, _ := startDevNode(t, troikaBin, ip)
	readToken := p.waitOutput(t, readTokenRE, time.Second)[1]
	password := p.waitOutput(t, passwordRE, time.Second)[1]

	// The page itself is public and holds no data.
	res, err := http.Get("http://" + admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET / = %d, Content-Type %q, CSP %q", res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Content-Security-Policy"))
	}

	ctx := browsertest.New(t, 2*time.Minute)
	wait := func(what, expr string) {
		t.Helper()
		if err := browsertest.WaitFor(ctx, 20*time.Second, expr); err != nil {
			browsertest.Screenshot(t, ctx, t.TempDir(), "status-dev-failed.png")
			t.Fatalf("%s: %v", what, err)
		}
	}
	url := "http://" + admin + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#token"))); err != nil {
		t.Fatalf("the page asks for no token: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#token"), "not-a-token-of-this-node"), chromedp.Click(chromedp.CSS("#show"))); err != nil {
		t.Fatal(err)
	}
	wait("a wrong token refused", `document.querySelector('#login-error').textContent.includes('does not know this token')`)

	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#token"), readToken), chromedp.Click(chromedp.CSS("#show"))); err != nil {
		t.Fatal(err)
	}
	wait("the node shown as an alive leader", `!!document.querySelector('#members tr[data-member="dev"][data-state="alive"][data-role="leader"][data-health="ok"]')`)
	wait("the node shown ready", `document.querySelector('#ready').dataset.ready === 'true'`)
	wait("no registration yet", `document.querySelector('#c-registrations').textContent === '0'`)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || loc != url {
		t.Fatalf("the page is at %q (%v), want %q: the token must not go into the URL", loc, err, url)
	}
	load, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.troikaPageLoad`))
	if err != nil || load == "" {
		t.Fatalf("page load mark: %q %v", load, err)
	}

	inject := []string{"1001;[authentication username=1001 password=" + password + "]"}
	if st := sipptest.Run(t, sipptest.Options{Target: ip + ":5060", Scenario: "reg_auth.xml", Inject: inject, LocalIP: ip}); st.OK != 1 {
		t.Fatalf("REGISTER: %d ok\n%s", st.OK, st.Errors)
	}
	wait("the registration counted without a reload", `document.querySelector('#c-registrations').textContent === '1'`)
	if again, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`window.troikaPageLoad`)); again != load {
		t.Fatalf("the page was reloaded (%q, then %q): it must update in place", load, again)
	}
	updates, _ := browsertest.Text(ctx, "#updated")
	t.Logf("page: %s", updates)
	browsertest.Screenshot(t, ctx, t.TempDir(), "status-dev.png")

	// The token is kept for the tab: a reload shows the data again.
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	wait("the data again after a reload", `!!document.querySelector('#members tr[data-member="dev"]') && document.querySelector('#login').classList.contains('hidden')`)
}

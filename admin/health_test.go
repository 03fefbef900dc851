package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The status page is served to anyone (it holds no data), with a CSP that
// allows its own inline script and style by hash and nothing from
// elsewhere. A backend that is not a node (no Monitor) has no readiness
// and no overview, and its /healthz says only ok.
func TestStatusPageAndHealthWithoutMonitor(t *testing.T) {
	c, _ := newTestAPI(t)
	res, err := http.Get(c.BaseURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(string(body), `id="token"`) {
		t.Fatalf("GET / = %d %q:\n%.200s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	for _, tag := range []string{"script", "style"} {
		m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no inline %s in the page", tag)
		}
		sum := sha256.Sum256(m[1])
		if want := tag + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if regexp.MustCompile(`(?i)(src|href)=["']?(https?:)?//`).Match(body) {
		t.Error("the page loads something from elsewhere")
	}

	get := func(path string, auth bool) (int, string) {
		tok := ""
		if auth {
			tok = token
		}
		status, body := rawAs(t, c, tok, "GET", path, "")
		return status, string(body)
	}
	if code, b := get("/healthz", false); code != http.StatusOK || strings.Join(strings.Fields(b), "") != `{"status":"ok"}` {
		t.Errorf("/healthz = %d %s", code, b)
	}
	if code, b := get("/readyz", false); code != http.StatusNotFound {
		t.Errorf("/readyz without a node = %d %s", code, b)
	}
	if code, _ := get("/v1/status", false); code != http.StatusUnauthorized {
		t.Errorf("/v1/status without a token = %d", code)
	}
	if code, b := get("/v1/status", true); code != http.StatusNotFound {
		t.Errorf("/v1/status without a node = %d %s", code, b)
	}
}

// Package browsertest runs headless Chromium (Debian's chromium) for the
// tests of troika's status page, through chromedp. Chromium is kept to
// loopback: no background networking, component updates or name
// resolution.
//
// Only tests import it.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path returns Chromium's executable, "" when none is installed.
func Path() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Need skips the test when Chromium is not installed (CI installs
// Debian's chromium).
func Need(t testing.TB) {
	t.Helper()
	if Path() == "" {
		t.Skip("chromium is not installed (apt-get install -y chromium)")
	}
}

// New starts a headless Chromium for the test and returns a context of one
// of its tabs, bounded by timeout; the browser ends with the test. Its
// profile lives in a temporary directory.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	Need(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path()),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1400, 1000),
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		// No name resolves; loopback addresses are reached as they are.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.*"),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// The page's console (its errors, a refused script) goes to the test log.
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf),
		chromedp.WithBrowserOption(chromedp.WithConsolef(func(f string, a ...any) { t.Logf("browser console: "+f, a...) })))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a deadline of its own
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancelTimeout)
	return ctx
}

// ArtifactsEnv names a directory where Screenshot keeps its files (CI
// may collect it); without it they go to the directory the caller gives.
const ArtifactsEnv = "TROIKA_TEST_ARTIFACTS"

// Screenshot saves a PNG of the whole page as name in dir (or in
// $TROIKA_TEST_ARTIFACTS), logs its path and returns it.
func Screenshot(t testing.TB, ctx context.Context, dir, name string) string {
	t.Helper()
	if d := os.Getenv(ArtifactsEnv); d != "" {
		dir = d
	}
	path := filepath.Join(dir, name)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(path, png, 0o644)
	}
	if err != nil {
		t.Errorf("screenshot %s: %v", path, err)
		return ""
	}
	t.Logf("screenshot of the page: %s", path)
	return path
}

// Text returns the text of the first element matching the CSS selector
// sel now, "" when there is none.
func Text(ctx context.Context, sel string) (string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)))
}

// WaitFor waits until the JavaScript expression is truthy in the page
// (checked every 50 ms, and at each DOM change), at most timeout.
func WaitFor(ctx context.Context, timeout time.Duration, expression string) error {
	_, err := chromedp.Run(ctx, chromedp.Poll[any](expression,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		return fmt.Errorf("waiting %s for %s: %w", timeout, expression, err)
	}
	return nil
}

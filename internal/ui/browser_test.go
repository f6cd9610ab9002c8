package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/batchgate/batchgate/internal/config"
	"github.com/batchgate/batchgate/internal/gatewaytest"
	"github.com/batchgate/batchgate/internal/simulator"
)

// chromium finds the browser: $CHROMIUM, else Debian's chromium. Without
// one the test skips, except in CI (CI set), where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium binary (apt-get install chromium); CI is set, so the browser test cannot be skipped")
	}
	t.Skip("no chromium binary (apt-get install chromium, or set CHROMIUM)")
	return ""
}

// page is one browser tab on a gateway, recording what the page did that
// it must not: console errors, uncaught exceptions, errors of the Log
// domain (CSP violations among them), and requests to other origins.
type page struct {
	ctx    context.Context
	origin string

	mu       sync.Mutex
	problems []string
	requests []*network.Request
}

func newPage(t *testing.T, origin string) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1200, 720),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	p := &page{ctx: ctx, origin: origin}
	if err := chromedp.Listen(ctx, p.event); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return p
}

func (p *page) event(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert || ev.Type == runtime.ConsoleAPICalledTypeWarning {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			p.problems = append(p.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		p.problems = append(p.problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	case *log.EventEntryAdded:
		// A 401 the page expects is logged by the network as "Failed to
		// load resource"; everything else of level error is a problem.
		e := ev.Entry
		if e.Level == log.EntryLevelError && !(e.Source == log.EntrySourceNetwork && strings.Contains(e.Text, "401")) {
			p.problems = append(p.problems, fmt.Sprintf("log %s: %s %s", e.Source, e.Text, e.URL))
		}
	case *network.EventRequestWillBeSent:
		p.requests = append(p.requests, ev.Request)
	}
}

// check fails the test for every problem and every request that left the
// gateway's origin (data: URLs stay in the page).
func (p *page) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.problems {
		t.Errorf("page: %s", s)
	}
	for _, r := range p.requests {
		if !strings.HasPrefix(r.URL, p.origin+"/") && !strings.HasPrefix(r.URL, "data:") {
			t.Errorf("request left the gateway's origin %s: %s %s", p.origin, r.Method, r.URL)
		}
	}
	if len(p.requests) == 0 {
		t.Error("no request seen: the network listener is broken")
	}
}

func (p *page) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, p *page, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot writes the viewport as name into $UI_SCREENSHOT_DIR (the CI
// artifact directory), else into the test's temporary directory, and logs
// the path.
func screenshot(t *testing.T, p *page, name string) {
	t.Helper()
	dir := os.Getenv("UI_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

type barState struct {
	Status    string `json:"status"`
	Completed int    `json:"completed"`
	Failed    int    `json:"failed"`
	Total     int    `json:"total"`
}

// TestBrowserDemo drives the page in Chromium on a gateway in front of the
// demo simulator, fast (a one-second Phase, 200 ms polls): the list shows
// the demo batches, the moving one's bar moves and reaches completed on
// the multi-watch, and its own page follows it to the end and shows its
// first results; all without console errors or a request to another
// origin.
func TestBrowserDemo(t *testing.T) {
	chromium(t)
	e := gatewaytest.Start(t, gatewaytest.Options{Sim: simulator.Options{Phase: time.Second}}, func(c *config.Config) {
		c.Watch.PollInterval = 200 * time.Millisecond
	})
	p := newPage(t, e.BaseURL)
	p.do(t, chromedp.Navigate(e.BaseURL+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`#batches tr[data-id="`+simulator.DemoProgress+`"]`)))
	for _, id := range []string{simulator.DemoCompleted, simulator.DemoFailed, simulator.DemoValidating} {
		if !eval[bool](t, p, `!!document.querySelector('#batches tr[data-id="`+id+`"]')`) {
			t.Errorf("%s not listed", id)
		}
	}

	// The bar of the moving batch: seen part way (twice, differently),
	// then completed and full.
	read := `(() => { const r = document.querySelector('#batches tr[data-id="` + simulator.DemoProgress + `"]'); const b = r.querySelector('.bar');
		return {status: r.dataset.status, completed: +b.dataset.completed, failed: +b.dataset.failed, total: +b.dataset.total}; })()`
	partial := map[int]bool{}
	shot := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := eval[barState](t, p, read)
		done := s.Completed + s.Failed
		if s.Status == "in_progress" && s.Total > 0 && done > 0 && done < s.Total {
			partial[done] = true
			if !shot {
				screenshot(t, p, "ui.png")
				shot = true
			}
		}
		if len(partial) >= 2 && s.Status == "completed" {
			if done != s.Total || s.Total == 0 {
				t.Fatalf("completed with %d of %d", done, s.Total)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bar of %s did not move to completed: last %+v, part way at %v", simulator.DemoProgress, s, partial)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Its page: the timeline and the first results once it has ended
	// (the next run, followed on the single watch).
	p.do(t, chromedp.Click(chromedp.CSS(`#batches tr[data-id="`+simulator.DemoProgress+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#batch-view`)))
	if got := eval[string](t, p, `location.hash`); got != "#/batch/"+simulator.DemoProgress {
		t.Errorf("hash %q after the click", got)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#b-results-box`))); err != nil {
		t.Fatalf("no results on the batch page: %v (status %q)", err, eval[string](t, p, `document.querySelector('#batch-view').dataset.status`))
	}
	if got := eval[string](t, p, `document.querySelector('#batch-view').dataset.status`); got != "completed" {
		t.Errorf("batch page status %q, want completed", got)
	}
	steps := eval[[]string](t, p, `[...document.querySelectorAll('#b-timeline li.reached')].map(li => li.dataset.step)`)
	if strings.Join(steps, ",") != "created,in progress,finalizing,done" {
		t.Errorf("timeline reached %v", steps)
	}
	if n := eval[int](t, p, `document.querySelectorAll('#b-results tbody tr').length`); n < 1 || n > 20 {
		t.Errorf("%d result rows, want 1 to 20", n)
	}
	screenshot(t, p, "ui-batch.png")
	p.check(t)
}

// TestBrowserToken: in key mode the page meets a 401, asks for a token,
// keeps it for the tab and sends it as a bearer header, never in a URL.
func TestBrowserToken(t *testing.T) {
	const token = "tok-browser-0123456789abcdef"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("browser "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chromium(t)
	e := gatewaytest.Start(t, gatewaytest.Options{}, func(c *config.Config) {
		c.Auth.Mode = "key"
		c.Auth.TokensFile = tokens
	})
	p := newPage(t, e.BaseURL)
	p.do(t, chromedp.Navigate(e.BaseURL+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`#auth-form`)))
	if eval[bool](t, p, `!document.querySelector('#list-view').hidden`) {
		t.Error("the list shows before a token")
	}
	// A wrong token is refused and asked for again.
	p.do(t, chromedp.SendKeys(chromedp.CSS(`#token`), "tok-wrong-0123456789abcdef"), chromedp.Click(chromedp.CSS(`#auth-form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#auth-error`)))
	p.do(t, chromedp.SendKeys(chromedp.CSS(`#token`), token), chromedp.Click(chromedp.CSS(`#auth-form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#list-view`)), chromedp.WaitVisible(chromedp.CSS(`#empty`)))
	if got := eval[string](t, p, `sessionStorage.getItem('batchgate.token')`); got != token {
		t.Errorf("sessionStorage token %q", got)
	}
	if !eval[bool](t, p, `document.querySelector('#auth').hidden`) {
		t.Error("the prompt still shows")
	}
	// A reload keeps the tab's token: no prompt.
	p.do(t, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#list-view`)))
	screenshot(t, p, "ui-token.png")

	p.mu.Lock()
	bearer := false
	for _, r := range p.requests {
		if strings.Contains(r.URL, token) {
			t.Errorf("the token is in a URL: %s", r.URL)
		}
		if strings.Contains(r.URL, "/v1/batches") && r.Headers["Authorization"] == "Bearer "+token {
			bearer = true
		}
	}
	p.mu.Unlock()
	if !bearer {
		t.Error("no /v1/batches request with the bearer token")
	}
	p.check(t)
}

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/minilambda/minilambda/internal/dockertest"
	"github.com/minilambda/minilambda/projections"
)

// chromium finds the browser the console tests drive. CI installs
// Debian's chromium, and there a missing browser fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH; CI=true requires one (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH: skipping the browser tests")
	return ""
}

// browser is a headless Chromium tab, and what its console said that was
// an error: calls of console.error, uncaught exceptions, and browser log
// errors (a refused script, a CSP violation, a failed request).
type browser struct {
	ctx      context.Context
	t        *testing.T
	mu       sync.Mutex
	problems []problem
	// forgiven are the errors forgive dropped: what they contain, and the
	// moment before which one is forgiven, however late its message comes.
	forgiven []problem
	shots    string
}

// problem is a console error and when the browser reported it.
type problem struct {
	text string
	at   time.Time
}

func newBrowser(t *testing.T, path string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses to run as root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{ctx: ctx, t: t, shots: os.Getenv("MINILAMBDA_SCREENSHOTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	} else if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx); err != nil { // starts the browser and its tab
		t.Fatalf("starting %s: %v", path, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				p := problem{fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line), m.Time}
				if p.at.IsZero() {
					p.at = time.Now() // no time of its own: it counts from here
				}
				b.mu.Lock()
				// A message can reach the test after it forgave errors
				// that came before it: it is one of those.
				if !slices.ContainsFunc(b.forgiven, func(f problem) bool { return strings.Contains(p.text, f.text) && !p.at.After(f.at) }) {
					b.problems = append(b.problems, p)
				}
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\nconsole: %v", what, err, b.consoleProblems())
	}
}

// wait returns the value of the JavaScript expression js once it is truthy.
func wait[T any](b *browser, what, js string, timeout time.Duration) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](js, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		b.t.Fatalf("waiting for %s (%s): %v\nconsole: %v", what, js, err, b.consoleProblems())
	}
	return v
}

func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// screenshot saves the whole page, below the fold too, as name.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// forgive drops the console errors so far that contain what: ones the
// test caused on purpose. The browser's messages come late at times, so
// one it reported before now is dropped when it comes.
func (b *browser) forgive(what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.forgiven = append(b.forgiven, problem{what, now})
	b.problems = slices.DeleteFunc(b.problems, func(p problem) bool { return strings.Contains(p.text, what) && !p.at.After(now) })
}

func (b *browser) consoleProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, p := range b.problems {
		out = append(out, p.text)
	}
	return out
}

// goHash moves the console to another view, as a link would: the page
// stays, the hash changes.
func goHash(hash string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.hash = %q", hash))
}

// setValue sets a form control as typing would, firing input and change.
func setValue(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		el.value = %q;
		el.dispatchEvent(new Event('input', {bubbles: true}));
		el.dispatchEvent(new Event('change', {bubbles: true}));
	})()`, sel, value))
}

// TestConsoleInABrowser drives the web console in headless Chromium
// against the real server and engine: the token asked once, a function
// registered through the form (a bad setting first, its error inline),
// invoked sync and async with its result and logs shown as text, the new
// events in the live view within a second of their append, the list of
// invocations and one's timeline from the log, the charts, an audit,
// delete; and no console errors on the way. Screenshots of the views go
// to $MINILAMBDA_SCREENSHOTS.
func TestConsoleInABrowser(t *testing.T) {
	chrome := chromium(t)
	cli := dockertest.Client(t)
	img := dockertest.BuildGoImage(t, cli, "testdata/fn", "minilambda-e2e-console")
	db := filepath.Join(t.TempDir(), "events.db")
	const token = "console-test-token"
	s := startServer(t, db, "--token", token, "--retry-base", "200ms")
	base := "http://" + s.addr

	// Every console response forbids inline script and foreign origins.
	resp, err := http.Get(base + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") ||
		!strings.Contains(csp, "require-trusted-types-for 'script'") {
		t.Fatalf("GET /ui/: %d, CSP %q", resp.StatusCode, csp)
	}

	b := newBrowser(t, chrome)
	b.do("open the console", chromedp.Navigate(base+"/"))
	// The server wants a token: the console asks, refuses a wrong one, and
	// keeps the right one for the tab only.
	wait[bool](b, "the token dialog", `document.getElementById('token-dialog').open`, 10*time.Second)
	// Escape, twice, does not get past it: nothing works without a token.
	b.do("escape", chromedp.KeyEvent(kb.Escape), chromedp.KeyEvent(kb.Escape))
	time.Sleep(200 * time.Millisecond)
	if !eval[bool](b, `document.getElementById('token-dialog').open`) {
		t.Error("Escape dismissed the token dialog")
	}
	b.do("a wrong token", chromedp.SendKeys(chromedp.ID("token-input"), "wrong"), chromedp.Click(chromedp.CSS("#token-form button")))
	wait[string](b, "the refusal", `!document.getElementById('token-error').hidden && document.getElementById('token-error').textContent`, 10*time.Second)
	// The browser logs the refusal of the wrong token, as it logs every 401.
	b.forgive("the server responded with a status of 401")
	b.do("the token", chromedp.SendKeys(chromedp.ID("token-input"), token), chromedp.Click(chromedp.CSS("#token-form button")))
	wait[bool](b, "the functions view", `!document.getElementById('token-dialog').open && !!document.getElementById('function-form')`, 10*time.Second)
	if got := eval[string](b, `sessionStorage.getItem('minilambda.token') + '|' + document.cookie + '|' + location.href`); got != token+"||"+base+"/ui/#/functions" && got != token+"||"+base+"/ui/" {
		t.Errorf("token, cookies, URL: %q", got)
	}

	// Register: an out-of-range timeout is refused by the server, and its
	// message shows under the timeout field; nothing is registered.
	b.do("fill the register form",
		setValue("#fn-name", "console-fn"), setValue("#fn-image", img.Tag), setValue("#fn-timeout", "99999"),
		setValue("#fn-env", "GREETING=hello"), chromedp.Click(chromedp.ID("function-submit")))
	msg := wait[string](b, "the timeout error", `(() => { const e = document.getElementById('fn-timeout-error'); return !e.hidden && e.textContent })()`, 10*time.Second)
	if !strings.Contains(msg, "timeout") || eval[string](b, `document.getElementById('fn-timeout').getAttribute('aria-invalid')`) != "true" {
		t.Errorf("inline error %q", msg)
	}
	if code := s.callAs("GET", "/functions/console-fn", nil, nil, token); code != 404 {
		t.Errorf("a refused registration registered: %d", code)
	}
	b.forgive("the server responded with a status of 400") // the refusal, logged by the browser
	b.screenshot("register-error")
	// The field comes from the server's answer, not its words: a memory
	// and an env mistake each show under their own setting, and the
	// timeout's error is gone.
	for _, c := range []struct{ key, step string }{{"memory_mb", "1"}, {"env", "1BAD=x"}} {
		b.do("a bad "+c.key, setValue("#fn-timeout", "30"), setValue("#fn-memory_mb", ""), setValue("#fn-env", "GREETING=hello"),
			setValue("#fn-"+c.key, c.step), chromedp.Click(chromedp.ID("function-submit")))
		msg := wait[string](b, "the "+c.key+" error", `(() => { const e = document.getElementById('fn-`+c.key+`-error'); return !e.hidden && e.textContent })()`, 10*time.Second)
		if other := eval[bool](b, `document.getElementById('fn-timeout-error').hidden`); !other || !strings.Contains(msg, c.key) ||
			eval[string](b, `document.getElementById('fn-`+c.key+`').getAttribute('aria-invalid')`) != "true" {
			t.Errorf("%s: inline error %q (timeout's error hidden: %v)", c.key, msg, other)
		}
		b.forgive("the server responded with a status of 400")
	}
	b.do("fix the timeout", setValue("#fn-timeout", "30"), setValue("#fn-memory_mb", ""), setValue("#fn-env", "GREETING=hello"),
		chromedp.Click(chromedp.ID("function-submit")))
	wait[bool](b, "the function listed", `!!document.querySelector('#functions tr[data-function="console-fn"]')`, 10*time.Second)

	// A zip package shows its package type, runtime and code hash.
	removeBuiltAtCleanup(t, cli, "console-zip")
	pkg := zipOf(t, map[string][]byte{"bootstrap": dockertest.GoSourceBinary(t, "package main\n\nfunc main() {}\n")})
	var zipped struct {
		Package struct {
			CodeSha256 string `json:"code_sha256"`
		}
	}
	if code := s.callAs("POST", "/functions", map[string]any{"name": "console-zip", "runtime": "provided.al2023", "handler": "bootstrap", "zip_file": pkg}, &zipped, token); code != 201 {
		t.Fatalf("register a zip package: %d", code)
	}
	b.do("list again", goHash("#/invocations"), goHash("#/functions"))
	cell := wait[string](b, "the zip package listed", `document.querySelector('#functions tr[data-function="console-zip"] td.package')?.textContent`, 10*time.Second)
	if !strings.Contains(cell, "Zip · provided.al2023") || !strings.Contains(cell, zipped.Package.CodeSha256[:12]) {
		t.Errorf("the zip package's row: %q, want its type, runtime and code hash %s", cell, zipped.Package.CodeSha256)
	}
	b.screenshot("functions")

	// Invoke sync: a non-JSON event is caught as it is typed; the result
	// and the logs are shown as text, HTML and all.
	b.do("open invoke", goHash("#/invoke/console-fn"))
	wait[bool](b, "the invoke form", `!!document.getElementById('invoke-event')`, 10*time.Second)
	b.do("type a broken event", setValue("#invoke-event", `{"name": `))
	wait[bool](b, "the JSON error", `document.getElementById('invoke-submit').disabled && !document.getElementById('invoke-event-error').hidden`, 5*time.Second)
	const name = `<img src=x id=pwned>`
	b.do("invoke", setValue("#invoke-event", fmt.Sprintf(`{"name": %q}`, name)), chromedp.Click(chromedp.ID("invoke-submit")))
	status := wait[string](b, "the outcome", `document.getElementById('outcome')?.dataset.status`, 60*time.Second)
	logs := eval[string](b, `document.getElementById('logs').textContent`)
	result := eval[string](b, `document.getElementById('result').textContent`)
	if status != "COMPLETED" || !strings.Contains(logs, `handling "<img src=x id=pwned>"`) || result == "" {
		t.Errorf("sync invoke: %s, result %q, logs %q", status, result, logs)
	}
	if eval[bool](b, `!!document.getElementById('pwned')`) {
		t.Error("a function's output became HTML")
	}
	b.screenshot("invoke")

	// Invoke async through the form: followed until it ends.
	b.do("invoke async", setValue("#invoke-event", `{"name": "queued"}`), chromedp.Click(chromedp.ID("kind-async")), chromedp.Click(chromedp.ID("invoke-submit")))
	wait[bool](b, "the async outcome", `(() => { const o = document.getElementById('outcome'); return o && o.dataset.status === 'COMPLETED' && document.getElementById('logs').textContent.includes('queued') })()`, 60*time.Second)

	// Live: events appended by another client show within a second.
	b.do("open live", goHash("#/live"))
	wait[bool](b, "the stream", `document.getElementById('live-state')?.textContent === 'live'`, 10*time.Second)
	for i := range 3 {
		var inv projections.Invocation
		if code := s.callAs("POST", "/invoke/console-fn", map[string]any{"event": map[string]any{"name": fmt.Sprint("live-", i)}}, &inv, token); code != 200 {
			t.Fatalf("invoke over the API: %d", code)
		}
		// The lag is the page's own: when the row went in (the page's clock)
		// less the event's time in the log (the server's; one machine).
		row := fmt.Sprintf(`document.querySelector('#live-rows tr[data-invocation=%q][data-type="invocation.completed"]')`, inv.InvocationID)
		wait[bool](b, "the completed event in the live view", "!!"+row, 5*time.Second)
		lag := time.Duration(eval[float64](b, fmt.Sprintf(`(() => {
			const r = %s;
			return Number(r.dataset.received) - Date.parse(r.dataset.time);
		})()`, row))) * time.Millisecond
		if lag > time.Second {
			t.Errorf("invocation %s's end showed %v after its append", inv.InvocationID, lag)
		} else {
			t.Logf("live view: shown %v after the append", lag)
		}
	}
	b.screenshot("live")

	// The stream's parser, in the browser: frames split anywhere, CRLF and
	// CR line ends, comments and id-only frames.
	frames, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`import('./api.js').then(({ SSEFrames }) => {
		const f = new SSEFrames(), out = [];
		for (const c of ['id: 1\r', '\ndata: {"a":', '1}\r\n\r', '\n: keep\n\nid: 2\rdata: x\r\r', 'id: 3\n\n']) out.push(...f.push(c));
		return JSON.stringify(out);
	})`, chromedp.EvalAwaitPromise))
	if want := `[{"id":"1","data":"{\"a\":1}"},{"id":null,"data":null},{"id":"2","data":"x"},{"id":"3","data":null}]`; err != nil || frames != want {
		t.Errorf("SSE frames: %s %v\nwant %s", frames, err, want)
	}

	// Invocations: filtered by function, paged, and one's timeline.
	b.do("open invocations", goHash("#/invocations?function=console-fn&limit=20"))
	rows := wait[int](b, "the invocations", `document.querySelectorAll('#invocations tbody tr').length`, 10*time.Second)
	if rows != 5 {
		t.Errorf("%d invocations listed, want 5", rows)
	}
	b.do("filter FAILED", goHash("#/invocations?function=console-fn&status=FAILED"))
	wait[bool](b, "no failed invocations", `!!document.querySelector('.panel .empty')`, 10*time.Second)
	// Created within the last hour, through the form's local-time inputs.
	const hourAgo = `(() => { const d = new Date(Date.now() - 3600e3), p = (n) => String(n).padStart(2, '0');
		return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()) })()`
	b.do("filter by time", chromedp.Evaluate[chromedp.Void](`(() => {
		document.getElementById('filter-status').value = '';
		document.getElementById('filter-after').value = `+hourAgo+`;
	})()`), chromedp.Click(chromedp.CSS(`.filters button[type=submit]`)))
	wait[bool](b, "the last hour's invocations", `location.hash.includes('after=') && document.querySelectorAll('#invocations tbody tr').length === 5`, 10*time.Second)
	b.do("filter before an hour ago", chromedp.Evaluate[chromedp.Void](`(() => {
		document.getElementById('filter-after').value = '';
		document.getElementById('filter-before').value = `+hourAgo+`;
	})()`), chromedp.Click(chromedp.CSS(`.filters button[type=submit]`)))
	wait[bool](b, "none before an hour ago", `location.hash.includes('before=') && !!document.querySelector('.panel .empty')`, 10*time.Second)
	b.do("page by 2", goHash("#/invocations?limit=2"))
	wait[bool](b, "a next page", `!!document.getElementById('page-next') && document.querySelectorAll('#invocations tbody tr').length === 2`, 10*time.Second)
	first := eval[string](b, `document.querySelector('#invocations tbody tr').dataset.invocation`)
	b.do("next page", chromedp.Click(chromedp.ID("page-next")))
	wait[bool](b, "the second page", fmt.Sprintf(`!!document.getElementById('page-prev') && document.querySelectorAll('#invocations tbody tr').length === 2 && !document.querySelector('#invocations tr[data-invocation=%q]')`, first), 10*time.Second)
	b.screenshot("invocations")
	b.do("open a timeline", chromedp.Click(chromedp.CSS(`#invocations tbody tr a`)))
	types := wait[string](b, "the timeline", `Array.from(document.querySelectorAll('#timeline li')).map(li => li.dataset.type).join(',')`, 10*time.Second)
	if types != "invocation.queued,invocation.started,invocation.completed" {
		t.Errorf("timeline: %s", types)
	}
	started := eval[string](b, `document.querySelector('#timeline li[data-type="invocation.started"] .ev-body').textContent`)
	if !strings.Contains(started, "attempt 1") || !strings.Contains(started, "container ") || !strings.Contains(started, "image sha256:") {
		t.Errorf("started: %q", started)
	}
	ended := eval[string](b, `document.querySelector('#timeline li[data-type="invocation.completed"] .ev-body').textContent`)
	if !strings.Contains(ended, "ran ") || !strings.Contains(ended, "exit 0") {
		t.Errorf("completed: %q", ended)
	}
	b.screenshot("invocation")

	// An async invocation that fails every attempt: its timeline shows
	// each attempt, the retries between them, and the failure.
	var acc struct {
		InvocationID string `json:"invocation_id"`
	}
	if code := s.callAs("POST", "/invoke/console-fn/async", map[string]any{"event": map[string]any{"name": "doomed", "exit": 3}}, &acc, token); code != 202 {
		t.Fatalf("async invoke: %d", code)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var inv projections.Invocation
		s.callAs("GET", "/invocations/"+acc.InvocationID, nil, &inv, token)
		if inv.Status == projections.StatusFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the doomed invocation did not fail: %+v", inv)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.do("open the failed one", goHash("#/invocations?function=console-fn&status=FAILED"))
	wait[bool](b, "it listed as FAILED", fmt.Sprintf(`!!document.querySelector('#invocations tr[data-invocation=%q]')`, acc.InvocationID), 10*time.Second)
	b.do("its timeline", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#invocations tr[data-invocation=%q] a`, acc.InvocationID))))
	types = wait[string](b, "the retried timeline", `Array.from(document.querySelectorAll('#timeline li')).map(li => li.dataset.type).join(',')`, 10*time.Second)
	if types != "invocation.queued,invocation.started,invocation.retried,invocation.started,invocation.retried,invocation.started,invocation.failed" {
		t.Errorf("a retried timeline: %s", types)
	}
	retried := eval[string](b, `document.querySelector('#timeline li[data-type="invocation.retried"] .ev-body').textContent`)
	failed := eval[string](b, `document.querySelector('#timeline li[data-type="invocation.failed"] .ev-body').textContent`)
	if !strings.Contains(retried, "attempt 1 failed") || !strings.Contains(retried, "next not before") || !strings.Contains(failed, "attempt 3") || !strings.Contains(failed, "exit 3") {
		t.Errorf("retried %q, failed %q", retried, failed)
	}
	b.screenshot("invocation-retried")

	// Charts: the duration percentiles of invocations made while they
	// sample.
	b.do("open charts", goHash("#/charts"))
	wait[bool](b, "a first sample", `!!document.querySelector('#legend-rate li')`, 10*time.Second)
	for i := range 4 {
		s.callAs("POST", "/invoke/console-fn", map[string]any{"event": map[string]any{"name": fmt.Sprint("chart-", i)}}, nil, token)
		time.Sleep(500 * time.Millisecond)
	}
	p50 := wait[string](b, "a p50", `(() => { const v = document.querySelector('#legend-duration li[data-series="p50"] strong')?.textContent; return v && v !== '–' && v })()`, 15*time.Second)
	if !strings.HasSuffix(p50, " ms") {
		t.Errorf("p50 %q", p50)
	}
	wait[bool](b, "a few samples", `document.getElementById('charts-status').textContent.includes(' 5 samples')`, 15*time.Second)
	b.screenshot("charts")

	// Audit: the head, and a verification of the chain up to it.
	b.do("open audit", goHash("#/audit"))
	wait[bool](b, "the head", `!!document.getElementById('audit-hash')`, 10*time.Second)
	b.do("verify", chromedp.Click(chromedp.ID("audit-verify")))
	verified := wait[string](b, "the verification", `document.querySelector('#audit-result [data-ok]')?.textContent`, 60*time.Second)
	var head struct {
		HeadSeq  uint64 `json:"head_seq"`
		HeadHash string `json:"head_hash"`
	}
	s.callAs("GET", "/audit", nil, &head, token)
	if !strings.HasPrefix(verified, "Verified: ") || !strings.Contains(verified, head.HeadHash[:16]) {
		t.Errorf("verification: %q (head %d %s)", verified, head.HeadSeq, head.HeadHash)
	}
	b.screenshot("audit")

	// A zip package's edit view says what it was built from, and what the
	// deploy operations set: here its destination.
	if code := s.callAs("PUT", "/functions/console-zip", map[string]any{"destinations": map[string]string{"on_failure": "console-fn"}}, nil, token); code != 200 {
		t.Fatalf("set console-zip's destination: %d", code)
	}
	b.do("open the package's edit view", goHash("#/functions/console-zip/edit"))
	meta := wait[string](b, "the package's lines", `(() => { const p = document.getElementById('package'), d = document.getElementById('deploy'); return p && d && p.textContent + ' | ' + d.textContent })()`, 10*time.Second)
	if !strings.Contains(meta, "package type Zip · runtime provided.al2023 on scratch · CodeSha256 "+zipped.Package.CodeSha256) || !strings.Contains(meta, "on failure → console-fn") {
		t.Errorf("the zip package's edit view: %q", meta)
	}

	// Edit and delete.
	b.do("open edit", goHash("#/functions/console-fn/edit"))
	wait[bool](b, "the edit form", `document.getElementById('fn-name')?.value === 'console-fn'`, 10*time.Second)
	b.do("save", setValue("#fn-memory_mb", "64"), chromedp.Click(chromedp.ID("function-submit")))
	wait[bool](b, "saved", `!document.getElementById('saved').hidden`, 10*time.Second)
	var fn projections.Function
	if s.callAs("GET", "/functions/console-fn", nil, &fn, token); fn.MemoryMB != 64 || fn.Env["GREETING"] != "hello" || fn.Timeout != 30 {
		t.Errorf("after the edit: %+v", fn)
	}
	b.do("delete", goHash("#/functions"))
	wait[bool](b, "the list", `!!document.querySelector('#functions [data-action="delete"]')`, 10*time.Second)
	b.do("confirm delete", chromedp.Click(chromedp.CSS(`#functions [data-action="delete"]`)), chromedp.Click(chromedp.CSS(`#functions [data-action="delete"]`)))
	wait[bool](b, "the row gone", `!document.querySelector('#functions tr[data-function="console-fn"]')`, 10*time.Second)
	if code := s.callAs("GET", "/functions/console-fn", nil, nil, token); code != 404 {
		t.Errorf("deleted through the console, yet GET answers %d", code)
	}

	if p := b.consoleProblems(); len(p) > 0 {
		t.Errorf("the browser's console reported errors:\n%s", strings.Join(p, "\n"))
	}
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	assertAudit(t, db)
}

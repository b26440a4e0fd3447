package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/projections"
)

// callbackTimeout bounds one delivery of a callback.
const callbackTimeout = 10 * time.Second

// callbacks POSTs the record of each async invocation that ends to its
// callback URL, when it has one, and records how that went in an
// invocation.callback event. Only hosts the operator allowed are called,
// redirects are not followed, and a failed delivery is tried again after
// the retry backoff, up to Options.CallbackTries times.
type callbacks struct {
	s      *Service
	client *http.Client

	// ctx ends when Stop's grace is over: a callback waiting for its next
	// try gives up then, and says so in its record.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (c *callbacks) init(s *Service) {
	c.s = s
	c.client = &http.Client{
		Timeout: callbackTimeout,
		// A redirect could lead a callback to a host nobody allowed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.ctx, c.cancel = context.WithCancel(s.life)
}

// check accepts an empty URL, or an http(s) URL whose host the operator
// allowed.
func (c *callbacks) check(raw string) error {
	if raw == "" {
		return nil
	}
	if err := function.CheckCallbackURL(raw); err != nil {
		return fmt.Errorf("%w: %v", function.ErrInvalid, err)
	}
	hosts := c.s.opts.CallbackHosts
	if len(hosts) == 0 {
		return fmt.Errorf("%w: callbacks are off; the operator allows hosts with --callback-hosts", function.ErrInvalid)
	}
	u, _ := url.Parse(raw) // checked above
	host := strings.ToLower(u.Host)
	for _, h := range hosts {
		h = strings.ToLower(h)
		if h == host || h == u.Hostname() && u.Port() == "" {
			return nil
		}
		if hh, _, err := net.SplitHostPort(host); err == nil && hh == h {
			return nil
		}
	}
	return fmt.Errorf("%w: callback host %q is not among the allowed --callback-hosts", function.ErrInvalid, u.Host)
}

// send delivers the ended record of invocation id in the background, if
// the invocation has a callback URL.
func (c *callbacks) send(id string) {
	q, err := c.s.views.Queued(id)
	if err != nil || q.CallbackURL == "" {
		return
	}
	inv, err := c.s.views.Invocation(id)
	if err != nil {
		return
	}
	body, _ := json.Marshal(inv)
	c.deliver(inv.FunctionID, id, q.CallbackURL, body)
}

// deliver POSTs body, about invocation id of function functionID, to url
// in the background, trying again as a callback is tried, and records how
// it went.
func (c *callbacks) deliver(functionID, id, url string, body []byte) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		rec := projections.InvocationCallback{URL: url}
		// The operator may have taken the host off the list since the
		// invocation was accepted (and the server restarted).
		if err := c.check(url); err != nil {
			rec.Error = "not sent: " + strings.TrimPrefix(err.Error(), function.ErrInvalid.Error()+": ")
			c.record(functionID, id, rec)
			return
		}
		for try := 1; try <= c.s.opts.CallbackTries; try++ {
			rec.Attempts = try
			rec.StatusCode, rec.Error = c.post(url, id, body)
			if rec.Error == "" || try == c.s.opts.CallbackTries {
				break
			}
			if !c.sleep(c.s.opts.RetryBase << (try - 1)) {
				rec.Error += " (the server stopped before another try)"
				break
			}
		}
		c.record(functionID, id, rec)
	}()
}

// record appends how a callback went.
func (c *callbacks) record(functionID, id string, rec projections.InvocationCallback) {
	e, err := projections.NewInvocationCallback(functionID, id, rec)
	if err == nil {
		_, err = c.s.persist(c.ctx, e)
	}
	if err != nil {
		c.s.logger.Warn("cannot record a callback", "invocation_id", id, "err", err)
	}
}

// sleep waits d, or less when the callbacks are stopped; it reports
// whether it waited the whole time.
func (c *callbacks) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// post delivers one callback and returns the status code and, when it
// failed, why.
func (c *callbacks) post(url, id string, body []byte) (int, string) {
	ctx, cancel := context.WithTimeout(c.ctx, callbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Minilambda-Invocation-Id", id)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Sprintf("the callback answered %s", resp.Status)
	}
	return resp.StatusCode, ""
}

// stop lets callbacks under way finish until ctx ends, then cuts them
// short; it returns once each has been recorded.
func (c *callbacks) stop(ctx context.Context) {
	waitOrCancel(ctx, &c.wg, c.cancel)
}

// Package notify sends deploy events to the [[notify]] webhooks: generic
// JSON, Slack and Discord payloads, delivered in the background with a
// timeout and retries. Nothing here can block or fail a deploy: the
// engine's event callback only queues, and a full queue drops its oldest
// entry.
package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
)

// QueueSize is how many undelivered notifications each webhook keeps.
const QueueSize = 128

// LinkMaker makes the one-click approval link for a pending deploy,
// recorded as approver when used. The HTTP server implements it.
type LinkMaker interface {
	ApproveURL(site, deployID, approver string, expires time.Time) (string, error)
}

// Notifier delivers engine events to the configured webhooks. Set the
// exported fields before Start.
type Notifier struct {
	// Mask hides secrets: it is applied to every string of every payload
	// before it is sent (site is the event's site, for per-site secrets).
	// nil leaves text as it is. Wire the secrets package's masking here.
	Mask func(site, text string) string
	// Links makes approval links; nil means no [http] listener, no links.
	Links LinkMaker
	// Client sends the POSTs; nil uses a client that does not follow
	// redirects. Each try is bounded by the block's timeout.
	Client *http.Client
	// Backoff is the wait before the first retry; it doubles per retry.
	// Zero means 500ms.
	Backoff time.Duration

	log     *log.Logger
	targets []*target
	ctx     context.Context // cancelled when Stop gives up waiting
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	now     func() time.Time
}

// target is one [[notify]] block with its own queue and worker, so that a
// slow webhook does not hold up the others.
type target struct {
	cfg  deployer.NotifyConfig
	name string // for logs: kind and host, never the full URL

	mu       sync.Mutex
	queue    []deployer.Event
	wake     chan struct{}
	closed   bool
	dropping bool // a warning about a full queue was logged
}

// New makes a notifier for the [[notify]] blocks (defaults are filled in
// here as well, for blocks not read by deployer.LoadConfig).
func New(cfgs []deployer.NotifyConfig, logger *log.Logger) *Notifier {
	if logger == nil {
		logger = log.New(io.Discard)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{log: logger, ctx: ctx, cancel: cancel, now: time.Now}
	for _, c := range cfgs {
		c = c.WithDefaults()
		name := c.Kind
		if u, err := url.Parse(c.URL); err == nil {
			name += " " + u.Host
		}
		n.targets = append(n.targets, &target{cfg: c, name: name, wake: make(chan struct{}, 1)})
	}
	return n
}

// Start starts one delivery worker per webhook.
func (n *Notifier) Start() {
	if n.Client == nil {
		n.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if n.Backoff == 0 {
		n.Backoff = 500 * time.Millisecond
	}
	for _, t := range n.targets {
		n.wg.Add(1)
		go n.work(t)
	}
}

// Enqueue queues an event for every webhook that wants it. It never
// blocks: it is the engine's event callback. When a webhook's queue is
// full the oldest notification is dropped (one warning per overflow).
func (n *Notifier) Enqueue(ev deployer.Event) {
	for _, t := range n.targets {
		if len(t.cfg.Events) > 0 && !slices.Contains(t.cfg.Events, ev.Kind) {
			continue
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			continue
		}
		if len(t.queue) >= QueueSize {
			t.queue = slices.Delete(t.queue, 0, 1)
			if !t.dropping {
				t.dropping = true
				n.log.Warn("notification queue full, dropping the oldest", "webhook", t.name, "size", QueueSize)
			}
		}
		t.queue = append(t.queue, ev)
		t.mu.Unlock()
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// Stop stops taking events and delivers what is queued until ctx ends;
// then it abandons the rest (in-flight requests are cancelled) and
// returns ctx's error.
func (n *Notifier) Stop(ctx context.Context) error {
	for _, t := range n.targets {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return ctx.Err()
	}
}

func (n *Notifier) work(t *target) {
	defer n.wg.Done()
	for {
		t.mu.Lock()
		if len(t.queue) == 0 {
			t.dropping = false
			closed := t.closed
			t.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-t.wake:
			case <-n.ctx.Done():
				return
			}
			continue
		}
		ev := t.queue[0]
		t.queue = slices.Delete(t.queue, 0, 1)
		t.mu.Unlock()
		if n.ctx.Err() != nil {
			return
		}
		n.deliver(t, ev)
	}
}

// deliver sends one event to one webhook, retrying with backoff, and logs
// once if it does not get through.
func (n *Notifier) deliver(t *target, ev deployer.Event) {
	body, err := n.payload(t, ev)
	if err != nil {
		n.log.Error("build notification", "webhook", t.name, "event", ev.Kind, "site", ev.Record.Site, "err", err)
		return
	}
	wait := n.Backoff
	tries := 1 + t.cfg.Retries
	for try := 1; ; try++ {
		err = n.post(t, body)
		if err == nil {
			n.log.Debug("notification sent", "webhook", t.name, "event", ev.Kind, "site", ev.Record.Site, "deploy", ev.Record.ID)
			return
		}
		var perm permanentError
		if try >= tries || errors.As(err, &perm) || n.ctx.Err() != nil {
			break
		}
		select {
		case <-n.ctx.Done():
		case <-time.After(wait):
		}
		wait *= 2
	}
	n.log.Warn("notification not delivered", "webhook", t.name, "event", ev.Kind, "site", ev.Record.Site,
		"deploy", ev.Record.ID, "err", err)
}

// payload renders the event for a webhook, with an approval link when the
// block has an approver and links can be made.
func (n *Notifier) payload(t *target, ev deployer.Event) ([]byte, error) {
	m := NewMessage(ev, n.now())
	if ev.Kind == "pending_approval" && t.cfg.Approver != "" && n.Links != nil && m.ExpiresAt != nil && n.now().Before(*m.ExpiresAt) {
		link, err := n.Links.ApproveURL(m.Site, m.DeployID, t.cfg.Approver, *m.ExpiresAt)
		if err != nil {
			n.log.Error("make approval link", "site", m.Site, "deploy", m.DeployID, "err", err)
		} else {
			m.ApproveURL = link
		}
	}
	var mask func(string) string
	if n.Mask != nil {
		site := m.Site
		mask = func(s string) string { return n.Mask(site, s) }
	}
	return Payload(t.cfg.Kind, m, mask)
}

// permanentError is a failure that a retry will not fix (a 4xx answer).
type permanentError struct{ error }

func (n *Notifier) post(t *target, body []byte) error {
	ctx, cancel := context.WithTimeout(n.ctx, t.cfg.Timeout.Duration)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return permanentError{errors.New("invalid webhook URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "eeveon-notify")
	resp, err := n.Client.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, which may hold a credential.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", t.cfg.Timeout.Duration)
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return permanentError{fmt.Errorf("webhook answered %s", resp.Status)}
}

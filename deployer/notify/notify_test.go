package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
)

// receiver is a webhook endpoint that records what it gets and answers
// with the status its script says (200 when the script runs out).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	script []int
	got    chan struct{}
}

func newReceiver(t *testing.T, script ...int) *receiver {
	t.Helper()
	r := &receiver{script: script, got: make(chan struct{}, 1000)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := http.StatusOK
		if len(r.script) > 0 {
			status, r.script = r.script[0], r.script[1:]
		}
		if req.Header.Get("Content-Type") == "application/json" && req.Method == http.MethodPost {
			r.bodies = append(r.bodies, b)
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		r.got <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// wait waits for n requests.
func (r *receiver) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.got:
		case <-time.After(5 * time.Second):
			t.Fatalf("webhook got %d requests, want %d", i, n)
		}
	}
}

// hanging is a webhook that never answers until the test ends.
func hanging(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newNotifier(t *testing.T, cfgs ...deployer.NotifyConfig) (*Notifier, *syncBuf) {
	t.Helper()
	var logs syncBuf
	n := New(cfgs, log.New(&logs))
	n.Backoff = 10 * time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	return n, &logs
}

func event(kind deployer.EventKind) deployer.Event {
	ev := pendingEvent()
	ev.Kind = kind
	if kind != "pending_approval" {
		ev.Record.ExpiresAt = nil
	}
	return ev
}

func TestDeliverWebhook(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := newNotifier(t, deployer.NotifyConfig{URL: rcv.URL + "/hook"})
	n.Start()
	n.Enqueue(event("deploy_started"))
	n.Enqueue(event("live"))
	rcv.wait(t, 2)
	reqs := rcv.requests()
	var kinds []string
	for _, b := range reqs {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, m["event"].(string))
	}
	if strings.Join(kinds, ",") != "deploy_started,live" {
		t.Errorf("delivered %v, want deploy_started then live", kinds)
	}
}

func TestEventFilter(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := newNotifier(t, deployer.NotifyConfig{URL: rcv.URL, Events: []deployer.EventKind{"failed"}})
	n.Start()
	n.Enqueue(event("deploy_started"))
	n.Enqueue(event("live"))
	n.Enqueue(event("failed"))
	rcv.wait(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if reqs := rcv.requests(); len(reqs) != 1 || !bytes.Contains(reqs[0], []byte(`"event":"failed"`)) {
		t.Errorf("filter let through %d requests: %s", len(reqs), bytes.Join(reqs, []byte("\n")))
	}
}

func TestRetryThenSuccess(t *testing.T) {
	rcv := newReceiver(t, 500, 503)
	n, logs := newNotifier(t, deployer.NotifyConfig{URL: rcv.URL, Retries: 3})
	n.Start()
	n.Enqueue(event("live"))
	rcv.wait(t, 3)
	if got := len(rcv.requests()); got != 3 {
		t.Errorf("got %d tries, want 3", got)
	}
	if strings.Contains(logs.String(), "not delivered") {
		t.Errorf("a delivery that got through was logged as failed:\n%s", logs)
	}
}

func TestGiveUpLogsOnceWithoutURL(t *testing.T) {
	rcv := newReceiver(t, 500, 500, 500, 500, 500)
	n, logs := newNotifier(t, deployer.NotifyConfig{URL: rcv.URL + "/services/T000/SECRETPATH", Retries: 2})
	n.Start()
	n.Enqueue(event("failed"))
	rcv.wait(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(rcv.requests()); got != 3 {
		t.Errorf("got %d tries, want 1 + 2 retries", got)
	}
	if c := strings.Count(logs.String(), "notification not delivered"); c != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", c, logs)
	}
	if strings.Contains(logs.String(), "SECRETPATH") {
		t.Errorf("log shows the webhook URL:\n%s", logs)
	}
}

func TestClientErrorIsNotRetried(t *testing.T) {
	rcv := newReceiver(t, 404, 200)
	n, logs := newNotifier(t, deployer.NotifyConfig{URL: rcv.URL, Retries: 3})
	n.Start()
	n.Enqueue(event("live"))
	rcv.wait(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = n.Stop(ctx)
	if got := len(rcv.requests()); got != 1 {
		t.Errorf("got %d tries of a 404, want 1", got)
	}
	if !strings.Contains(logs.String(), "404") {
		t.Errorf("404 not logged:\n%s", logs)
	}
}

type fakeLinks struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeLinks) ApproveURL(site, id, approver string, expires time.Time) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, site+" "+id+" "+approver+" "+expires.UTC().Format(time.RFC3339))
	return "http://links.test/approve/" + approver, nil
}

func TestApproveLinkOnlyForApproverBlocks(t *testing.T) {
	withApprover, without := newReceiver(t), newReceiver(t)
	n, _ := newNotifier(t,
		deployer.NotifyConfig{URL: withApprover.URL, Approver: "alice"},
		deployer.NotifyConfig{URL: without.URL},
	)
	links := &fakeLinks{}
	n.Links = links
	n.now = func() time.Time { return testNow }
	n.Start()
	n.Enqueue(event("pending_approval"))
	n.Enqueue(event("live"))
	withApprover.wait(t, 2)
	without.wait(t, 2)
	a, b := withApprover.requests(), without.requests()
	if !bytes.Contains(a[0], []byte(`"approve_url":"http://links.test/approve/alice"`)) {
		t.Errorf("pending_approval to the approver's block lacks the link: %s", a[0])
	}
	for _, body := range [][]byte{a[1], b[0], b[1]} {
		if bytes.Contains(body, []byte("approve_url")) {
			t.Errorf("link where none belongs: %s", body)
		}
	}
	if len(links.calls) != 1 || links.calls[0] != "critical 20260304-050607-ab12 alice 2026-03-04T06:06:07Z" {
		t.Errorf("links made: %v", links.calls)
	}
}

// A webhook that never answers: Enqueue still returns at once, the queue
// stays bounded (dropping the oldest, with one warning), and Stop gives
// up when its context ends.
func TestHangingWebhookNeverBlocks(t *testing.T) {
	srv := hanging(t)
	n, logs := newNotifier(t, deployer.NotifyConfig{URL: srv.URL, Timeout: deployer.Duration{Duration: time.Minute}})
	n.Start()
	start := time.Now()
	for i := 0; i < 10*QueueSize; i++ {
		n.Enqueue(event("live"))
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Enqueue of %d events took %s", 10*QueueSize, d)
	}
	n.targets[0].mu.Lock()
	queued := len(n.targets[0].queue)
	n.targets[0].mu.Unlock()
	if queued > QueueSize {
		t.Errorf("queue holds %d, bound is %d", queued, QueueSize)
	}
	if c := strings.Count(logs.String(), "queue full"); c != 1 {
		t.Errorf("queue full logged %d times, want once:\n%s", c, logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := n.Stop(ctx); err == nil {
		t.Error("Stop reported a full drain of a hanging webhook")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %s with a 200ms bound", d)
	}
	n.Enqueue(event("live")) // after Stop: dropped, no panic, no block
}

// Stop delivers what is queued before it returns.
func TestStopDrains(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := newNotifier(t, deployer.NotifyConfig{URL: rcv.URL})
	for i := 0; i < 5; i++ {
		n.Enqueue(event("live"))
	}
	n.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(rcv.requests()); got != 5 {
		t.Errorf("delivered %d of 5 before Stop returned", got)
	}
}

// A real engine deploying with a hanging webhook as its only listener:
// the deploy goes live as fast as without it.
func TestHangingWebhookDoesNotDelayDeploy(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	srv := hanging(t)
	d, err := deployer.NewData(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	engine := deployer.NewEngine(d, deployer.Default(), log.New(io.Discard))
	n, _ := newNotifier(t, deployer.NotifyConfig{URL: srv.URL, Timeout: deployer.Duration{Duration: time.Minute}, Retries: 3})
	engine.OnEvent(n.Enqueue)
	n.Start()
	site, err := deployer.SaveSite(d, deployer.Site{Name: "web"}, true, "")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@test")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(work, "index.html"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "-A")
	git("commit", "-q", "-m", "v1")
	git("push", "-q", d.Repo("web"), "main")

	for i := 0; i < 3; i++ {
		start := time.Now()
		r, err := engine.Deploy(context.Background(), deployer.Request{Site: "web", Trigger: "cli", User: "t"}, io.Discard)
		if err != nil || r.State != deployer.StateLive {
			t.Fatalf("deploy %d: %v (%s)", i, err, r.State)
		}
		// A deploy that waited for the webhook would take its minute.
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("deploy %d took %s with a hanging webhook", i, took)
		}
	}
	if b, err := os.ReadFile(filepath.Join(site.Path, "current", "index.html")); err != nil || string(b) != "v1" {
		t.Errorf("current/index.html = %q, %v", b, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	engine.Shutdown(ctx)
}

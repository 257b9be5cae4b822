package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ntReceiver is a webhook endpoint in the test: it keeps every JSON
// payload posted to it, by path.
type ntReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	payloads []ntPayload
}

type ntPayload struct {
	Path string
	Doc  map[string]any
}

func ntNewReceiver(t *testing.T) *ntReceiver {
	t.Helper()
	r := &ntReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var doc map[string]any
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &doc) != nil {
			t.Errorf("webhook got %s %s %q: %s", req.Method, req.URL.Path, req.Header.Get("Content-Type"), b)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.payloads = append(r.payloads, ntPayload{req.URL.Path, doc})
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// wait returns the first payload on path for which match holds, waiting
// for it to arrive (delivery is asynchronous).
func (r *ntReceiver) wait(t *testing.T, path string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r.mu.Lock()
		for _, p := range r.payloads {
			if p.Path == path && match(p.Doc) {
				r.mu.Unlock()
				return p.Doc
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no matching payload on %s; got %d payloads: %+v", path, len(r.payloads), r.payloads)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ntEvent matches a generic payload by event and site.
func ntEvent(event, site string) func(map[string]any) bool {
	return func(d map[string]any) bool { return d["event"] == event && d["site"] == site }
}

// ntHTTP configures the approval link listener on a free port and returns
// the base URL links must start with.
func ntHTTP(t *testing.T) (string, string) {
	port := freePort(t)
	return fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%s\"\n", port), "http://127.0.0.1:" + port
}

func ntDo(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, html.UnescapeString(string(b))
}

// ntHistory reads a site's .deploy_history.
func (e *Env) ntHistory(site string) []map[string]any {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.SitePath(site), ".deploy_history"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func (e *Env) ntAudit() []map[string]any {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Data, "audit.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// Webhook payloads for a push to a normal site and to an approval site,
// in the three formats.
func TestNotifyWebhookPayloads(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	rcv := ntNewReceiver(t)
	httpConf, base := ntHTTP(t)
	e.restartWithConfig(httpConf + `
[[notify]]
url = "` + rcv.URL + `/generic"
approver = "alice"

[[notify]]
kind = "slack"
url = "` + rcv.URL + `/slack"
events = ["live", "pending_approval"]
approver = "alice"

[[notify]]
kind = "discord"
url = "` + rcv.URL + `/discord"
events = ["live"]
`)
	bob := e.AddKey("bob", "deployer", "")
	e.MustEeveon("site", "add", "web")
	e.MustEeveon("site", "add", "critical", "--approval")

	web := e.NewRepo("web", map[string]string{"index.html": "v1"})
	c1 := web.Git("rev-parse", "HEAD")
	if r := web.Push(bob, "web"); r.Code != 0 {
		t.Fatalf("push web: %s", r.Out())
	}
	started := rcv.wait(t, "/generic", ntEvent("deploy_started", "web"))
	live := rcv.wait(t, "/generic", ntEvent("live", "web"))
	if started["deploy_id"] != live["deploy_id"] || live["commit"] != c1 || live["short_commit"] != c1[:7] ||
		live["ref"] != "refs/heads/main" || live["color"] != "blue" || live["state"] != "live" || live["user"] != "bob" {
		t.Errorf("generic live payload: %v", live)
	}
	if _, ok := live["approve_url"]; ok {
		t.Errorf("live payload carries an approval link: %v", live)
	}
	slack := rcv.wait(t, "/slack", func(d map[string]any) bool { return strings.Contains(fmt.Sprint(d["text"]), "web: "+c1[:7]+" is live") })
	if blocks, _ := slack["blocks"].([]any); len(blocks) == 0 {
		t.Errorf("slack payload has no blocks: %v", slack)
	}
	discord := rcv.wait(t, "/discord", func(d map[string]any) bool {
		return strings.Contains(fmt.Sprint(d["content"]), "web: "+c1[:7]+" is live")
	})
	if embeds, _ := discord["embeds"].([]any); len(embeds) != 1 {
		t.Errorf("discord payload: %v", discord)
	}

	crit := e.NewRepo("critical", map[string]string{"index.html": "v1"})
	if r := crit.Push(bob, "critical"); r.Code != 0 {
		t.Fatalf("push critical: %s", r.Out())
	}
	pending := rcv.wait(t, "/generic", ntEvent("pending_approval", "critical"))
	link, _ := pending["approve_url"].(string)
	if !strings.HasPrefix(link, base+"/approve/") || pending["expires_at"] == nil || pending["state"] != "pending_approval" {
		t.Errorf("pending payload: %v", pending)
	}
	slackPending := rcv.wait(t, "/slack", func(d map[string]any) bool { return strings.Contains(fmt.Sprint(d["text"]), "awaits approval") })
	if b, _ := json.Marshal(slackPending); !strings.Contains(string(b), `"url":"`+base+`/approve/`) {
		t.Errorf("slack pending payload has no approve button: %s", b)
	}
	// Each notification gets its own single-use link.
	if b, _ := json.Marshal(slackPending); strings.Contains(string(b), link) {
		t.Error("two notifications share one link")
	}
	rcv.mu.Lock()
	for _, p := range rcv.payloads {
		if p.Path == "/discord" && p.Doc["content"] != nil && strings.Contains(fmt.Sprint(p.Doc["content"]), "critical") {
			t.Errorf("discord block filtered to live got %v", p.Doc["content"])
		}
	}
	rcv.mu.Unlock()
	if e.Live("critical") != "" {
		t.Error("a deploy waiting for approval went live")
	}
}

// The one-click link: GET shows, POST approves once, as the configured
// approver; tampered, replayed and superseded links are refused.
func TestNotifyApprovalLink(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	rcv := ntNewReceiver(t)
	httpConf, base := ntHTTP(t)
	e.restartWithConfig(httpConf + `
[[notify]]
url = "` + rcv.URL + `/hook"
events = ["pending_approval"]
approver = "carol"
`)
	alice := e.AddKey("alice", "admin", "")
	bob := e.AddKey("bob", "deployer", "")
	e.MustEeveon("site", "add", "critical", "--approval", "--build", "./build.sh")
	repo := e.NewRepo("critical", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(bob, "critical"); r.Code != 0 {
		t.Fatalf("push: %s", r.Out())
	}
	if r := e.SSH(alice, "approve", "critical"); r.Code != 0 || e.Live("critical") != "blue" {
		t.Fatalf("ssh approve: %s", r.Out())
	}

	c2 := repo.Commit("add a page", map[string]string{"page.txt": "hello\n"})
	if r := repo.Push(bob, "critical"); r.Code != 0 {
		t.Fatalf("push: %s", r.Out())
	}
	pending := rcv.wait(t, "/hook", func(d map[string]any) bool { return d["commit"] == c2 })
	link, _ := pending["approve_url"].(string)
	id2, _ := pending["deploy_id"].(string)
	if !strings.HasPrefix(link, base+"/approve/") {
		t.Fatalf("approve_url = %q", link)
	}

	// GET: the confirmation page, nothing approved.
	code, body := ntDo(t, http.MethodGet, link)
	if code != http.StatusOK {
		t.Fatalf("GET: %d\n%s", code, body)
	}
	for _, want := range []string{c2[:7], c2, id2, "add a page", "t <t@test>", "against the live commit <code>" + c1[:7], "page.txt | 1 +", `<form method="post">`, "carol"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if e.Live("critical") != "blue" || !strings.Contains(e.MustEeveon("status", "critical").Stdout, "pending:  deploy "+id2) {
		t.Fatal("GET changed the deploy state")
	}

	// Tampered: one character flipped.
	i := len(base+"/approve/") + 5
	tampered := link[:i] + string(link[i]^1) + link[i+1:]
	if code, body := ntDo(t, http.MethodPost, tampered); code != http.StatusBadRequest || !strings.Contains(body, "not valid") {
		t.Errorf("tampered POST: %d\n%s", code, body)
	}
	if e.Live("critical") != "blue" {
		t.Fatal("a tampered link changed what is live")
	}

	// POST approves as carol.
	code, body = ntDo(t, http.MethodPost, link)
	if code != http.StatusOK || !strings.Contains(body, "approved by carol") {
		t.Fatalf("POST: %d\n%s", code, body)
	}
	if e.Live("critical") != "green" || e.ReadSite("critical", "public/index.html") != "commit "+c2+" color green\n" {
		t.Fatalf("approved deploy not live: %q", e.Live("critical"))
	}
	var approved map[string]any
	for _, h := range e.ntHistory("critical") {
		if h["id"] == id2 && h["state"] == "live" {
			approved = h
		}
	}
	if approved == nil || approved["approved_by"] != "carol" {
		t.Errorf("history entry of the approval: %v", approved)
	}
	found := false
	for _, a := range e.ntAudit() {
		if a["source"] == "http" && a["user"] == "carol" && a["command"] == "approve critical "+id2 && a["outcome"] == "ok" {
			found = true
		}
	}
	if !found {
		t.Errorf("audit.log lacks the http approval:\n%v", e.ntAudit())
	}

	// Replayed.
	if code, body := ntDo(t, http.MethodPost, link); code != http.StatusGone || !strings.Contains(body, "already used") {
		t.Errorf("replayed POST: %d\n%s", code, body)
	}

	// Superseded: a newer push before the first link is used.
	repo.Commit("three", map[string]string{"page.txt": "3\n"})
	if r := repo.Push(bob, "critical"); r.Code != 0 {
		t.Fatalf("push: %s", r.Out())
	}
	c3 := repo.Git("rev-parse", "HEAD")
	link3, _ := rcv.wait(t, "/hook", func(d map[string]any) bool { return d["commit"] == c3 })["approve_url"].(string)
	c4 := repo.Commit("four", map[string]string{"page.txt": "4\n"})
	if r := repo.Push(bob, "critical"); r.Code != 0 {
		t.Fatalf("push: %s", r.Out())
	}
	rcv.wait(t, "/hook", func(d map[string]any) bool { return d["commit"] == c4 })
	if code, body := ntDo(t, http.MethodPost, link3); code != http.StatusGone || !strings.Contains(body, "superseded") {
		t.Errorf("superseded POST: %d\n%s", code, body)
	}
	if e.Live("critical") != "green" || e.ReadSite("critical", "public/index.html") != "commit "+c2+" color green\n" {
		t.Error("a superseded link changed what is live")
	}
}

// An expired link is refused and changes nothing.
func TestNotifyLinkExpired(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	rcv := ntNewReceiver(t)
	httpConf, _ := ntHTTP(t)
	e.restartWithConfig(httpConf + `
[[notify]]
url = "` + rcv.URL + `/hook"
approver = "alice"
`)
	bob := e.AddKey("bob", "deployer", "")
	e.MustEeveon("site", "add", "critical", "--approval")
	e.MustEeveon("site", "set", "critical", "--approval-timeout", "1s")
	repo := e.NewRepo("critical", map[string]string{"index.html": "v1"})
	if r := repo.Push(bob, "critical"); r.Code != 0 {
		t.Fatalf("push: %s", r.Out())
	}
	pending := rcv.wait(t, "/hook", ntEvent("pending_approval", "critical"))
	link, _ := pending["approve_url"].(string)
	if link == "" {
		t.Fatalf("no link in %v", pending)
	}
	exp, err := time.Parse(time.RFC3339, fmt.Sprint(pending["expires_at"]))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(exp) + 1100*time.Millisecond)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		if code, body := ntDo(t, method, link); code != http.StatusGone || !strings.Contains(body, "expired") {
			t.Errorf("expired %s: %d\n%s", method, code, body)
		}
	}
	if e.Live("critical") != "" {
		t.Error("an expired link put the deploy live")
	}
}

// A webhook that never answers does not slow a push down, and the other
// webhooks still get their notifications.
func TestNotifyWebhookHangingDoesNotDelayPush(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	t.Cleanup(func() { close(release); hang.Close() })
	rcv := ntNewReceiver(t)
	e.restartWithConfig(`
[[notify]]
url = "` + hang.URL + `/hang"
timeout = "30s"
retries = 3

[[notify]]
url = "` + rcv.URL + `/ok"
`)
	bob := e.AddKey("bob", "deployer", "")
	e.MustEeveon("site", "add", "web")
	repo := e.NewRepo("web", map[string]string{"index.html": "v1"})
	for i, want := range []string{"blue", "green"} {
		if i > 0 {
			repo.Commit("next", map[string]string{"index.html": "v2"})
		}
		start := time.Now()
		r := repo.Push(bob, "web")
		took := time.Since(start)
		if r.Code != 0 || e.Live("web") != want {
			t.Fatalf("push %d: exit %d, live %q\n%s", i, r.Code, e.Live("web"), r.Out())
		}
		if took > 5*time.Second {
			t.Errorf("push %d took %s with a hanging webhook", i, took)
		}
	}
	c := repo.Git("rev-parse", "HEAD")
	rcv.wait(t, "/ok", func(d map[string]any) bool { return d["event"] == "live" && d["commit"] == c })
}

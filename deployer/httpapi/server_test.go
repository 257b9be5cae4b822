package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
)

// fixture is a real engine with one approval site, and the HTTP server
// on a free loopback port.
type fixture struct {
	t      *testing.T
	d      deployer.Data
	engine *deployer.Engine
	srv    *Server
	work   string
}

func newFixture(t *testing.T, site deployer.Site) *fixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	d, err := deployer.NewData(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, d: d, engine: deployer.NewEngine(d, deployer.Default(), log.New(io.Discard)), work: t.TempDir()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.engine.Shutdown(ctx)
	})
	site.Approval = true
	if _, err := deployer.SaveSite(d, site, true, ""); err != nil {
		t.Fatal(err)
	}
	f.git("init", "-q", "-b", "main")
	f.git("remote", "add", "origin", d.Repo(site.Name))
	f.start()
	return f
}

// start (re)starts the HTTP server on the data dir, as after a restart.
func (f *fixture) start() {
	f.t.Helper()
	if f.srv != nil {
		_ = f.srv.Shutdown(context.Background())
	}
	f.srv = &Server{Engine: f.engine, Config: deployer.HTTPConfig{Listen: "127.0.0.1:0"},
		Audit: command.NewAudit(f.d.AuditLog()), Log: log.New(io.Discard)}
	if err := f.srv.Listen(); err != nil {
		f.t.Fatal(err)
	}
	srv := f.srv
	go func() { _ = srv.Serve() }()
	f.t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
}

func (f *fixture) git(args ...string) string {
	f.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = f.work
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Ann O'Dev & Co", "GIT_AUTHOR_EMAIL=ann@test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		f.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files, commits and pushes them; it returns the commit.
func (f *fixture) commit(msg string, files map[string]string) string {
	f.t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(f.work, name), []byte(content), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	f.git("add", "-A")
	f.git("commit", "-q", "--allow-empty", "-m", msg)
	f.git("push", "-q", "origin", "main")
	return f.git("rev-parse", "HEAD")
}

// deploy runs a deploy of the branch by bob; on an approval site it ends
// pending.
func (f *fixture) deploy(site string) deployer.Record {
	f.t.Helper()
	r, err := f.engine.Deploy(context.Background(), deployer.Request{Site: site, Trigger: "push", User: "bob"}, io.Discard)
	if err != nil || r.State != deployer.StatePendingApproval {
		f.t.Fatalf("deploy: %v (state %s)", err, r.State)
	}
	return r
}

func (f *fixture) link(r deployer.Record, approver string) string {
	f.t.Helper()
	u, err := f.srv.ApproveURL(r.Site, r.ID, approver, *r.ExpiresAt)
	if err != nil {
		f.t.Fatal(err)
	}
	if want := "http://" + f.srv.Addr().String() + "/approve/"; !strings.HasPrefix(u, want) {
		f.t.Fatalf("link %s does not start with %s", u, want)
	}
	return u
}

type response struct {
	status int
	body   string
	header http.Header
}

func do(t *testing.T, method, url string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// Assertions are on the text a browser shows.
	return response{resp.StatusCode, html.UnescapeString(string(b)), resp.Header}
}

func rawGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (f *fixture) pending(site string) string {
	if r, ok := f.engine.Pending(site); ok {
		return r.ID
	}
	return ""
}

func (f *fixture) audit() []command.Event {
	f.t.Helper()
	fh, err := os.Open(f.d.AuditLog())
	if err != nil {
		return nil
	}
	defer fh.Close()
	var evs []command.Event
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var ev command.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			f.t.Fatalf("audit line: %v", err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestApproveThroughLink(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "critical"})
	c1 := f.commit("first", map[string]string{"README": "one\n"})
	r1 := f.deploy("critical")
	if _, err := f.engine.Approve(context.Background(), "critical", r1.ID, "carol", io.Discard); err != nil {
		t.Fatal(err)
	}
	c2 := f.commit("second <b>bold</b>", map[string]string{"README": "one\ntwo\n", "new.txt": "x\n"})
	r2 := f.deploy("critical")
	link := f.link(r2, "alice")

	// The page escapes what the pusher controls.
	if raw := rawGet(t, link); !strings.Contains(raw, "second &lt;b&gt;bold&lt;/b&gt;") || strings.Contains(raw, "<b>bold") {
		t.Errorf("commit subject not escaped:\n%s", raw)
	}
	// GET shows the deploy and changes nothing, however often it is
	// fetched (chat previews).
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodGet} {
		resp := do(t, method, link)
		if resp.status != http.StatusOK {
			t.Fatalf("%s: status %d\n%s", method, resp.status, resp.body)
		}
		if method == http.MethodHead {
			continue
		}
		for _, want := range []string{
			c2[:7], c2, r2.ID, "second <b>bold</b>", "Ann O'Dev & Co <ann@test>",
			"against the live commit <code>" + c1[:7] + "</code>", "README  | 1 +", "new.txt | 1 +",
			"2 files changed", `<form method="post">`, "alice", "Nothing has been approved yet",
		} {
			if !strings.Contains(resp.body, want) {
				t.Errorf("page lacks %q:\n%s", want, resp.body)
			}
		}
		for k, v := range map[string]string{"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"} {
			if resp.header.Get(k) != v {
				t.Errorf("header %s = %q, want %q", k, resp.header.Get(k), v)
			}
		}
	}
	if f.pending("critical") != r2.ID {
		t.Fatal("GET changed the pending deploy")
	}

	resp := do(t, http.MethodPost, link)
	if resp.status != http.StatusOK || !strings.Contains(resp.body, "approved by alice and is live on green") {
		t.Fatalf("POST: status %d\n%s", resp.status, resp.body)
	}
	st, err := f.engine.Status("critical")
	if err != nil || st.LiveColor != "green" || st.Live == nil || st.Live.Commit != c2 || st.Live.ApprovedBy != "alice" || st.Pending != nil {
		t.Fatalf("after approval: %v %+v", err, st)
	}
	evs := f.audit()
	last := evs[len(evs)-1]
	if last.User != "alice" || last.Role != "admin" || last.Source != "http" || last.Command != "approve critical "+r2.ID ||
		last.Site != "critical" || last.Outcome != "ok" || !strings.HasPrefix(last.Remote, "127.0.0.1:") {
		t.Errorf("audit line = %+v", last)
	}

	// Used once: a replay is refused, also after a restart.
	for i := 0; i < 2; i++ {
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			resp := do(t, method, link)
			if resp.status != http.StatusGone || !strings.Contains(resp.body, "already used") {
				t.Errorf("replayed %s (restart %d): status %d\n%s", method, i, resp.status, resp.body)
			}
		}
		f.start()
		link = "http://" + f.srv.Addr().String() + link[strings.Index(link, "/approve/"):]
	}
	if n := len(f.audit()); n != len(evs)+2 {
		t.Errorf("audit has %d new lines, want one per refused POST", n-len(evs))
	}
}

func TestLinkRefusals(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "critical"})
	f.commit("first", map[string]string{"index.html": "v1"})
	r1 := f.deploy("critical")
	link1 := f.link(r1, "alice")

	// Nothing is live: the stat is of the commit itself.
	resp := do(t, http.MethodGet, link1)
	if resp.status != http.StatusOK || !strings.Contains(resp.body, "nothing is live yet") || !strings.Contains(resp.body, "index.html | 1 +") {
		t.Errorf("first deploy page: %d\n%s", resp.status, resp.body)
	}

	// Tampered: one character changed.
	i := strings.Index(link1, "/approve/") + len("/approve/") + 10
	b := []byte(link1)
	b[i] ^= 1
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		resp := do(t, method, string(b))
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.body, "not valid") {
			t.Errorf("tampered %s: status %d\n%s", method, resp.status, resp.body)
		}
	}
	if ev := f.audit(); len(ev) != 1 || ev[0].Outcome != "refused: invalid link" || ev[0].Source != "http" {
		t.Errorf("audit after a tampered POST: %+v", ev)
	}

	// Expired (the server's clock is past the deadline).
	f.srv.now = func() time.Time { return r1.ExpiresAt.Add(time.Second) }
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		resp := do(t, method, link1)
		if resp.status != http.StatusGone || !strings.Contains(resp.body, "expired") {
			t.Errorf("expired %s: status %d\n%s", method, resp.status, resp.body)
		}
	}
	f.srv.now = time.Now

	// Superseded by a newer push.
	f.commit("second", map[string]string{"index.html": "v2"})
	r2 := f.deploy("critical")
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		resp := do(t, method, link1)
		if resp.status != http.StatusGone || !strings.Contains(resp.body, "is superseded, not waiting for approval") {
			t.Errorf("superseded %s: status %d\n%s", method, resp.status, resp.body)
		}
	}

	// A link for a site that does not exist.
	ghost, err := f.srv.ApproveURL("ghost", r2.ID, "alice", *r2.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	if resp := do(t, http.MethodPost, ghost); resp.status != http.StatusNotFound {
		t.Errorf("unknown site: status %d\n%s", resp.status, resp.body)
	}
	// Other methods and paths.
	if resp := do(t, http.MethodPut, f.link(r2, "alice")); resp.status != http.StatusMethodNotAllowed {
		t.Errorf("PUT: status %d", resp.status)
	}
	if resp := do(t, http.MethodGet, "http://"+f.srv.Addr().String()+"/"); resp.status != http.StatusNotFound {
		t.Errorf("GET /: status %d", resp.status)
	}
	if f.pending("critical") != r2.ID || f.engine.Data().Dir == "" {
		t.Fatal("a refused link changed the pending deploy")
	}
	if st, _ := f.engine.Status("critical"); st.LiveColor != "" {
		t.Fatalf("a refused link put %s live", st.LiveColor)
	}
}

// The site's rules apply to link approvals too: with separation of
// duties the pusher's own link cannot approve (and is spent).
func TestLinkRespectsRequireOtherApprover(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "critical", RequireOtherApprover: true})
	f.commit("first", map[string]string{"index.html": "v1"})
	r := f.deploy("critical") // pushed by bob
	link := f.link(r, "bob")
	resp := do(t, http.MethodPost, link)
	if resp.status != http.StatusForbidden || !strings.Contains(resp.body, "requires another admin") {
		t.Errorf("self-approval: status %d\n%s", resp.status, resp.body)
	}
	if f.pending("critical") != r.ID {
		t.Fatal("refused approval changed the pending deploy")
	}
	if resp := do(t, http.MethodPost, link); resp.status != http.StatusGone {
		t.Errorf("second try: status %d", resp.status)
	}
	if resp := do(t, http.MethodPost, f.link(r, "alice")); resp.status != http.StatusOK {
		t.Errorf("another approver: status %d\n%s", resp.status, resp.body)
	}
}

func TestListenDefaultsToLoopback(t *testing.T) {
	d, err := deployer.NewData(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Engine: deployer.NewEngine(d, deployer.Default(), log.New(io.Discard)), Config: deployer.HTTPConfig{Listen: ":0"}}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if host := s.Addr().String(); !strings.HasPrefix(host, "127.0.0.1:") || s.BaseURL() != "http://"+host {
		t.Errorf("addr %s, base %s", host, s.BaseURL())
	}
	s2 := &Server{Engine: s.Engine, Config: deployer.HTTPConfig{Listen: "127.0.0.1:0", PublicURL: "https://deploy.example.com/x/"}}
	if err := s2.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown(context.Background())
	u, err := s2.ApproveURL("web", "20260304-050607-ab12", "alice", time.Now().Add(time.Hour))
	if err != nil || !strings.HasPrefix(u, "https://deploy.example.com/x/approve/") {
		t.Errorf("link with public_url = %s, %v", u, err)
	}
	if fi, err := os.Stat(SecretFile(d)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret: %v %v", err, fi)
	}
}

// TestLinkApprovedButNotLive: an approval whose health re-check fails is
// told apart from a refusal by the deploy's typed outcome, not guessed
// from record fields.
func TestLinkApprovedButNotLive(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "healthy")
	f := newFixture(t, deployer.Site{Name: "critical", HealthCmd: "test -f " + gate})
	cfg := deployer.Default()
	cfg.Deploy.HealthTimeout.Duration, cfg.Deploy.HealthInterval.Duration = 300*time.Millisecond, 50*time.Millisecond
	f.engine = deployer.NewEngine(f.d, cfg, log.New(io.Discard))
	f.start()
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.commit("first", map[string]string{"README": "one\n"})
	r := f.deploy("critical")
	link := f.link(r, "alice")
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	resp := do(t, http.MethodPost, link)
	if resp.status != http.StatusConflict || !strings.Contains(resp.body, "Approved, but not live") {
		t.Fatalf("approval with a failing health re-check: status %d\n%s", resp.status, resp.body)
	}
}

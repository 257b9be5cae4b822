package poll

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func gitRun(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@test", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %q: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// remote is a bare repository standing in for GitHub, with a work clone
// to commit and push from.
type remote struct {
	t          testing.TB
	Bare, Work string
}

func newRemote(t testing.TB, dir string) *remote {
	t.Helper()
	r := &remote{t: t, Bare: filepath.Join(dir, "remote.git"), Work: filepath.Join(dir, "work")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gitRun(t, dir, "init", "-q", "--bare", r.Bare)
	gitRun(t, dir, "init", "-q", "-b", "main", r.Work)
	gitRun(t, r.Work, "remote", "add", "origin", r.Bare)
	return r
}

func (r *remote) URL() string { return "file://" + r.Bare }

// Commit commits a change and pushes it to the bare repo.
func (r *remote) Commit(msg string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.Work, "index.html"), []byte(msg+"\n"), 0o644); err != nil {
		r.t.Fatal(err)
	}
	gitRun(r.t, r.Work, "add", "-A")
	gitRun(r.t, r.Work, "commit", "-q", "-m", msg)
	gitRun(r.t, r.Work, "push", "-q", "origin", "main")
	return gitRun(r.t, r.Work, "rev-parse", "HEAD")
}

type fixture struct {
	t      *testing.T
	dir    string
	data   deployer.Data
	engine *deployer.Engine
	logs   *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	d, err := deployer.NewData(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := log.NewWithOptions(logs, log.Options{Level: log.DebugLevel})
	f := &fixture{t: t, dir: dir, data: d, logs: logs, engine: deployer.NewEngine(d, deployer.Default(), logger.WithPrefix("deploy"))}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f.engine.Shutdown(ctx)
		if t.Failed() || os.Getenv("POLL_TEST_LOG") != "" {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return f
}

func (f *fixture) poller() *Poller {
	return New(f.engine, log.NewWithOptions(f.logs, log.Options{Prefix: "poll"}))
}

func (f *fixture) addSite(name, url string, mod func(*deployer.Site)) deployer.Site {
	f.t.Helper()
	s := deployer.Site{Name: name, Poll: url, PollInterval: deployer.Duration{Duration: time.Second},
		Build: "test -s index.html", HealthCmd: "test -s index.html"}
	if mod != nil {
		mod(&s)
	}
	s, err := deployer.SaveSite(f.data, s, true, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// pollOnce runs one poll of a site, as the loop would, and returns the
// wait it asks for before the next.
func pollOnce(t *testing.T, p *Poller, site string) time.Duration {
	t.Helper()
	p.reload(time.Now(), true)
	e, ok := p.sites[site]
	if !ok {
		t.Fatalf("site %s is not polled", site)
	}
	return p.poll(context.Background(), e.site, e)
}

func (f *fixture) history(site string) []deployer.Record {
	f.t.Helper()
	s, err := deployer.LoadSite(f.data, site)
	if err != nil {
		f.t.Fatal(err)
	}
	h, err := deployer.History(s)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

func (f *fixture) state(site string) state {
	f.t.Helper()
	st, err := loadState(f.data, site)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func (f *fixture) liveFile(site string) string {
	b, _ := os.ReadFile(filepath.Join(f.data.DefaultSitePath(site), "current", "index.html"))
	return string(b)
}

func TestCommitIsFetchedAndDeployedOnce(t *testing.T) {
	f := newFixture(t)
	r := newRemote(t, f.dir)
	c1 := r.Commit("v1")
	f.addSite("web", r.URL(), nil)
	p := f.poller()

	pollOnce(t, p, "web")
	h := f.history("web")
	if len(h) != 1 || h[0].State != deployer.StateLive || h[0].Commit != c1 || h[0].Trigger != "poll" || h[0].User != "poll" {
		t.Fatalf("history after first poll = %+v, want one live poll deploy of %s", h, c1)
	}
	if got := f.liveFile("web"); got != "v1\n" {
		t.Fatalf("live index.html = %q, want v1", got)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	if st := f.state("web"); st.LastSeen != c1 || st.LastDeployed != c1 || st.DeployID != h[0].ID || st.Failures != 0 {
		t.Fatalf("state = %+v", st)
	}
	if !strings.Contains(f.logs.String(), "poll: web moved to "+c1[:7]+"; fetching") {
		t.Errorf("log lacks the moved-to line:\n%s", f.logs.String())
	}

	// No change: no fetch, no deploy.
	for range 3 {
		pollOnce(t, p, "web")
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d after unchanged polls, want 1", n)
	}
	if h := f.history("web"); len(h) != 1 {
		t.Fatalf("unchanged polls deployed again: %+v", h)
	}

	c2 := r.Commit("v2")
	pollOnce(t, p, "web")
	h = f.history("web")
	if len(h) != 2 || h[1].Commit != c2 || h[1].State != deployer.StateLive || h[1].Color != "green" {
		t.Fatalf("history after second commit = %+v", h)
	}
	if got := f.liveFile("web"); got != "v2\n" {
		t.Fatalf("live index.html = %q, want v2", got)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestStateSurvivesRestartAndFailedCommitIsNotRetried(t *testing.T) {
	f := newFixture(t)
	r := newRemote(t, f.dir)
	r.Commit("v1")
	f.addSite("web", r.URL(), nil)
	pollOnce(t, f.poller(), "web")
	if h := f.history("web"); len(h) != 1 {
		t.Fatalf("history = %+v", h)
	}

	// A new poller (a restart) finds the commit deployed: no fetch, no deploy.
	p2 := f.poller()
	pollOnce(t, p2, "web")
	if n := p2.fetches.Load(); n != 0 {
		t.Fatalf("restarted poller fetched %d times for an unchanged remote", n)
	}
	if h := f.history("web"); len(h) != 1 {
		t.Fatalf("restarted poller deployed again: %+v", h)
	}

	// A commit whose build fails is attempted once, also across restarts.
	if err := os.WriteFile(filepath.Join(r.Work, "fail"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := deployer.LoadSite(f.data, "web")
	s.Build = "test ! -e fail"
	if _, err := deployer.SaveSite(f.data, s, false, ""); err != nil {
		t.Fatal(err)
	}
	c2 := r.Commit("v2 broken")
	pollOnce(t, p2, "web")
	pollOnce(t, p2, "web")
	pollOnce(t, f.poller(), "web")
	h := f.history("web")
	if len(h) != 2 || h[1].Commit != c2 || h[1].State != deployer.StateFailed {
		t.Fatalf("history = %+v, want one failed attempt of %s", h, c2)
	}
	if got := f.liveFile("web"); got != "v1\n" {
		t.Fatalf("live = %q, want v1 kept", got)
	}
	if st := f.state("web"); st.LastDeployed != c2 || st.Failures != 0 {
		t.Fatalf("state = %+v", st)
	}
	if n := strings.Count(f.logs.String(), "deploy of "+c2[:7]+" did not go live"); n != 1 {
		t.Errorf("%d 'did not go live' lines, want 1:\n%s", n, f.logs.String())
	}
}

func TestRemoteMissingBacksOffThenRecovers(t *testing.T) {
	f := newFixture(t)
	r := newRemote(t, f.dir)
	r.Commit("v1")
	f.addSite("web", r.URL(), nil)
	p := f.poller()
	if d := pollOnce(t, p, "web"); d < 900*time.Millisecond || d > 1100*time.Millisecond {
		t.Fatalf("healthy delay = %s, want 1s ±10%%", d)
	}

	if err := os.Rename(r.Bare, r.Bare+".away"); err != nil {
		t.Fatal(err)
	}
	var last time.Duration
	for i := 1; i <= 4; i++ {
		d := pollOnce(t, p, "web")
		base := backoff(time.Second, i)
		if d < base*9/10 || d > base*11/10 {
			t.Fatalf("delay after %d failures = %s, want %s ±10%%", i, d, base)
		}
		if d <= last {
			t.Fatalf("delay did not grow: %s after %s", d, last)
		}
		last = d
		if st := f.state("web"); st.Failures != i || st.LastError == "" {
			t.Fatalf("state after %d failures = %+v", i, st)
		}
	}
	logs := f.logs.String()
	if n := strings.Count(logs, "web: poll failed"); n != 1 {
		t.Fatalf("%d warnings for 4 failed polls, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "WARN") || !strings.Contains(logs, "repository not found") {
		t.Errorf("warning does not say what failed:\n%s", logs)
	}

	// Failures survive a restart; the error is logged once by the new process.
	p = f.poller()
	pollOnce(t, p, "web")
	if st := f.state("web"); st.Failures != 5 {
		t.Fatalf("failures after restart = %d, want 5", st.Failures)
	}

	if err := os.Rename(r.Bare+".away", r.Bare); err != nil {
		t.Fatal(err)
	}
	c2 := r.Commit("v2")
	if d := pollOnce(t, p, "web"); d > 1100*time.Millisecond {
		t.Fatalf("delay after recovery = %s, want the interval", d)
	}
	if st := f.state("web"); st.Failures != 0 || st.LastError != "" || st.LastDeployed != c2 {
		t.Fatalf("state after recovery = %+v", st)
	}
	if n := strings.Count(f.logs.String(), "web: poll recovered"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, f.logs.String())
	}
	if got := f.liveFile("web"); got != "v2\n" {
		t.Fatalf("live = %q after recovery, want v2", got)
	}
}

func TestMissingBranchIsReportedWithoutBackoff(t *testing.T) {
	f := newFixture(t)
	r := newRemote(t, f.dir)
	r.Commit("v1")
	f.addSite("web", r.URL(), func(s *deployer.Site) { s.Branch = "release" })
	p := f.poller()
	for range 3 {
		if d := pollOnce(t, p, "web"); d > 1100*time.Millisecond {
			t.Fatalf("missing branch backed off to %s", d)
		}
	}
	if st := f.state("web"); st.Failures != 0 || !strings.Contains(st.LastError, "release") {
		t.Fatalf("state = %+v", st)
	}
	if n := strings.Count(f.logs.String(), "web: poll failed"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, f.logs.String())
	}
}

func TestCommitLiveFromAPushIsNotRedeployed(t *testing.T) {
	f := newFixture(t)
	r := newRemote(t, f.dir)
	c1 := r.Commit("v1")
	f.addSite("web", r.URL(), nil)
	// Deployed by other means before the poller had any state.
	gitRun(t, f.dir, "--git-dir", f.data.Repo("web"), "fetch", "-q", r.Bare, "+refs/heads/main:refs/heads/main")
	if _, err := f.engine.Deploy(context.Background(), deployer.Request{Site: "web", Commit: c1, Trigger: "push", User: "alice"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	p := f.poller()
	pollOnce(t, p, "web")
	if h := f.history("web"); len(h) != 1 || p.fetches.Load() != 0 {
		t.Fatalf("poller redeployed a live commit: fetches %d, history %+v", p.fetches.Load(), h)
	}
	if st := f.state("web"); st.LastDeployed != c1 {
		t.Fatalf("state = %+v", st)
	}
}

func TestLoopDeploysPicksUpSitesAndStops(t *testing.T) {
	f := newFixture(t)
	web := newRemote(t, filepath.Join(f.dir, "web"))
	c1 := web.Commit("v1")
	f.addSite("web", web.URL(), nil)
	p := f.poller()
	p.Start()

	waitLive := func(site, want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if h := f.history(site); len(h) > 0 && h[len(h)-1].Commit == want && h[len(h)-1].State == deployer.StateLive {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: %s not live within %s; history %+v", site, want[:7], within, f.history(site))
	}
	waitLive("web", c1, 30*time.Second)
	c2 := web.Commit("v2")
	waitLive("web", c2, 30*time.Second)

	// A site added while the poller runs is picked up; one with a long
	// interval polls at once when triggered.
	api := newRemote(t, filepath.Join(f.dir, "api"))
	a1 := api.Commit("a1")
	f.addSite("api", api.URL(), func(s *deployer.Site) { s.PollInterval.Duration = time.Hour })
	time.Sleep(100 * time.Millisecond)
	p.Trigger("api")
	waitLive("api", a1, 30*time.Second)

	// A removed site is no longer polled.
	if err := deployer.RemoveSite(f.data, "api"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, f.logs, "api: no longer polled", 30*time.Second)
	api.Commit("a2")
	p.Trigger("api")
	time.Sleep(300 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %s", took)
	}
	if h, err := deployer.History(deployer.Site{Name: "api", Path: f.data.DefaultSitePath("api")}); err != nil || len(h) != 1 {
		t.Fatalf("removed site deployed again: %+v %v", h, err)
	}
	if h := f.history("web"); len(h) != 2 {
		t.Fatalf("web history = %+v, want 2 deploys", h)
	}
}

func waitLog(t *testing.T, logs *syncBuffer, want string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(logs.String(), want) {
			return
		}
	}
	t.Fatalf("log lacks %q after %s:\n%s", want, within, logs.String())
}

func TestConcurrentPollsAreBounded(t *testing.T) {
	f := newFixture(t)
	r := newRemote(t, f.dir)
	r.Commit("v1")
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		f.addSite(n, r.URL(), func(s *deployer.Site) { s.Build, s.HealthCmd = "", "" })
	}
	p := f.poller()
	p.MaxConcurrent = 2
	p.sem = make(chan struct{}, 2)
	var in, peak atomic.Int32
	p.beforeList = func(string) {
		n := in.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		in.Add(-1)
	}
	p.reload(time.Now(), true)
	var wg sync.WaitGroup
	for _, e := range p.sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.poll(context.Background(), e.site, e)
		}()
	}
	wg.Wait()
	if got := peak.Load(); got < 1 || got > 2 {
		t.Fatalf("peak concurrent polls = %d, want at most 2", got)
	}
}

func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		interval time.Duration
		failures int
		want     time.Duration
	}{
		{time.Minute, 0, time.Minute},
		{time.Minute, 1, 2 * time.Minute},
		{time.Minute, 3, 8 * time.Minute},
		{time.Minute, 4, 10 * time.Minute}, // 10 × interval
		{time.Minute, 60, 10 * time.Minute},
		{10 * time.Minute, 5, time.Hour}, // an hour
		{2 * time.Hour, 3, 2 * time.Hour},
		{time.Second, 2, 4 * time.Second},
	} {
		if got := backoff(c.interval, c.failures); got != c.want {
			t.Errorf("backoff(%s, %d) = %s, want %s", c.interval, c.failures, got, c.want)
		}
	}
}

func TestJitterAndInitialOffset(t *testing.T) {
	d := time.Minute
	var lo, hi bool
	for range 2000 {
		j := jitter(d)
		if j < d*9/10 || j > d*11/10 {
			t.Fatalf("jitter(%s) = %s, outside ±10%%", d, j)
		}
		lo, hi = lo || j < d*95/100, hi || j > d*105/100
		if o := initialOffset(d); o < 0 || o >= d {
			t.Fatalf("initial offset %s outside [0, %s)", o, d)
		}
	}
	if !lo || !hi {
		t.Fatal("jitter does not spread")
	}
}

func TestSSHURLNeedsKeyAndKnownHosts(t *testing.T) {
	f := newFixture(t)
	f.addSite("web", "ssh://git@127.0.0.1:1/web", nil)
	p := f.poller()
	pollOnce(t, p, "web")
	if st := f.state("web"); st.Failures != 1 || !strings.Contains(st.LastError, "poll_ssh_key and poll_known_hosts") {
		t.Fatalf("state = %+v", st)
	}
}

func TestSSHCommandAndTokenEnv(t *testing.T) {
	s := deployer.Site{Name: "web", Poll: "ssh://git@example.com/x", PollSSHKey: "/keys/it's key", PollKnownHosts: "/k h"}
	got := sshCommand(s)
	want := `ssh -i '/keys/it'\''s key' -o IdentitiesOnly=yes -o 'UserKnownHostsFile=/k h' -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=30 -F /dev/null`
	if got != want {
		t.Fatalf("sshCommand =\n%s\nwant\n%s", got, want)
	}

	// An https token goes to git in the environment, never on argv.
	p := &Poller{TokenFunc: func(site string) (string, error) { return "s3cret-" + site, nil }}
	hs := deployer.Site{Name: "web", Poll: "https://example.com/x.git"}
	c, err := p.creds(hs)
	if err != nil || c.token != "s3cret-web" {
		t.Fatalf("creds = %+v, %v", c, err)
	}
	env := strings.Join(fetchEnv(hs, c), "\n")
	basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:s3cret-web"))
	if !strings.Contains(env, "GIT_CONFIG_KEY_0=http.extraHeader\nGIT_CONFIG_VALUE_0=Authorization: Basic "+basic) {
		t.Fatalf("fetch env lacks the auth header:\n%s", env)
	}
	if msg := scrub(hs, c, "fatal: bad token s3cret-web"); strings.Contains(msg, "s3cret") {
		t.Fatalf("scrub left the token: %q", msg)
	}
	pw := deployer.Site{Poll: "https://bob:hunter2@example.com/x.git"}
	if msg := scrub(pw, creds{}, "fatal: unable to access 'https://bob:hunter2@example.com/x.git/': 403 hunter2"); strings.Contains(msg, "hunter2") {
		t.Fatalf("scrub left the URL password: %q", msg)
	}

	// A token that cannot be had is a poll failure, logged without detail
	// of the secret.
	p.TokenFunc = func(string) (string, error) { return "", errors.New("secrets store locked") }
	if _, err := p.creds(hs); err == nil || !strings.Contains(err.Error(), "secrets store locked") {
		t.Fatalf("creds error = %v", err)
	}
}

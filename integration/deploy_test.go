package integration

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// deployRec is one line of <site>/.deploy_history or one deploy record, as
// far as these tests read it.
type deployRec struct {
	ID         string    `json:"id"`
	Commit     string    `json:"commit"`
	Color      string    `json:"color"`
	State      string    `json:"state"`
	Phase      string    `json:"phase"`
	User       string    `json:"user"`
	Trigger    string    `json:"trigger"`
	Error      string    `json:"error"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// siteHistory reads a site's .deploy_history, oldest first.
func (e *Env) siteHistory(site string) []deployRec {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.SitePath(site), ".deploy_history"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []deployRec
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r deployRec
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			e.t.Fatalf("history line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// deployRecords reads the deploy records of a site (<data>/deploys/SITE/*.json).
// A record being replaced at that moment is simply read next time.
func (e *Env) deployRecords(site string) []deployRec {
	paths, _ := filepath.Glob(filepath.Join(e.Data, "deploys", site, "*.json"))
	var out []deployRec
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r deployRec
		if json.Unmarshal(b, &r) == nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// lastDeploy is the newest history entry; the test fails if there is none.
func (e *Env) lastDeploy(site string) deployRec {
	e.t.Helper()
	h := e.siteHistory(site)
	if len(h) == 0 {
		e.t.Fatalf("%s has no history", site)
	}
	return h[len(h)-1]
}

// shortHealthConfig is a config whose health checks give up after 2 s.
const shortHealthConfig = "[deploy]\nhealth_timeout = \"2s\"\nhealth_interval = \"100ms\"\n"

// fileTree maps every file under dir (relative path) to its mode and bytes;
// symlinks map to their target.
func fileTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		case d.IsDir():
			out[rel] = "dir " + info.Mode().String()
		case !info.Mode().IsRegular():
			out[rel] = info.Mode().String() // a socket, say
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = info.Mode().String() + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %s changed: %q -> %q", what, k, v, after[k])
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s: %s appeared: %q", what, k, v)
		}
	}
}

// pollUntil polls cond every 20 ms until it holds or timeout passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// helloLiveOnBlue sets up site hello with the page build of push_test.go, pushes
// one commit and checks that it went live on blue. It returns the admin
// key, the work tree and the commit.
func helloLiveOnBlue(t *testing.T, e *Env, siteArgs ...string) (string, *Repo, string) {
	t.Helper()
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon(append([]string{"site", "add", "hello"}, siteArgs...)...)
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript, "README": "v1"})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(admin, "hello"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c1[:7]+" on blue") {
		t.Fatalf("first push did not go live: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c1+" color blue\n" {
		t.Fatalf("live page after first push = %q", got)
	}
	return admin, repo, c1
}

// assertStillBlue checks that current still points at blue holding c1,
// byte for byte as before.
func assertStillBlue(t *testing.T, e *Env, c1 string, blue map[string]string) {
	t.Helper()
	if got := e.Live("hello"); got != "blue" {
		t.Errorf("current -> %q, want blue", got)
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c1+" color blue\n" {
		t.Errorf("live page = %q, want commit %s on blue", got, c1)
	}
	sameTree(t, "blue", blue, fileTree(t, filepath.Join(e.SitePath("hello"), "blue")))
}

func TestFailingBuildKeepsLiveColour(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin, repo, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	blue := fileTree(t, filepath.Join(e.SitePath("hello"), "blue"))

	c2 := repo.Commit("broken build", map[string]string{"build.sh": "#!/bin/sh\necho about to fail\nexit 3\n"})
	r := repo.Push(admin, "hello")
	// The commit is stored whatever the deploy does; only the deploy fails.
	for _, want := range []string{
		"remote:     about to fail",
		"remote: ==> FAILED (failed): build: exited with status 3; hello stays on blue (" + c1[:7] + ")",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("push output lacks %q:\n%s", want, r.Stderr)
		}
	}
	if strings.Contains(r.Stderr, "live: hello") {
		t.Errorf("push output claims the deploy went live:\n%s", r.Stderr)
	}
	assertStillBlue(t, e, c1, blue)

	last := e.lastDeploy("hello")
	if last.State != "failed" || last.Commit != c2 || last.Error != "build: exited with status 3" || last.Color != "green" {
		t.Errorf("history records %+v, want failed build of %s in green", last, c2)
	}
	hist := e.MustEeveon("history", "hello")
	if !strings.Contains(hist.Stdout, "build: exited with status 3") {
		t.Errorf("eeveon history does not show the error:\n%s", hist.Stdout)
	}
	st := e.MustEeveon("status", "hello")
	if !strings.Contains(st.Stdout, "live:     blue "+c1[:7]) {
		t.Errorf("status does not show blue %s live:\n%s", c1[:7], st.Stdout)
	}
}

func TestFailingHealthCommandKeepsLiveColour(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.restartWithConfig(shortHealthConfig)
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh", "--health-cmd", "test -f healthy || { echo not healthy yet; false; }")
	admin := e.AddKey("alice", "admin", "")
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript, "healthy": "yes"})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(admin, "hello"); !strings.Contains(r.Stderr, "live: hello "+c1[:7]+" on blue") {
		t.Fatalf("first push did not go live: exit %d\n%s", r.Code, r.Out())
	}
	blue := fileTree(t, filepath.Join(e.SitePath("hello"), "blue"))

	repo.Git("rm", "-q", "healthy")
	c2 := repo.Commit("unhealthy", nil)
	start := time.Now()
	r := repo.Push(admin, "hello")
	took := time.Since(start)
	for _, want := range []string{
		"health check of green",
		"remote:     not healthy yet",
		"remote: ==> FAILED (failed): health check: exited with status 1 (gave up after 2s); hello stays on blue (" + c1[:7] + ")",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("push output lacks %q:\n%s", want, r.Stderr)
		}
	}
	if took > 10*time.Second {
		t.Errorf("the failing health check took %s; health_timeout 2s was not applied", took)
	}
	assertStillBlue(t, e, c1, blue)
	last := e.lastDeploy("hello")
	if last.State != "failed" || last.Commit != c2 || !strings.HasPrefix(last.Error, "health check: ") {
		t.Errorf("history records %+v, want a failed health check of %s", last, c2)
	}
}

func TestHealthURLChecksTheNewColour(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	healthy := "blue"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.URL.Path)
		if r.URL.Path == "/"+healthy+"/ok" {
			fmt.Fprintln(w, "ok")
			return
		}
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer srv.Close()
	// takeSeen returns and clears the paths requested so far; setHealthy
	// sets the one colour that answers 200.
	takeSeen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		s := seen
		seen = nil
		return s
	}
	setHealthy := func(c string) {
		mu.Lock()
		defer mu.Unlock()
		healthy = c
	}

	e := NewEnv(t)
	e.restartWithConfig(shortHealthConfig)
	url := srv.URL + "/{color}/ok"
	admin, repo, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh", "--health-url", url)
	if got := takeSeen(); len(got) != 1 || got[0] != "/blue/ok" {
		t.Errorf("first deploy asked %q, want exactly /blue/ok", got)
	}
	blue := fileTree(t, filepath.Join(e.SitePath("hello"), "blue"))

	// Only blue answers 200: green's check gets a 500 and the deploy fails.
	c2 := repo.Commit("second", map[string]string{"README": "v2"})
	r := repo.Push(admin, "hello")
	want := "FAILED (failed): health check: GET " + srv.URL + "/green/ok: 500 Internal Server Error (gave up after 2s); hello stays on blue (" + c1[:7] + ")"
	if !strings.Contains(r.Stderr, want) {
		t.Errorf("push output lacks %q:\n%s", want, r.Stderr)
	}
	got := takeSeen()
	if len(got) < 2 {
		t.Errorf("a failing URL check was tried %d times, want retries: %q", len(got), got)
	}
	for _, p := range got {
		if p != "/green/ok" {
			t.Errorf("the check of green asked %q", p)
		}
	}
	assertStillBlue(t, e, c1, blue)
	if last := e.lastDeploy("hello"); last.State != "failed" || last.Commit != c2 {
		t.Errorf("history records %+v, want failed %s", last, c2)
	}

	// Once green answers, the next push goes live there.
	setHealthy("green")
	c3 := repo.Commit("third", map[string]string{"README": "v3"})
	r = repo.Push(admin, "hello")
	if !strings.Contains(r.Stderr, "live: hello "+c3[:7]+" on green") {
		t.Fatalf("third push did not go live on green: exit %d\n%s", r.Code, r.Out())
	}
	if got := takeSeen(); len(got) != 1 || got[0] != "/green/ok" {
		t.Errorf("third deploy asked %q, want exactly /green/ok", got)
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c3+" color green\n" {
		t.Errorf("live page = %q", got)
	}
}

// entryNames lists the names in dir (nil if it does not exist).
func entryNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestPushToUnknownSiteRefused(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "hello")
	repos := entryNames(filepath.Join(e.Data, "repos"))
	repo := e.NewRepo("nope", map[string]string{"index.html": "hi"})

	r := repo.Push(admin, "nope")
	if r.Code == 0 {
		t.Errorf("push to an unknown site exited 0:\n%s", r.Out())
	}
	if !strings.Contains(r.Stderr, "eeveon: no such site: nope") {
		t.Errorf("push output lacks the refusal:\n%s", r.Stderr)
	}
	if got := entryNames(filepath.Join(e.Data, "repos")); strings.Join(got, ",") != strings.Join(repos, ",") {
		t.Errorf("repos changed from %q to %q", repos, got)
	}
	for _, p := range []string{filepath.Join(e.Data, "deploys", "nope"), e.SitePath("nope")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused push (%v)", p, err)
		}
	}
	// A deployer limited to another site sees the same answer.
	dep := e.AddKey("bob", "deployer", "other")
	r = repo.Push(dep, "hello")
	if r.Code == 0 || !strings.Contains(r.Stderr, "eeveon: no such site: hello") {
		t.Errorf("push by a deployer of another site: exit %d\n%s", r.Code, r.Stderr)
	}
	if out := run(t, e.Dir, nil, "", "git", "--git-dir", filepath.Join(e.Data, "repos", "hello.git"), "for-each-ref"); out.Stdout != "" {
		t.Errorf("hello's repo got refs from a refused push: %s", out.Stdout)
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh")
	stranger := e.NewKey("mallory")

	r := e.SSH(stranger, "status")
	if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied (publickey)") {
		t.Errorf("ssh with an unknown key: exit %d\n%s", r.Code, r.Out())
	}
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript})
	r = repo.Push(stranger, "hello")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied (publickey)") {
		t.Errorf("push with an unknown key: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.Live("hello"); got != "" {
		t.Errorf("current -> %q after a refused push", got)
	}
	if out := run(t, e.Dir, nil, "", "git", "--git-dir", filepath.Join(e.Data, "repos", "hello.git"), "for-each-ref"); out.Stdout != "" {
		t.Errorf("the repo got refs from an unknown key: %s", out.Stdout)
	}
	if recs := e.deployRecords("hello"); len(recs) != 0 {
		t.Errorf("deploy records after a refused push: %+v", recs)
	}
}

// testDirTree maps every path under the test dir (data dir, work trees,
// keys) to its content, except the logs that a
// refused request is expected to append to.
func testDirTree(t *testing.T, e *Env) map[string]string {
	t.Helper()
	s := fileTree(t, e.Dir)
	for k := range s {
		if strings.HasSuffix(k, "audit.log") || strings.HasPrefix(k, "known_hosts") {
			delete(s, k)
		}
	}
	return s
}

func TestRepoPathTraversalRefused(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin, repo, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh")
	before := testDirTree(t, e)

	outside := filepath.Join(e.Dir, "x.git")
	_, err := os.Lstat("/tmp/x.git")
	tmpExisted := err == nil
	for _, path := range []string{
		"../../etc", "/hello/../x", "hello/../../x.git", "../hello.git", "/../hello", "./hello",
		outside, "/tmp/x.git", "%2e%2e", "%2e%2e/%2e%2e/x.git", "hello/", "/hello.git/", "hello.git.git",
		"repos/hello.git", "HELLO", ".", "", "hello\\..",
	} {
		for _, verb := range []string{"git-receive-pack", "git-upload-pack"} {
			cmd := verb + " '" + path + "'"
			r := e.SSH(admin, cmd)
			if r.Code == 0 || !strings.Contains(r.Stderr, "no such site") {
				t.Errorf("%s: exit %d, want a refusal naming no such site:\n%s", cmd, r.Code, r.Out())
			}
			if strings.Contains(r.Stdout, c1) {
				t.Errorf("%s: advertised refs:\n%s", cmd, r.Stdout)
			}
		}
	}
	// The same through git's own URL handling.
	for _, path := range []string{"../../etc", "hello/../../x.git", "%2e%2e/x.git", "hello/.."} {
		r := repo.Push(admin, path)
		if r.Code == 0 || !strings.Contains(r.Stderr, "no such site") {
			t.Errorf("git push to %q: exit %d\n%s", path, r.Code, r.Out())
		}
	}
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Errorf("%s was created (%v)", outside, err)
	}
	if _, err := os.Lstat("/tmp/x.git"); err == nil && !tmpExisted {
		t.Errorf("/tmp/x.git was created")
	}
	sameTree(t, "test dir", before, testDirTree(t, e))
}

func TestRepoPathForms(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin, repo, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh")
	advert := c1 + " refs/heads/main"
	for _, cmd := range []string{
		"git-receive-pack 'hello'", "git-receive-pack '/hello'", "git-receive-pack 'hello.git'",
		"git-receive-pack '/hello.git'", "git receive-pack '/hello.git'", "git-receive-pack hello",
		"git-upload-pack '/hello.git'", "git upload-pack 'hello'",
	} {
		// stdin is empty: git advertises its refs, then sees the client
		// hang up without asking for anything.
		r := e.SSH(admin, cmd)
		if !strings.Contains(r.Stdout, advert) {
			t.Errorf("%s did not start the git protocol (exit %d):\nstdout %q\nstderr %s", cmd, r.Code, r.Stdout, r.Stderr)
		}
	}
	// git's own URL forms: ssh://HOST/hello.git and a fetch back.
	c2 := repo.Commit("second", map[string]string{"README": "v2"})
	if r := repo.Push(admin, "hello.git"); !strings.Contains(r.Stderr, "live: hello "+c2[:7]+" on green") {
		t.Errorf("push to hello.git: exit %d\n%s", r.Code, r.Out())
	}
	ls := run(t, e.Dir, []string{e.GitSSH(admin)}, "", "git", "ls-remote", e.URL("hello"), "refs/heads/main")
	if ls.Code != 0 || strings.TrimSpace(ls.Stdout) != c2+"\trefs/heads/main" {
		t.Errorf("ls-remote hello: exit %d\n%s", ls.Code, ls.Out())
	}
}

func TestConcurrentPushesSerialiseAndLastWins(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	builds := filepath.Join(e.Dir, "builds.log")
	// The first build also waits for the test to create release, so that
	// the other pushes surely arrive while it holds the site.
	release := filepath.Join(e.Dir, "release")
	build := fmt.Sprintf(`echo "start $EEVEON_COMMIT $(date +%%s%%N)" >> '%[1]s'; i=0; while [ ! -e '%[2]s' ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; sleep 1; mkdir -p public; echo "commit $EEVEON_COMMIT" > public/index.html; echo "end $EEVEON_COMMIT $(date +%%s%%N)" >> '%[1]s'`, builds, release)
	e.MustEeveon("site", "add", "hello", "--build", build)
	// Three unrelated histories: each push must be forced over the last.
	a := e.NewRepo("a", map[string]string{"who": "a"})
	b := e.NewRepo("b", map[string]string{"who": "b"})
	c := e.NewRepo("c", map[string]string{"who": "c"})
	ca, cb, cc := a.Git("rev-parse", "HEAD"), b.Git("rev-parse", "HEAD"), c.Git("rev-parse", "HEAD")

	// Sample the deploy records: never two past the queue at once.
	stop := make(chan struct{})
	sampled := make(chan []string)
	go func() {
		var bad []string
		for {
			select {
			case <-stop:
				sampled <- bad
				return
			case <-time.After(10 * time.Millisecond):
			}
			var active []string
			for _, r := range e.deployRecords("hello") {
				if r.State == "running" && r.Phase != "queued" {
					active = append(active, r.ID+" "+r.Phase)
				}
			}
			if len(active) > 1 {
				bad = append(bad, strings.Join(active, ", "))
			}
		}
	}()

	results := make([]Result, 3)
	var wg sync.WaitGroup
	push := func(i int, r *Repo) {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = r.Push(admin, "hello", "--force", "main") }()
	}
	// A builds; B arrives and waits for the lock; C arrives after B, so B
	// is superseded whichever of B and C gets the lock first.
	push(0, a)
	pollUntil(t, 20*time.Second, "A's build to start", func() bool {
		b, _ := os.ReadFile(builds)
		return strings.Contains(string(b), "start "+ca)
	})
	push(1, b)
	pollUntil(t, 20*time.Second, "B's deploy to be queued", func() bool { return len(e.deployRecords("hello")) == 2 })
	push(2, c)
	pollUntil(t, 20*time.Second, "C's deploy to be queued", func() bool { return len(e.deployRecords("hello")) == 3 })
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(stop)
	if bad := <-sampled; len(bad) > 0 {
		t.Errorf("deploys ran at the same time: %q", bad)
	}

	for i, r := range results {
		if r.Code != 0 {
			t.Errorf("push %d: exit %d\n%s", i, r.Code, r.Out())
		}
	}
	if !strings.Contains(results[0].Stderr, "live: hello "+ca[:7]+" on blue") {
		t.Errorf("A did not go live:\n%s", results[0].Stderr)
	}
	if !strings.Contains(results[1].Stderr, "superseded: deploy ") || !strings.Contains(results[1].Stderr, " ("+cc[:7]+") arrived after this one and deploys in its place") {
		t.Errorf("B was not superseded by C:\n%s", results[1].Stderr)
	}
	if !strings.Contains(results[2].Stderr, "live: hello "+cc[:7]+" on green") {
		t.Errorf("C did not go live on green:\n%s", results[2].Stderr)
	}

	tip := strings.TrimSpace(run(t, e.Dir, nil, "", "git", "--git-dir", filepath.Join(e.Data, "repos", "hello.git"), "rev-parse", "main").Stdout)
	if tip != cc {
		t.Fatalf("branch tip %s, want C's %s", tip, cc)
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+tip+"\n" {
		t.Errorf("live page %q, want the branch tip %s", got, tip)
	}
	checkBuildsSerial(t, builds, []string{ca, cc})

	states := map[string]string{}
	for _, h := range e.siteHistory("hello") {
		states[h.Commit] = h.State
	}
	if want := map[string]string{ca: "live", cb: "superseded", cc: "live"}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("history states %v, want %v", states, want)
	}
}

// checkBuildsSerial checks the build log: each start is followed by its
// own end before any other start, and the commits built are want, in order.
func checkBuildsSerial(t *testing.T, path string, want []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var built []string
	open := ""
	var last int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var what, commit string
		var ns int64
		if _, err := fmt.Sscan(line, &what, &commit, &ns); err != nil {
			t.Fatalf("build log line %q: %v", line, err)
		}
		if ns < last {
			t.Errorf("build log goes back in time at %q", line)
		}
		last = ns
		switch {
		case what == "start" && open == "":
			open = commit
			built = append(built, commit)
		case what == "end" && open == commit:
			open = ""
		default:
			t.Errorf("builds overlap at %q (building %q):\n%s", line, open, b)
		}
	}
	if open != "" {
		t.Errorf("build of %s never ended:\n%s", open, b)
	}
	if strings.Join(built, " ") != strings.Join(want, " ") {
		t.Errorf("built %q, want %q", built, want)
	}
}

func TestSimultaneousPushesLastWins(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	builds := filepath.Join(e.Dir, "builds.log")
	build := fmt.Sprintf(`echo "start $EEVEON_COMMIT $(date +%%s%%N)" >> '%[1]s'; sleep 1; mkdir -p public; echo "commit $EEVEON_COMMIT" > public/index.html; echo "end $EEVEON_COMMIT $(date +%%s%%N)" >> '%[1]s'`, builds)
	e.MustEeveon("site", "add", "hello", "--build", build)
	repos := []*Repo{e.NewRepo("a", map[string]string{"who": "a"}), e.NewRepo("b", map[string]string{"who": "b"})}

	results := make([]Result, len(repos))
	var wg sync.WaitGroup
	for i, r := range repos {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = r.Push(admin, "hello", "--force", "main") }()
	}
	wg.Wait()
	ok := 0
	for i, r := range results {
		switch {
		case r.Code == 0:
			ok++
		case strings.Contains(r.Stderr, "since this push began; fetch and push again"):
			// The other push moved the branch first: refused, as git
			// refuses a ref update that raced another; fine.
		default:
			t.Errorf("push %d: exit %d\n%s", i, r.Code, r.Out())
		}
	}
	if ok == 0 {
		t.Fatal("no push succeeded")
	}
	t.Logf("%d of %d pushes stored; deploys: %d", ok, len(results), len(e.siteHistory("hello")))
	tip := strings.TrimSpace(run(t, e.Dir, nil, "", "git", "--git-dir", filepath.Join(e.Data, "repos", "hello.git"), "rev-parse", "main").Stdout)
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+tip+"\n" {
		t.Errorf("live page %q, want the branch tip %s", got, tip)
	}
	b, _ := os.ReadFile(builds)
	var built []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "start" {
			built = append(built, f[1])
		}
	}
	if len(built) == 0 || built[len(built)-1] != tip {
		t.Errorf("last build %q, want the tip %s", built, tip)
	}
	checkBuildsSerial(t, builds, built)
	for _, h := range e.siteHistory("hello") {
		if h.State != "live" && h.State != "superseded" {
			t.Errorf("deploy %s of %s ended %s: %s", h.ID, h.Commit, h.State, h.Error)
		}
		if h.State == "superseded" && h.Commit == tip {
			t.Errorf("the tip's deploy was superseded")
		}
	}
}

func TestLocalDeployRefAndStrategy(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin, repo, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh")
	c2 := repo.Commit("second", map[string]string{"README": "v2"})
	if r := repo.Push(admin, "hello"); !strings.Contains(r.Stderr, "live: hello "+c2[:7]+" on green") {
		t.Fatalf("second push: exit %d\n%s", r.Code, r.Out())
	}
	site := e.SitePath("hello")
	page := func() string { return e.ReadSite("hello", "public/index.html") }

	// The local CLI runs as root here: an admin.
	r := e.MustEeveon("deploy", "hello")
	if !strings.Contains(r.Stdout, "live: hello "+c2[:7]+" on blue") || e.Live("hello") != "blue" || page() != "commit "+c2+" color blue\n" {
		t.Fatalf("deploy of the tip: current -> %q, page %q\n%s", e.Live("hello"), page(), r.Out())
	}
	if last := e.lastDeploy("hello"); last.Trigger != "cli" || last.User != "root" || last.State != "live" {
		t.Errorf("history records %+v, want a live cli deploy by root", last)
	}

	r = e.MustEeveon("deploy", "hello", "--ref", c1)
	if !strings.Contains(r.Stdout, "live: hello "+c1[:7]+" on green") || e.Live("hello") != "green" || page() != "commit "+c1+" color green\n" {
		t.Fatalf("deploy --ref %s: current -> %q, page %q\n%s", c1[:7], e.Live("hello"), page(), r.Out())
	}

	// An unknown ref changes nothing.
	r = e.Eeveon("deploy", "hello", "--ref", "no-such-branch")
	if r.Code == 0 || !strings.Contains(r.Stderr, "unknown revision") || e.Live("hello") != "green" {
		t.Errorf("deploy of an unknown ref: exit %d, current -> %q\n%s", r.Code, e.Live("hello"), r.Out())
	}

	// The branch on the server is the live commit: deploy SITE now
	// redeploys c1.
	if got := strings.TrimSpace(run(t, e.Dir, nil, "", "git", "--git-dir", filepath.Join(e.Data, "repos", "hello.git"), "rev-parse", "main").Stdout); got != c1 {
		t.Errorf("branch on the server %s after deploy --ref, want the live %s", got, c1)
	}
	r = e.MustEeveon("deploy", "hello", "--strategy", "in-place")
	fi, err := os.Lstat(filepath.Join(site, "current"))
	if err != nil || !fi.IsDir() {
		t.Fatalf("after an in-place deploy current is %v (%v), want a real directory\n%s", fi, err, r.Out())
	}
	if got := page(); got != "commit "+c1+" color in-place\n" {
		t.Errorf("in-place page %q", got)
	}
	if _, err := os.Stat(filepath.Join(site, "current", ".git")); !os.IsNotExist(err) {
		t.Errorf("in-place current has a .git: %v", err)
	}

	// Back to blue-green: current is a symlink again.
	r = e.MustEeveon("deploy", "hello")
	if got := e.Live("hello"); got != "blue" {
		t.Fatalf("after going back to blue-green current -> %q, want blue\n%s", got, r.Out())
	}
	if got := page(); got != "commit "+c1+" color blue\n" {
		t.Errorf("page after going back to blue-green %q", got)
	}
	for _, n := range entryNames(site) {
		if strings.HasPrefix(n, ".eeveon-tmp-") || strings.HasPrefix(n, ".current.tmp-") {
			t.Errorf("leftover %s in the site dir", n)
		}
	}
	st := e.MustEeveon("status", "hello")
	if !strings.Contains(st.Stdout, "live:     blue "+c1[:7]) {
		t.Errorf("status:\n%s", st.Stdout)
	}
}

func TestPushOfOtherBranchIsStoredNotDeployed(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin, repo, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh")
	blue := fileTree(t, filepath.Join(e.SitePath("hello"), "blue"))
	recs := len(e.deployRecords("hello"))

	c2 := repo.Commit("feature work", map[string]string{"README": "feature"})
	r := repo.Push(admin, "hello", "main:feature")
	if r.Code != 0 || !strings.Contains(r.Stderr, "remote: ==> feature is not deployed; only main deploys hello") {
		t.Errorf("push of feature: exit %d\n%s", r.Code, r.Out())
	}
	if strings.Contains(r.Stderr, "building") || strings.Contains(r.Stderr, "live:") {
		t.Errorf("push of feature deployed:\n%s", r.Stderr)
	}
	assertStillBlue(t, e, c1, blue)
	got := strings.TrimSpace(run(t, e.Dir, nil, "", "git", "--git-dir", filepath.Join(e.Data, "repos", "hello.git"), "rev-parse", "feature", "main").Stdout)
	if got != c2+"\n"+c1 {
		t.Errorf("bare repo feature/main = %q, want %s/%s", got, c2, c1)
	}
	if n := len(e.deployRecords("hello")); n != recs {
		t.Errorf("%d deploy records after the feature push, want %d", n, recs)
	}
}

// oneLineError checks that a failed command printed exactly one line on stderr
// containing want, and nothing on stdout.
func oneLineError(t *testing.T, what string, r Result, want string) {
	t.Helper()
	if r.Code == 0 {
		t.Errorf("%s: exit 0, want an error", what)
	}
	if lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n"); len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("%s: stderr %q, want one line containing %q", what, r.Stderr, want)
	}
	if r.Stdout != "" {
		t.Errorf("%s: stdout %q", what, r.Stdout)
	}
}

// dsaPublicKey is an ssh-dss public key (DSA keys are refused).
const dsaPublicKey = "ssh-dss AAAAB3NzaC1kc3MAAACBALJ9y5ivdKuEBiysnnA2uAEJySVzgEXysbBXvNwCQuoLvChjuhKdV/sOLinNHPL8P4J1LMPVgphwaX8ELt4sqTkSHpqDF4LMnRQEzJqbSMtGpQccY/rKWxLRrIcGDIBY+uV0IEmBVp61Ja8urTDYHOtCnhKW1QkV4qnNLrwfYmthAAAAFQDJD4VVSpAUr1KV6D53XYrLU7iUZQAAAIEAsEhxQCwwFr8dh+qUhRBnqmQSnuhjor2dXALp9kpLGYffY5np9k/AJ/80CcwIdZ1Aa5n+mIfEQBJX9qbb114tmjlpUmCGOIx2BZz9v1cvP6CQ7SKHMIgeJjsKJKPQe7XlotxIn19qkh0CCX5MUWb21nLbj3KMCjRa3oxouG18ZxAAAACAF4lf2I6i0uF2x86UyNnkIKLYy/Zecz5QcoKBTNfybQGMmJFv7oaDTTsrJTaQCENvrKaLhy8x+mwaj3isr2EPQEkVdNkdENcRnkRMfdAgKXJC4IDbkel/N3keDy/HTs7Hl9b5i1xnsMSSJWuefOtAIaUHoMWpYgnPFtSiQ+5e/Y8= old@dsa\n"

func TestCLIErrors(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	sites := func() []string { return entryNames(filepath.Join(e.Data, "sites.d")) }

	oneLineError(t, "site add Bad_Name", e.Eeveon("site", "add", "Bad_Name"), `site name "Bad_Name" must match [a-z0-9][a-z0-9-]{0,62}`)
	oneLineError(t, "site add x --strategy nope", e.Eeveon("site", "add", "x", "--strategy", "nope"), `unknown strategy "nope" (use blue-green or in-place)`)
	oneLineError(t, "site add with a bad health URL", e.Eeveon("site", "add", "y", "--health-url", "ftp://x/{color}"), "must be an http:// or https:// URL")
	if got := sites(); len(got) != 0 {
		t.Errorf("refused site adds left %q", got)
	}

	keysBefore, err := os.ReadFile(filepath.Join(e.Data, "authorized_keys"))
	if err != nil {
		t.Fatal(err)
	}
	dsa := filepath.Join(e.Dir, "dsa.pub")
	garbage := filepath.Join(e.Dir, "garbage.pub")
	if err := os.WriteFile(dsa, []byte(dsaPublicKey), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(garbage, []byte("ssh-ed25519 not-base64!! x@y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oneLineError(t, "keys add DSA", e.Eeveon("keys", "add", "--user", "old", "--role", "admin", dsa), "ssh-dss (DSA) keys are refused")
	oneLineError(t, "keys add garbage", e.Eeveon("keys", "add", "--user", "bob", "--role", "admin", garbage), "not an OpenSSH public key")
	oneLineError(t, "keys add bad role", e.Eeveon("keys", "add", "--user", "bob", "--role", "root", dsa), "role")
	if after, _ := os.ReadFile(filepath.Join(e.Data, "authorized_keys")); string(after) != string(keysBefore) {
		t.Errorf("refused keys changed authorized_keys:\n%s", after)
	}

	// Flags go before, between or after the positional arguments.
	e.MustEeveon("site", "add", "hello2", "--build", "./build.sh")
	e.MustEeveon("site", "add", "--data", e.Data, "--branch", "prod", "hello3")
	r := e.MustEeveon("site", "show", "hello3")
	if !strings.Contains(r.Stdout, "branch:     prod") {
		t.Errorf("site show hello3:\n%s", r.Stdout)
	}
	r = e.MustEeveon("site", "show", "hello2")
	if !strings.Contains(r.Stdout, "build:      ./build.sh") {
		t.Errorf("site show hello2:\n%s", r.Stdout)
	}
	if got := strings.Join(sites(), ","); got != "hello2.toml,hello3.toml" {
		t.Errorf("sites.d holds %s", got)
	}
	oneLineError(t, "site add of a taken name", e.Eeveon("site", "add", "hello2"), "site already exists: hello2")
}

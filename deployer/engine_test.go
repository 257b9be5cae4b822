package deployer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer/names"
)

// testEngine makes an engine on a fresh data dir with short timeouts.
func testEngine(t *testing.T, tweak ...func(*Config)) *Engine {
	t.Helper()
	cfg := Default()
	cfg.Deploy.BuildTimeout = Duration{20 * time.Second}
	cfg.Deploy.HealthTimeout = Duration{400 * time.Millisecond}
	cfg.Deploy.HealthInterval = Duration{50 * time.Millisecond}
	cfg.Deploy.HealthTry = Duration{300 * time.Millisecond}
	for _, f := range tweak {
		f(&cfg)
	}
	e := NewEngine(newData(t), cfg, log.New(io.Discard))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Shutdown(ctx)
	})
	return e
}

// addSite saves a site (without a hook) and returns it validated.
func addSite(t *testing.T, e *Engine, s Site) Site {
	t.Helper()
	s, err := SaveSite(e.Data(), s, true, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// updateSite rewrites a site definition.
func updateSite(t *testing.T, e *Engine, s Site) Site {
	t.Helper()
	s, err := SaveSite(e.Data(), s, false, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// worktree is a developer's clone that pushes into a site's bare repo.
type worktree struct {
	t   *testing.T
	dir string
}

func newWorktree(t *testing.T, e *Engine, site string) *worktree {
	t.Helper()
	w := &worktree{t: t, dir: t.TempDir()}
	gitOut(t, w.dir, "init", "-q", "-b", "main")
	gitOut(t, w.dir, "remote", "add", "origin", e.Data().Repo(site))
	return w
}

// commit writes files, removes others, commits everything and, unless
// noPush, pushes to main. It returns the commit id.
func (w *worktree) commit(files map[string]string, remove ...string) string {
	w.t.Helper()
	c := w.commitOnly(files, remove...)
	gitOut(w.t, w.dir, "push", "-q", "origin", "HEAD:refs/heads/main")
	return c
}

func (w *worktree) commitOnly(files map[string]string, remove ...string) string {
	w.t.Helper()
	for name, body := range files {
		writeFile(w.t, filepath.Join(w.dir, name), body)
	}
	for _, name := range remove {
		if err := os.Remove(filepath.Join(w.dir, name)); err != nil {
			w.t.Fatal(err)
		}
	}
	gitOut(w.t, w.dir, "add", "-A")
	gitOut(w.t, w.dir, "commit", "-q", "--allow-empty", "-m", "change")
	return gitOut(w.t, w.dir, "rev-parse", "HEAD")
}

func deploy(t *testing.T, e *Engine, req Request) (Record, string, error) {
	t.Helper()
	if req.Site == "" {
		req.Site = "hello"
	}
	if req.Trigger == "" {
		req.Trigger = "cli"
	}
	if req.User == "" {
		req.User = "alice"
	}
	var out bytes.Buffer
	r, err := e.Deploy(context.Background(), req, &out)
	return r, out.String(), err
}

func mustDeploy(t *testing.T, e *Engine, req Request) Record {
	t.Helper()
	r, out, err := deploy(t, e, req)
	if err != nil || r.State != StateLive {
		t.Fatalf("deploy: %v (state %q)\n%s", err, r.State, out)
	}
	return r
}

func readlink(t *testing.T, path string) string {
	t.Helper()
	target, err := os.Readlink(path)
	if err != nil {
		t.Fatalf("readlink: %v", err)
	}
	return target
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshot is every file under dir with its mode and content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := de.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		snap[rel] = v
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return snap
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("%s changed:\nbefore %v\nafter  %v", what, before, after)
	}
}

// historyLines returns the raw lines of the site's .deploy_history.
func historyLines(t *testing.T, s Site) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Path, historyFile))
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("history line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// checkHistoryLine checks that a history line has every required field
// with the values of want.
func checkHistoryLine(t *testing.T, line map[string]any, want Record) {
	t.Helper()
	for _, k := range []string{"id", "site", "commit", "ref", "color", "strategy", "state", "user", "trigger", "started_at", "finished_at", "error"} {
		if _, ok := line[k]; !ok {
			t.Errorf("history line lacks %q: %v", k, line)
		}
	}
	if _, ok := line["phase"]; ok {
		t.Errorf("history line keeps the phase: %v", line)
	}
	str := func(k string) string { s, _ := line[k].(string); return s }
	checks := [][2]string{
		{"id", want.ID}, {"site", want.Site}, {"commit", want.Commit}, {"ref", want.Ref}, {"color", want.Color},
		{"strategy", string(want.Strategy)}, {"state", string(want.State)}, {"user", want.User}, {"trigger", want.Trigger},
	}
	for _, c := range checks {
		if str(c[0]) != c[1] {
			t.Errorf("history %s = %q, want %q", c[0], str(c[0]), c[1])
		}
	}
	if want.Error == "" && str("error") != "" {
		t.Errorf("history error = %q, want empty", str("error"))
	}
	if want.Error != "" && !strings.Contains(str("error"), want.Error) {
		t.Errorf("history error = %q, want it to mention %q", str("error"), want.Error)
	}
	start, err1 := time.Parse(time.RFC3339Nano, str("started_at"))
	end, err2 := time.Parse(time.RFC3339Nano, str("finished_at"))
	if err1 != nil || err2 != nil || start.IsZero() || end.Before(start) || time.Since(start) > time.Minute {
		t.Errorf("history times %q .. %q (%v, %v)", str("started_at"), str("finished_at"), err1, err2)
	}
}

func TestDeployBlueGreen(t *testing.T) {
	t.Setenv("EEVEON_TEST_SECRET", "s3cret")
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello", Build: `printf '%s %s %s %s' "$EEVEON_SITE" "$EEVEON_COLOR" "$EEVEON_COMMIT" "$EEVEON_REF" > built.txt; env > env.txt`})
	w := newWorktree(t, e, "hello")
	c1 := w.commit(map[string]string{"index.html": "v1", "css/site.css": "body{}"})

	r1, out, err := deploy(t, e, Request{})
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, out)
	}
	if err := names.DeployID(r1.ID); err != nil {
		t.Errorf("deploy id: %v", err)
	}
	if r1.State != StateLive || r1.Color != "blue" || r1.Commit != c1 || r1.PrevColor != "" {
		t.Errorf("first deploy = %+v", r1)
	}
	cur := filepath.Join(site.Path, "current")
	if got := readlink(t, cur); got != "blue" {
		t.Errorf("current -> %q, want blue", got)
	}
	if got := readFile(t, filepath.Join(cur, "index.html")); got != "v1" {
		t.Errorf("current/index.html = %q", got)
	}
	if got := readFile(t, filepath.Join(cur, "css", "site.css")); got != "body{}" {
		t.Errorf("current/css/site.css = %q", got)
	}
	if got, want := readFile(t, filepath.Join(cur, "built.txt")), "hello blue "+c1+" refs/heads/main"; got != want {
		t.Errorf("build saw %q, want %q", got, want)
	}
	if env := readFile(t, filepath.Join(cur, "env.txt")); strings.Contains(env, "s3cret") || !strings.Contains(env, "PATH=") {
		t.Errorf("build environment leaks the server's or lacks PATH:\n%s", env)
	}
	if _, err := os.Stat(filepath.Join(cur, ".git")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the colour has a .git: %v", err)
	}
	if !strings.Contains(out, "live: hello "+c1[:7]+" on blue") {
		t.Errorf("progress lacks the live line:\n%s", out)
	}
	logged := readFile(t, LogPath(e.Data(), "hello", r1.ID))
	if !strings.Contains(logged, "live: hello") {
		t.Errorf("deploy log lacks the live line:\n%s", logged)
	}
	rec, err := LoadRecord(e.Data(), "hello", r1.ID)
	if err != nil || rec.State != StateLive || rec.Phase != PhaseFinished || rec.Commit != c1 {
		t.Errorf("record = %+v, %v", rec, err)
	}
	h := historyLines(t, site)
	if len(h) != 1 {
		t.Fatalf("history has %d lines, want 1", len(h))
	}
	checkHistoryLine(t, h[0], Record{ID: r1.ID, Site: "hello", Commit: c1, Ref: "refs/heads/main", Color: "blue",
		Strategy: BlueGreen, State: StateLive, User: "alice", Trigger: "cli"})

	blue := snapshot(t, filepath.Join(site.Path, "blue"))
	c2 := w.commit(map[string]string{"index.html": "v2"})
	r2 := mustDeploy(t, e, Request{Trigger: "push", User: "bob"})
	if r2.Color != "green" || r2.PrevColor != "blue" || r2.Commit != c2 {
		t.Errorf("second deploy = %+v", r2)
	}
	if got := readlink(t, cur); got != "green" {
		t.Errorf("current -> %q, want green", got)
	}
	if got := readFile(t, filepath.Join(cur, "index.html")); got != "v2" {
		t.Errorf("current/index.html = %q, want v2", got)
	}
	sameSnapshot(t, "blue", blue, snapshot(t, filepath.Join(site.Path, "blue")))
	h = historyLines(t, site)
	if len(h) != 2 {
		t.Fatalf("history has %d lines, want 2", len(h))
	}
	checkHistoryLine(t, h[1], Record{ID: r2.ID, Site: "hello", Commit: c2, Ref: "refs/heads/main", Color: "green",
		Strategy: BlueGreen, State: StateLive, User: "bob", Trigger: "push"})

	st, err := e.Status("hello")
	if err != nil {
		t.Fatal(err)
	}
	if st.LiveColor != "green" || st.Live == nil || st.Live.ID != r2.ID || st.Live.Commit != c2 || st.Running != nil {
		t.Errorf("Status = %+v (live %+v)", st, st.Live)
	}

	// A third deploy reuses blue and leaves green alone.
	green := snapshot(t, filepath.Join(site.Path, "green"))
	w.commit(map[string]string{"index.html": "v3"}, "css/site.css")
	r3 := mustDeploy(t, e, Request{})
	if r3.Color != "blue" || readlink(t, cur) != "blue" || readFile(t, filepath.Join(cur, "index.html")) != "v3" {
		t.Errorf("third deploy: %+v, current -> %s", r3, readlink(t, cur))
	}
	if _, err := os.Stat(filepath.Join(site.Path, "blue", "css", "site.css")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file removed from the commit survived in blue: %v", err)
	}
	sameSnapshot(t, "green", green, snapshot(t, filepath.Join(site.Path, "green")))
	if st, _ := e.Status("hello"); st.LiveColor != "blue" || st.Live == nil || st.Live.ID != r3.ID {
		t.Errorf("Status after the third deploy = %+v", st)
	}
	noLeftovers(t, site)
}

// noLeftovers checks that a site path holds no temp dirs or links.
func noLeftovers(t *testing.T, site Site) {
	t.Helper()
	ents, _ := os.ReadDir(site.Path)
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), tmpPrefix) || strings.HasPrefix(ent.Name(), currentTmpName) {
			t.Errorf("leftover %s in %s", ent.Name(), site.Path)
		}
	}
}

func TestDeployUnknownSiteAndRevision(t *testing.T) {
	e := testEngine(t)
	if _, _, err := deploy(t, e, Request{Site: "nope"}); !errors.Is(err, ErrSiteNotFound) {
		t.Errorf("deploy of an unknown site = %v, want ErrSiteNotFound", err)
	}
	site := addSite(t, e, Site{Name: "hello"})
	// Nothing pushed yet: the branch does not resolve.
	r, _, err := deploy(t, e, Request{})
	if err == nil || r.State != StateFailed || !strings.Contains(r.Error, "resolve") {
		t.Errorf("deploy of an empty repo = %+v, %v; want failed at resolve", r, err)
	}
	if LiveColor(site.Path) != "" {
		t.Errorf("an empty repo made something live: %s", LiveColor(site.Path))
	}
}

func TestDeployRef(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello"})
	w := newWorktree(t, e, "hello")
	c1 := w.commit(map[string]string{"index.html": "v1"})
	w.commit(map[string]string{"index.html": "v2"})
	r := mustDeploy(t, e, Request{Ref: c1})
	if r.Commit != c1 || readFile(t, filepath.Join(site.Path, "current", "index.html")) != "v1" {
		t.Errorf("deploy of %s = %+v", c1, r)
	}
}

func TestDeployFailingBuild(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello", Build: `echo built > out.txt; if test -f fail; then echo "compiler says no" >&2; exit 3; fi`})
	w := newWorktree(t, e, "hello")
	c1 := w.commit(map[string]string{"index.html": "v1"})
	r1 := mustDeploy(t, e, Request{})
	cur := filepath.Join(site.Path, "current")
	live := snapshot(t, filepath.Join(site.Path, "blue"))

	c2 := w.commit(map[string]string{"index.html": "v2", "fail": ""})
	r2, out, err := deploy(t, e, Request{})
	if err == nil {
		t.Fatalf("a failing build went live:\n%s", out)
	}
	if !strings.Contains(err.Error(), "build") || !strings.Contains(err.Error(), "exited with status 3") {
		t.Errorf("error = %q, want build: exited with status 3", err)
	}
	if r2.State != StateFailed || r2.Commit != c2 || r2.Color != "green" {
		t.Errorf("failed deploy record = %+v", r2)
	}
	if !strings.Contains(out, "compiler says no") || !strings.Contains(out, "FAILED") || !strings.Contains(out, "stays on blue ("+c1[:7]+")") {
		t.Errorf("client output lacks the build output or the outcome:\n%s", out)
	}
	if got := readlink(t, cur); got != "blue" {
		t.Errorf("current -> %q after a failed build, want blue", got)
	}
	sameSnapshot(t, "live blue", live, snapshot(t, filepath.Join(site.Path, "blue")))
	rec, err := LoadRecord(e.Data(), "hello", r2.ID)
	if err != nil || rec.State != StateFailed || !strings.Contains(rec.Error, "exited with status 3") {
		t.Errorf("stored record = %+v, %v", rec, err)
	}
	h := historyLines(t, site)
	if len(h) != 2 {
		t.Fatalf("history has %d lines, want 2", len(h))
	}
	checkHistoryLine(t, h[1], Record{ID: r2.ID, Site: "hello", Commit: c2, Ref: "refs/heads/main", Color: "green",
		Strategy: BlueGreen, State: StateFailed, User: "alice", Trigger: "cli", Error: "build: exited with status 3"})
	st, _ := e.Status("hello")
	if st.LiveColor != "blue" || st.Live == nil || st.Live.ID != r1.ID {
		t.Errorf("Status after a failed deploy = %+v", st)
	}
	noLeftovers(t, site)
}

func TestDeployFailingHealthCheck(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello", HealthCmd: "test -f ok || { echo not healthy; exit 1; }"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"ok": ""})
	mustDeploy(t, e, Request{})
	live := snapshot(t, filepath.Join(site.Path, "blue"))

	w.commit(nil, "ok")
	start := time.Now()
	r, out, err := deploy(t, e, Request{})
	if err == nil || r.State != StateFailed || !strings.Contains(r.Error, "health check") {
		t.Fatalf("unhealthy deploy = %+v, %v\n%s", r, err, out)
	}
	if !strings.Contains(out, "not healthy") {
		t.Errorf("client output lacks the health command's output:\n%s", out)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the health check took %s with a 400ms limit", took)
	}
	if got := readlink(t, filepath.Join(site.Path, "current")); got != "blue" {
		t.Errorf("current -> %q after a failed health check", got)
	}
	sameSnapshot(t, "live blue", live, snapshot(t, filepath.Join(site.Path, "blue")))
}

func TestDeployHealthURL(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		if r.URL.Path != "/green/health" {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello", HealthURL: srv.URL + "/{color}/health"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"index.html": "v1"})
	// blue answers 503: the first deploy fails and nothing is live.
	if r, _, err := deploy(t, e, Request{}); err == nil || r.State != StateFailed || !strings.Contains(r.Error, "503") {
		t.Errorf("deploy against a 503 = %+v, %v", r, err)
	}
	if LiveColor(site.Path) != "" {
		t.Errorf("an unhealthy colour went live")
	}
	// The next deploy goes to blue again (nothing is live), still 503.
	// Make blue live by hand to get a green deploy, which passes.
	if err := swapCurrent(site.Path, "blue", "x"); err != nil {
		t.Fatal(err)
	}
	r := mustDeploy(t, e, Request{})
	if r.Color != "green" || readlink(t, filepath.Join(site.Path, "current")) != "green" {
		t.Errorf("healthy deploy = %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[len(paths)-1] != "/green/health" {
		t.Errorf("health URL requests: %v", paths)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// pid (comm) STATE ...
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return syscall.Kill(pid, 0) == nil
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, path)))
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

func TestDeployBuildTimeout(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.Deploy.BuildTimeout = Duration{300 * time.Millisecond} })
	tmp := t.TempDir()
	pidFile, childFile := filepath.Join(tmp, "pid"), filepath.Join(tmp, "child")
	site := addSite(t, e, Site{Name: "hello", Build: "test -f slow || exit 0; sleep 6 & echo $! > " + ShellQuote(childFile) + "; echo $$ > " + ShellQuote(pidFile) + "; exec sleep 5"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"index.html": "v1"})
	mustDeploy(t, e, Request{})
	live := snapshot(t, filepath.Join(site.Path, "blue"))

	w.commit(map[string]string{"slow": ""})
	start := time.Now()
	r, out, err := deploy(t, e, Request{})
	took := time.Since(start)
	if err == nil || r.State != StateFailed || !strings.Contains(r.Error, "timed out") {
		t.Fatalf("slow build = %+v, %v\n%s", r, err, out)
	}
	if took > 3*time.Second {
		t.Errorf("deploy with a 300ms build limit took %s", took)
	}
	for _, f := range []string{pidFile, childFile} {
		if pid := readPid(t, f); alive(pid) {
			t.Errorf("build process %d (%s) outlived the timeout", pid, filepath.Base(f))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if got := readlink(t, filepath.Join(site.Path, "current")); got != "blue" {
		t.Errorf("current -> %q after a timed-out build", got)
	}
	sameSnapshot(t, "live blue", live, snapshot(t, filepath.Join(site.Path, "blue")))
	if h := historyLines(t, site); h[len(h)-1]["state"] != string(StateFailed) || !strings.Contains(h[len(h)-1]["error"].(string), "timed out") {
		t.Errorf("history = %v", h[len(h)-1])
	}
}

func TestDeployInPlace(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello", Strategy: InPlace, Build: "echo generated > gen.txt"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"a.txt": "a1", "b.txt": "b1", "sub/c.txt": "c1"})
	r1 := mustDeploy(t, e, Request{})
	cur := filepath.Join(site.Path, "current")
	fi, err := os.Lstat(cur)
	if err != nil || !fi.IsDir() {
		t.Fatalf("in-place current is not a real directory: %v %v", fi, err)
	}
	if r1.Color != "in-place" || r1.Strategy != InPlace || LiveColor(site.Path) != "in-place" {
		t.Errorf("in-place deploy = %+v, LiveColor %q", r1, LiveColor(site.Path))
	}
	for name, want := range map[string]string{"a.txt": "a1", "b.txt": "b1", "sub/c.txt": "c1", "gen.txt": "generated\n"} {
		if got := readFile(t, filepath.Join(cur, name)); got != want {
			t.Errorf("current/%s = %q, want %q", name, got, want)
		}
	}
	for _, c := range []string{"blue", "green", ".git"} {
		if _, err := os.Stat(filepath.Join(site.Path, c)); err == nil {
			t.Errorf("in-place deploy made %s", c)
		}
		if _, err := os.Stat(filepath.Join(cur, c)); err == nil {
			t.Errorf("in-place deploy made current/%s", c)
		}
	}

	w.commit(map[string]string{"a.txt": "a2"}, "b.txt")
	mustDeploy(t, e, Request{})
	if got := readFile(t, filepath.Join(cur, "a.txt")); got != "a2" {
		t.Errorf("current/a.txt = %q, want a2", got)
	}
	if _, err := os.Stat(filepath.Join(cur, "b.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file removed from the commit is still in current: %v", err)
	}
	if st, _ := e.Status("hello"); st.LiveColor != "in-place" || st.Live == nil || st.Live.Color != "in-place" {
		t.Errorf("Status of an in-place site = %+v", st)
	}

	// Blue-green turns current back into a symlink.
	r3 := mustDeploy(t, e, Request{Strategy: BlueGreen})
	if got := readlink(t, cur); got != "blue" || r3.Color != "blue" || r3.PrevColor != "in-place" {
		t.Errorf("blue-green after in-place: current -> %q, record %+v", got, r3)
	}
	if got := readFile(t, filepath.Join(cur, "a.txt")); got != "a2" {
		t.Errorf("current/a.txt = %q after the switch", got)
	}
	noLeftovers(t, site)

	// And in-place again makes a full real directory, including files
	// unchanged since the first in-place deploy.
	w.commit(map[string]string{"d.txt": "d1"})
	mustDeploy(t, e, Request{Strategy: InPlace})
	if fi, err := os.Lstat(cur); err != nil || !fi.IsDir() {
		t.Fatalf("current is not a directory after in-place: %v", err)
	}
	for name, want := range map[string]string{"a.txt": "a2", "sub/c.txt": "c1", "d.txt": "d1"} {
		if got, err := os.ReadFile(filepath.Join(cur, name)); err != nil || string(got) != want {
			t.Errorf("current/%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestDeploySupersededPush: a push still waiting for the site lock when a
// newer push arrives is superseded by it, whichever gets the lock first;
// the newer one deploys.
func TestDeploySupersededPush(t *testing.T) {
	e := testEngine(t)
	release := filepath.Join(t.TempDir(), "release")
	site, first := deployInBackground(t, e, "until [ -e "+ShellQuote(release)+" ]; do sleep 0.01; done")
	w := newWorktree(t, e, "hello")
	old := w.commitOnly(map[string]string{"index.html": "v2"})
	tip := w.commitOnly(map[string]string{"index.html": "v3"})
	gitOut(t, w.dir, "push", "-q", "-f", "origin", "HEAD:refs/heads/main")

	type result struct {
		r   Record
		out string
		err error
	}
	older := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		r, err := e.Deploy(context.Background(), Request{Site: "hello", Commit: old, FromPush: true, Trigger: "push"}, &out)
		older <- result{r, out.String(), err}
	}()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(queuedRecords(t, e, "hello"), "queued") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the older push never waited for the site lock")
		}
	}
	newerDone := make(chan Record, 1)
	go func() {
		r, _, _ := deploy(t, e, Request{Commit: tip, FromPush: true, Trigger: "push"})
		newerDone <- r
	}()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(queuedRecords(t, e, "hello"), "queued") != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the newer push never waited for the site lock")
		}
	}
	writeFile(t, release, "")
	if r := <-first; r.State != StateLive {
		t.Fatalf("first deploy = %+v", r)
	}
	newer := <-newerDone
	o := <-older
	if o.err != nil {
		t.Fatalf("superseded deploy returned %v\n%s", o.err, o.out)
	}
	if o.r.State != StateSuperseded || o.r.Commit != old {
		t.Errorf("deploy of the older push = %+v", o.r)
	}
	if want := "superseded: deploy " + newer.ID + " (" + newer.Short() + ") arrived after this one"; !strings.Contains(o.out, want) {
		t.Errorf("client not told %q:\n%s", want, o.out)
	}
	if newer.State != StateLive || readFile(t, filepath.Join(site.Path, "current", "index.html")) != "v3" {
		t.Errorf("deploy of the newer push = %+v", newer)
	}
	states := map[string]any{}
	for _, h := range historyLines(t, site) {
		states[h["commit"].(string)] = h["state"]
	}
	if states[old] != string(StateSuperseded) || states[tip] != string(StateLive) {
		t.Errorf("history states %v", states)
	}
}

// queuedRecords lists the phases of a site's deploy records that are
// still running.
func queuedRecords(t *testing.T, e *Engine, site string) string {
	t.Helper()
	ents, _ := os.ReadDir(e.data.DeploysDir(site))
	var phases []string
	for _, ent := range ents {
		if id, ok := strings.CutSuffix(ent.Name(), ".json"); ok {
			if r, err := LoadRecord(e.data, site, id); err == nil && r.State == StateRunning {
				phases = append(phases, r.Phase)
			}
		}
	}
	return strings.Join(phases, " ")
}

// writeRecord stores a hand-made deploy record as the engine would.
func writeRecord(t *testing.T, d Data, r Record) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d.DeploysDir(r.Site), r.ID+".json"), string(b))
}

func TestRecover(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello"})
	w := newWorktree(t, e, "hello")
	c1 := w.commit(map[string]string{"index.html": "v1"})
	live := mustDeploy(t, e, Request{})
	blue := snapshot(t, filepath.Join(site.Path, "blue"))

	// A crash during a build of green, one during the swap to blue (which
	// current shows went through) and one during a swap to green (which
	// did not).
	started := time.Now().UTC().Add(-time.Minute)
	building := Record{ID: "20260101-000000-abcd", Site: "hello", Commit: c1, Ref: "refs/heads/main", Color: "green",
		PrevColor: "blue", Strategy: BlueGreen, State: StateRunning, Phase: PhaseBuilding, User: "alice", Trigger: "push", StartedAt: started}
	swappedIn := building
	swappedIn.ID, swappedIn.Color, swappedIn.PrevColor, swappedIn.Phase = "20260101-000001-abcd", "blue", "green", PhaseSwapping
	swapLost := building
	swapLost.ID, swapLost.Phase = "20260101-000002-abcd", PhaseSwapping
	done := building
	done.ID, done.State, done.Phase, done.FinishedAt = "20260101-000003-abcd", StateFailed, PhaseFinished, started
	for _, r := range []Record{building, swappedIn, swapLost, done} {
		writeRecord(t, e.Data(), r)
	}
	writeFile(t, filepath.Join(site.Path, tmpPrefix+"x", "index.html"), "half")
	if err := os.Symlink("green", filepath.Join(site.Path, currentTmpName+"20260101-000002-abcd")); err != nil {
		t.Fatal(err)
	}
	histBefore := len(historyLines(t, site))

	e.Recover()

	want := map[string]State{building.ID: StateInterrupted, swappedIn.ID: StateLive, swapLost.ID: StateInterrupted, done.ID: StateFailed}
	for id, state := range want {
		r, err := LoadRecord(e.Data(), "hello", id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != state || r.Phase != PhaseFinished && state != StateFailed {
			t.Errorf("record %s after Recover: state %q phase %q, want %q", id, r.State, r.Phase, state)
		}
		if state == StateInterrupted && (r.FinishedAt.IsZero() || !strings.Contains(r.Error, "swapping") && !strings.Contains(r.Error, "building")) {
			t.Errorf("record %s: finished %v, error %q", id, r.FinishedAt, r.Error)
		}
	}
	h := historyLines(t, site)
	if len(h) != histBefore+3 {
		t.Fatalf("history grew by %d lines, want 3 (the finished record is not repeated)", len(h)-histBefore)
	}
	got := map[string]string{}
	for _, line := range h[histBefore:] {
		got[line["id"].(string)] = line["state"].(string)
	}
	for _, id := range []string{building.ID, swappedIn.ID, swapLost.ID} {
		if got[id] != string(want[id]) {
			t.Errorf("history of %s: %q, want %q", id, got[id], want[id])
		}
	}
	if _, err := os.Lstat(filepath.Join(site.Path, tmpPrefix+"x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover temp dir survived Recover: %v", err)
	}
	noLeftovers(t, site)
	if got := readlink(t, filepath.Join(site.Path, "current")); got != "blue" {
		t.Errorf("Recover changed current to %q", got)
	}
	sameSnapshot(t, "live blue", blue, snapshot(t, filepath.Join(site.Path, "blue")))
	if st, _ := e.Status("hello"); st.LiveColor != "blue" || st.Live == nil || (st.Live.ID != swappedIn.ID && st.Live.ID != live.ID) {
		t.Errorf("Status after Recover = %+v", st)
	}

	// Recover again: nothing more to do, history unchanged.
	e.Recover()
	if n := len(historyLines(t, site)); n != len(h) {
		t.Errorf("a second Recover added %d history lines", n-len(h))
	}
}

// waitFile waits for path to exist.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownInterruptsDeploy(t *testing.T) {
	e := testEngine(t)
	tmp := t.TempDir()
	started, pidFile := filepath.Join(tmp, "started"), filepath.Join(tmp, "pid")
	site := addSite(t, e, Site{Name: "hello", Build: "test -f slow || exit 0; echo $$ > " + ShellQuote(pidFile) + "; touch " + ShellQuote(started) + "; exec sleep 10"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"index.html": "v1"})
	mustDeploy(t, e, Request{})
	live := snapshot(t, filepath.Join(site.Path, "blue"))

	w.commit(map[string]string{"slow": ""})
	type result struct {
		r   Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := e.Deploy(context.Background(), Request{Site: "hello", Trigger: "cli", User: "alice"}, io.Discard)
		done <- result{r, err}
	}()
	waitFile(t, started)
	if r, ok := e.Running("hello"); !ok || r.Phase != PhaseBuilding || r.State != StateRunning {
		t.Errorf("Running during the build = %+v, %v", r, ok)
	}
	if st, _ := e.Status("hello"); st.Running == nil || st.LiveColor != "blue" {
		t.Errorf("Status during the build = %+v", st)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	e.Shutdown(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Shutdown with a cancelled context took %s", took)
	}
	// Shutdown returns once the deploy has ended: its record is final.
	if running, ok := e.Running("hello"); ok {
		t.Errorf("Shutdown returned while %s still runs", running.ID)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the deploy did not return after Shutdown")
	}
	if res.err == nil || res.r.State != StateInterrupted {
		t.Errorf("deploy during shutdown = %+v, %v; want interrupted", res.r, res.err)
	}
	if pid := readPid(t, pidFile); alive(pid) {
		t.Errorf("the build (pid %d) outlived the shutdown", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if rec, _ := LoadRecord(e.Data(), "hello", res.r.ID); rec.State != StateInterrupted {
		t.Errorf("stored record state %q", rec.State)
	}
	if _, ok := e.Running("hello"); ok {
		t.Error("Running still reports the interrupted deploy")
	}
	if got := readlink(t, filepath.Join(site.Path, "current")); got != "blue" {
		t.Errorf("current -> %q after an interrupted deploy", got)
	}
	sameSnapshot(t, "live blue", live, snapshot(t, filepath.Join(site.Path, "blue")))

	if _, _, err := deploy(t, e, Request{}); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("Deploy after Shutdown = %v, want ErrShuttingDown", err)
	}
}

func TestShutdownWaitsForDeploy(t *testing.T) {
	e := testEngine(t)
	site, done := deployInBackground(t, e, "sleep 0.3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.Shutdown(ctx)
	// Shutdown returns once the deploy has gone live.
	if LiveColor(site.Path) != "blue" {
		t.Errorf("Shutdown returned before the deploy went live (LiveColor %q)", LiveColor(site.Path))
	}
	select {
	case r := <-done:
		if r.State != StateLive {
			t.Errorf("deploy within the grace period = %+v, want live", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the deploy did not return after Shutdown")
	}
}

func TestConcurrentDeploysDoNotOverlap(t *testing.T) {
	e := testEngine(t)
	trace := filepath.Join(t.TempDir(), "trace")
	q := ShellQuote(trace)
	site := addSite(t, e, Site{Name: "hello", Build: "echo start $EEVEON_DEPLOY_ID >> " + q + "; sleep 0.15; echo end $EEVEON_DEPLOY_ID >> " + q})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"index.html": "v1"})

	const n = 4
	var wg sync.WaitGroup
	recs := make([]Record, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i], errs[i] = e.Deploy(context.Background(), Request{Site: "hello", Trigger: "cli"}, io.Discard)
		}()
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range n {
		if errs[i] != nil || recs[i].State != StateLive {
			t.Errorf("deploy %d = %+v, %v", i, recs[i], errs[i])
		}
		ids[recs[i].ID] = true
	}
	if len(ids) != n {
		t.Errorf("%d distinct deploy ids for %d deploys", len(ids), n)
	}
	lines := strings.Split(strings.TrimSpace(readFile(t, trace)), "\n")
	if len(lines) != 2*n {
		t.Fatalf("trace has %d lines, want %d:\n%s", len(lines), 2*n, strings.Join(lines, "\n"))
	}
	for i := 0; i < len(lines); i += 2 {
		id, ok := strings.CutPrefix(lines[i], "start ")
		if !ok || lines[i+1] != "end "+id {
			t.Fatalf("builds overlap:\n%s", strings.Join(lines, "\n"))
		}
	}
	h := historyLines(t, site)
	if len(h) != n {
		t.Fatalf("history has %d lines, want %d", len(h), n)
	}
	// Colours alternate in the order the deploys ran.
	for i, line := range h {
		if want := []string{"blue", "green"}[i%2]; line["color"] != want {
			t.Errorf("history[%d] colour %v, want %s", i, line["color"], want)
		}
	}
	if last := h[n-1]; readlink(t, filepath.Join(site.Path, "current")) != last["color"] {
		t.Errorf("current does not point at the last deploy's colour %v", last["color"])
	}
	if st, _ := e.Status("hello"); st.Live == nil || st.Live.ID != h[n-1]["id"] {
		t.Errorf("Status live = %+v, want the last deploy %v", st.Live, h[n-1]["id"])
	}
}

// TestDeployGivesUpWaitingForLock: a client that goes away while another
// deploy holds the site lock ends its own deploy as interrupted and
// leaves the running one alone.
func TestDeployGivesUpWaitingForLock(t *testing.T) {
	e := testEngine(t)
	// The first build holds the lock until the second deploy gave up.
	release := filepath.Join(t.TempDir(), "release")
	site, first := deployInBackground(t, e, "until [ -e "+ShellQuote(release)+" ]; do sleep 0.01; done")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	r, err := e.Deploy(ctx, Request{Site: "hello"}, &out)
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err == nil || r.State != StateInterrupted {
		t.Errorf("abandoned deploy = %+v, %v", r, err)
	}
	if !strings.Contains(out.String(), "waiting") {
		t.Errorf("the waiting client was not told:\n%s", out.String())
	}
	if r1 := <-first; r1.State != StateLive {
		t.Errorf("the running deploy = %+v", r1)
	}
	if LiveColor(site.Path) != "blue" {
		t.Errorf("LiveColor = %q", LiveColor(site.Path))
	}
}

// TestBuildHasNoStdin: a build never reads the server's stdin. The test
// puts a pipe holding data on this process's fd 0 (go test's own stdin is
// /dev/null, which would hide a build that inherits it).
func TestBuildHasNoStdin(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup2(int(pr.Fd()), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Dup2(saved, 0)
		syscall.Close(saved)
		pr.Close()
	})
	fmt.Fprintln(pw, "the server's stdin")
	pw.Close()
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello", Build: "cat > stdin.txt"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"index.html": "v1"})
	mustDeploy(t, e, Request{})
	if got := readFile(t, filepath.Join(site.Path, "current", "stdin.txt")); got != "" {
		t.Errorf("build read %q from stdin", got)
	}
}

func TestHistorySkipsGarbage(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello"})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"index.html": "v1"})
	r1 := mustDeploy(t, e, Request{})
	// A hand edit without a trailing newline, then another deploy.
	hist := filepath.Join(site.Path, historyFile)
	f, err := os.OpenFile(hist, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "not json\n{\"id\":\"\"}\n{\"broken\":")
	f.Close()
	r2 := mustDeploy(t, e, Request{})
	h, err := History(site)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].ID != r1.ID || h[1].ID != r2.ID {
		t.Errorf("History = %+v, want the two deploys", h)
	}
}

// TestListRecordsOrder: ListRecords promises oldest first. Two deploys
// started within one second share the id's time part, and the random
// suffix then decides the order.
func TestListRecordsOrder(t *testing.T) {
	d := newData(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	older := Record{ID: "20260101-000000-ffff", Site: "hello", State: StateLive, StartedAt: t0.Add(100 * time.Millisecond)}
	newer := Record{ID: "20260101-000000-0000", Site: "hello", State: StateLive, StartedAt: t0.Add(600 * time.Millisecond)}
	writeRecord(t, d, older)
	writeRecord(t, d, newer)
	recs, err := ListRecords(d, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].ID != older.ID || recs[1].ID != newer.ID {
		t.Errorf("ListRecords order = %v, %v; want %s (started first), then %s", recs[0].ID, recs[1].ID, older.ID, newer.ID)
	}
}

func TestListRecordsSkipsForeignFiles(t *testing.T) {
	d := newData(t)
	writeRecord(t, d, Record{ID: "20260101-000000-abcd", Site: "hello", State: StateLive})
	writeFile(t, filepath.Join(d.DeploysDir("hello"), "20260101-000001-abcd.json"), "{broken")
	writeFile(t, filepath.Join(d.DeploysDir("hello"), "notes.json"), "{}")
	writeFile(t, filepath.Join(d.DeploysDir("hello"), "20260101-000000-abcd.log"), "log")
	recs, err := ListRecords(d, "hello")
	if err != nil || len(recs) != 1 || recs[0].ID != "20260101-000000-abcd" {
		t.Errorf("ListRecords = %+v, %v", recs, err)
	}
	if _, err := LoadRecord(d, "hello", "20260101-000009-abcd"); !errors.Is(err, ErrDeployNotFound) {
		t.Errorf("LoadRecord of a missing id = %v, want ErrDeployNotFound", err)
	}
	if _, err := LoadRecord(d, "hello", "../../eeveon"); !errors.Is(err, names.ErrInvalid) {
		t.Errorf("LoadRecord of a bad id = %v, want names.ErrInvalid", err)
	}
}

// deployInBackground starts a deploy of site hello whose build runs the
// shell command then, and returns once the build runs; the channel
// receives the deploy's record when it ends.
func deployInBackground(t *testing.T, e *Engine, then string) (Site, <-chan Record) {
	t.Helper()
	started := filepath.Join(t.TempDir(), "started")
	site := addSite(t, e, Site{Name: "hello", Build: "touch " + ShellQuote(started) + "; " + then})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"index.html": "v1"})
	done := make(chan Record, 1)
	go func() {
		r, _ := e.Deploy(context.Background(), Request{Site: "hello"}, io.Discard)
		done <- r
	}()
	waitFile(t, started)
	return site, done
}

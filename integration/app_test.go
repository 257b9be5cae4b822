package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The app of these tests (testdata/app) is built once, next to the eeveon
// binary; a commit of an app site holds only its VERSION (and the
// UNHEALTHY or CRASH switches), so a deploy needs no build.
var (
	appBinOnce sync.Once
	appBin     string
	appBinErr  error
)

func testAppBinary(t testing.TB) string {
	t.Helper()
	appBinOnce.Do(func() {
		out := filepath.Join(filepath.Dir(bin), "testapp")
		b, err := exec.Command("go", "build", "-o", out, "./testdata/app").CombinedOutput()
		if err != nil {
			appBinErr = fmt.Errorf("build testdata/app: %v\n%s", err, b)
			return
		}
		appBin = out
	})
	if appBinErr != nil {
		t.Fatal(appBinErr)
	}
	return appBin
}

// newAppEnv is an Env whose server checks apps every 50ms and gives them
// a short grace, so that a deploy takes a fraction of a second. Its app
// sites get their ports from a range of their own (appPortBlock).
func newAppEnv(t *testing.T) *Env {
	t.Helper()
	return newAppEnvHealth(t, "20s")
}

// newAppEnvHealth is newAppEnv whose deploys wait up to healthTimeout for
// an app to answer its health check: long enough for an app to start on
// a loaded machine, unless the test wants apps that never get healthy to
// fail soon.
func newAppEnvHealth(t *testing.T, healthTimeout string) *Env {
	t.Helper()
	lo := appPortBlock(t) // claimed before the server starts, given back after it stopped
	e := NewEnv(t)
	e.restartWithConfig("[deploy]\nhealth_interval = \"50ms\"\nhealth_timeout = \"" + healthTimeout + "\"\nhealth_try_timeout = \"1s\"\n" +
		"[app]\ndrain_timeout = \"5s\"\nstop_grace = \"3s\"\n" +
		fmt.Sprintf("port_min = %d\nport_max = %d\n", lo, lo+appPortBlockSize-1))
	return e
}

// appPortBlockSize is how many ports a test's app sites pick from.
const appPortBlockSize = 10

// appPortBlock claims, until the test ends, a block of ports in the
// upper half of the default app range (below the kernel's ephemeral
// ports; a server with the default range picks from its bottom) that no
// other test uses, in this run or in another run of the suite at the
// same time, and returns its first port. Servers of different data dirs
// do not know each other's ports: with the same range, two tests' sites
// pick the same ports and one app cannot bind. The claim is a lock on a
// file per block, which the kernel gives back if the test dies.
func appPortBlock(t *testing.T) int {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "eeveon-test-app-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for lo := 25000; lo+appPortBlockSize-1 < 30000; lo += appPortBlockSize {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(lo)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		free := true
		for p := lo; p < lo+appPortBlockSize && free; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if free = err == nil; free {
				ln.Close()
			}
		}
		if !free {
			f.Close() // something else holds a port of it
			continue
		}
		t.Cleanup(func() { f.Close() })
		return lo
	}
	t.Fatal("no free block of app ports in 25000-29999")
	return 0
}

// load sends requests to the proxy until stopped: some workers reuse
// their connection, the others open a new one for every request. Each
// records the versions it saw, in order, without repeats, and every
// answer that was not a 2xx.
type load struct {
	workers []*loadWorker
	stop    chan struct{}
	wg      sync.WaitGroup
}

type loadWorker struct {
	keepAlive bool
	mu        sync.Mutex
	seq       []string
	n         int
	fails     []string
}

func startLoad(t *testing.T, addr string, workers int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	for i := range workers {
		w := &loadWorker{keepAlive: i%2 == 0}
		l.workers = append(l.workers, w)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy: nil, DisableKeepAlives: !w.keepAlive, MaxIdleConnsPerHost: 1,
		}}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer client.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				w.get(client, "http://"+addr+"/")
			}
		}()
	}
	return l
}

func (w *loadWorker) get(client *http.Client, url string) {
	resp, err := client.Get(url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	switch {
	case err != nil:
		w.fails = append(w.fails, err.Error())
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		w.fails = append(w.fails, fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body))))
	default:
		v := strings.TrimSpace(string(body))
		if len(w.seq) == 0 || w.seq[len(w.seq)-1] != v {
			w.seq = append(w.seq, v)
		}
	}
}

func (w *loadWorker) last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seq) == 0 {
		return ""
	}
	return w.seq[len(w.seq)-1]
}

// waitAllSee waits until every worker's latest answer is version v.
func (l *load) waitAllSee(t *testing.T, v string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, w := range l.workers {
		for w.last() != v {
			if time.Now().After(deadline) {
				t.Fatalf("a client still sees %q, not %q", w.last(), v)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// waitRequests waits until every worker has made n more requests.
func (l *load) waitRequests(t *testing.T, n int) {
	t.Helper()
	count := func(w *loadWorker) int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.n
	}
	from := make([]int, len(l.workers))
	for i, w := range l.workers {
		from[i] = count(w)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, w := range l.workers {
		for count(w) < from[i]+n {
			if time.Now().After(deadline) {
				t.Fatalf("client %d made %d requests in 30s, want %d", i, count(w)-from[i], n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// finish stops the load and checks that no request failed; it returns
// the total number of requests.
func (l *load) finish(t *testing.T) int {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	total := 0
	for i, w := range l.workers {
		total += w.n
		if len(w.fails) > 0 {
			t.Errorf("client %d (keep-alive %v): %d of %d requests failed, first: %s", i, w.keepAlive, len(w.fails), w.n, w.fails[0])
		}
	}
	return total
}

// leftovers lists the processes whose working directory or command line
// lies under dir (the test's temp dir): an app runs in its colour's
// directory there.
func leftovers(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var found []string
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		p := filepath.Join("/proc", ent.Name())
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		cmd, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		cmdline := strings.ReplaceAll(string(cmd), "\x00", " ")
		stat, _ := os.ReadFile(filepath.Join(p, "stat"))
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue // a zombie holds nothing
		}
		if strings.HasPrefix(cwd, dir) || strings.Contains(cmdline, dir) {
			st := ""
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
				st = string(stat[i+2:])
				if f := strings.Fields(st); len(f) > 3 {
					st = strings.Join(f[:4], " ") // state ppid pgrp session
				}
			}
			found = append(found, fmt.Sprintf("pid %d (%s) cwd %s: %s", pid, st, cwd, cmdline))
		}
	}
	return found
}

func appGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestAppZeroDowntime deploys an app ten times, rolls back, and puts a
// deploy live through an approval, under continuous load through the
// proxy: no request fails, every client sees each version once and in
// order, and no app process outlives the server, before and after a
// restart of it.
func TestAppZeroDowntime(t *testing.T) {
	t.Parallel()
	appBin := testAppBinary(t)
	e := newAppEnv(t)
	admin := e.AddKey("admin", "admin", "")
	proxy := "127.0.0.1:" + freePort(t)
	e.MustEeveon("site", "add", "api", "--start", "exec "+appBin, "--proxy", proxy)
	repo := e.NewRepo("api", map[string]string{"VERSION": "v1\n"})

	push := func(want string) {
		t.Helper()
		r := repo.Push(admin, "api")
		if r.Code != 0 || !strings.Contains(r.Stderr, want) {
			t.Fatalf("push: exit %d, want %q in:\n%s", r.Code, want, r.Out())
		}
	}
	push("live: api")
	if code, body := appGet(t, "http://"+proxy+"/"); code != 200 || body != "v1" {
		t.Fatalf("proxy after the first deploy: %d %q", code, body)
	}
	ports, err := os.ReadFile(filepath.Join(e.Data, "state", "ports.json"))
	if err != nil || !strings.Contains(string(ports), `"api"`) {
		t.Fatalf("ports state: %v %s", err, ports)
	}

	l := startLoad(t, proxy, 4)
	want := []string{"v1"}
	l.waitAllSee(t, "v1")
	for i := 2; i <= 10; i++ {
		v := "v" + strconv.Itoa(i)
		repo.Commit(v, map[string]string{"VERSION": v + "\n"})
		push("drained and stopped the app in")
		want = append(want, v)
		l.waitAllSee(t, v)
	}

	// Rollback: the previous colour's app is started again and checked.
	r := e.SSH(admin, "rollback", "api")
	if r.Code != 0 || !strings.Contains(r.Out(), "health check passed") || !strings.Contains(r.Out(), "drained and stopped") {
		t.Fatalf("rollback: exit %d\n%s", r.Code, r.Out())
	}
	want = append(want, "v9")
	l.waitAllSee(t, "v9")

	// Approval: the new colour runs and is healthy but gets no traffic
	// until approved.
	e.MustEeveon("site", "set", "api", "--approval")
	repo.Commit("v11", map[string]string{"VERSION": "v11\n"})
	push("awaiting approval")
	l.waitRequests(t, 20)
	for i, w := range l.workers {
		if w.last() != "v9" {
			t.Fatalf("client %d sees %q while v11 awaits approval", i, w.last())
		}
	}
	if r := e.SSH(admin, "approve", "api"); r.Code != 0 || !strings.Contains(r.Out(), "live: api") {
		t.Fatalf("approve: exit %d\n%s", r.Code, r.Out())
	}
	want = append(want, "v11")
	l.waitAllSee(t, "v11")

	total := l.finish(t)
	for i, w := range l.workers {
		if strings.Join(w.seq, " ") != strings.Join(want, " ") {
			t.Errorf("client %d saw versions %v, want %v", i, w.seq, want)
		}
	}
	t.Logf("%d requests through the proxy during %d deploys, a rollback and an approval", total, len(want)-2)

	if r := e.SSH(admin, "status", "api"); r.Code != 0 || !strings.Contains(r.Stdout, "app:      proxy "+proxy+" -> green on port") {
		t.Errorf("status: exit %d\n%s", r.Code, r.Out())
	}

	// The app's output: over SSH for admins and the site's deployers, and
	// on the local CLI.
	dev := e.AddKey("dev", "deployer", "api")
	for _, key := range []string{admin, dev} {
		if r := e.SSH(key, "logs", "api", "--app"); r.Code != 0 || !strings.Contains(r.Stdout, "version v11 listening on") {
			t.Errorf("logs --app: exit %d\n%s", r.Code, r.Out())
		}
	}
	if r := e.Eeveon("logs", "api", "--app", "-n", "1"); r.Code != 0 || strings.Count(r.Stdout, "\n") != 1 {
		t.Errorf("eeveon logs api --app -n 1: exit %d\n%s", r.Code, r.Out())
	}

	// A restart of the server stops the apps and starts the live one again.
	e.Stop()
	if left := leftovers(e.Dir); len(left) > 0 {
		t.Fatalf("processes left after the server stopped:\n%s", strings.Join(left, "\n"))
	}
	waitVersion := func(v string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := appGet(t, "http://"+proxy+"/")
			if code == 200 && body == v {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after a restart the proxy answers %d %q", code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	e.Start()
	waitVersion("v11")

	// kill -9 of the server: the parent-death signal stops its apps; the
	// next start cleans up after them and starts the live colour again.
	// The app is recorded once it is behind the proxy, so a little after
	// the proxy answers with it.
	state := filepath.Join(e.Data, "state", "apps", "api.json")
	pollUntil(t, 30*time.Second, "the app state to record the live app's process group", func() bool {
		b, _ := os.ReadFile(state)
		return strings.Contains(string(b), `"pgid"`)
	})
	e.Kill()
	deadline := time.Now().Add(30 * time.Second) // the orphans' grace is 2s
	for len(leftovers(e.Dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("apps outlived a killed server:\n%s", strings.Join(leftovers(e.Dir), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.Start()
	waitVersion("v11")
	e.Stop()
	if left := leftovers(e.Dir); len(left) > 0 {
		t.Fatalf("processes left after the restarted server stopped:\n%s", strings.Join(left, "\n"))
	}
}

// TestAppUnhealthyDeploy pushes an app that never answers its health
// check and one that exits at start: both fail, the live colour keeps
// serving every request, and the failed colours' apps are stopped.
func TestAppUnhealthyDeploy(t *testing.T) {
	t.Parallel()
	appBin := testAppBinary(t)
	e := newAppEnvHealth(t, "3s") // the time the app that never gets healthy is given
	admin := e.AddKey("admin", "admin", "")
	proxy := "127.0.0.1:" + freePort(t)
	e.MustEeveon("site", "add", "api", "--start", "exec "+appBin, "--proxy", proxy,
		"--ports", freePort(t)+","+freePort(t), "--health-path", "/up")
	repo := e.NewRepo("api", map[string]string{"VERSION": "v1\n"})
	if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "live: api") {
		t.Fatalf("first push: exit %d\n%s", r.Code, r.Out())
	}
	l := startLoad(t, proxy, 4)
	l.waitAllSee(t, "v1")

	repo.Commit("sick", map[string]string{"VERSION": "v2\n", "UNHEALTHY": "1"})
	r := repo.Push(admin, "api")
	if !strings.Contains(r.Stderr, "FAILED") || !strings.Contains(r.Stderr, "not healthy") || !strings.Contains(r.Stderr, "api stays on blue") {
		t.Fatalf("push of an app that never gets healthy: exit %d\n%s", r.Code, r.Out())
	}
	if err := os.Remove(filepath.Join(repo.Dir, "UNHEALTHY")); err != nil {
		t.Fatal(err)
	}
	repo.Commit("crash", map[string]string{"VERSION": "v3\n", "CRASH": "1"})
	r = repo.Push(admin, "api")
	if !strings.Contains(r.Stderr, "FAILED") || !strings.Contains(r.Stderr, "app exited") || !strings.Contains(r.Stderr, "CRASH is there") {
		t.Fatalf("push of an app that exits at start: exit %d\n%s", r.Code, r.Out())
	}
	l.waitRequests(t, 20)
	l.finish(t)
	for i, w := range l.workers {
		if strings.Join(w.seq, " ") != "v1" {
			t.Errorf("client %d saw versions %v, want only v1", i, w.seq)
		}
	}
	if e.Live("api") != "blue" {
		t.Errorf("live colour %q, want blue", e.Live("api"))
	}
	// Only the live colour's app runs.
	green := filepath.Join(e.SitePath("api"), "green")
	for _, p := range leftovers(e.Dir) {
		if strings.Contains(p, green) {
			t.Errorf("the failed colour's app still runs: %s", p)
		}
	}
	e.Stop()
	if left := leftovers(e.Dir); len(left) > 0 {
		t.Fatalf("processes left after the server stopped:\n%s", strings.Join(left, "\n"))
	}
}

// TestAppSiteRemoved: site rm of an app site (a file edit the daemon
// notices) stops its app and its proxy without a restart.
func TestAppSiteRemoved(t *testing.T) {
	t.Parallel()
	appBin := testAppBinary(t)
	e := newAppEnv(t)
	admin := e.AddKey("admin", "admin", "")
	proxy := "127.0.0.1:" + freePort(t)
	e.MustEeveon("site", "add", "api", "--start", "exec "+appBin, "--proxy", proxy, "--health-path", "/up")
	repo := e.NewRepo("api", map[string]string{"VERSION": "v1\n"})
	if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "live: api") {
		t.Fatalf("push: exit %d\n%s", r.Code, r.Out())
	}
	if code, _ := appGet(t, "http://"+proxy+"/"); code != 200 {
		t.Fatalf("proxy answers %d before site rm", code)
	}
	e.MustEeveon("site", "rm", "api")
	pollUntil(t, 30*time.Second, "the app and its proxy to stop and its ports to be given back", func() bool {
		c, err := net.DialTimeout("tcp", proxy, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return false
		}
		if len(leftovers(e.SitePath("api"))) > 0 { // the server runs on; the app's cwd is its colour
			return false
		}
		// The ports are given back last.
		ports, _ := os.ReadFile(filepath.Join(e.Data, "state", "ports.json"))
		return !strings.Contains(string(ports), `"api"`)
	})
}

// stoppedAppEnv is an Env with app site api live on its proxy, then
// stopped, and nothing left of it.
func stoppedAppEnv(t *testing.T) *Env {
	t.Helper()
	appBin := testAppBinary(t)
	e := newAppEnv(t)
	admin := e.AddKey("admin", "admin", "")
	e.MustEeveon("site", "add", "api", "--start", "exec "+appBin, "--proxy", "127.0.0.1:"+freePort(t), "--health-path", "/up")
	repo := e.NewRepo("api", map[string]string{"VERSION": "v1\n"})
	if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "live: api") {
		t.Fatalf("push: exit %d\n%s", r.Code, r.Out())
	}
	e.Stop()
	if left := leftovers(e.Dir); len(left) > 0 {
		t.Fatalf("processes left after the server stopped:\n%s", strings.Join(left, "\n"))
	}
	return e
}

// rawServer is a server started outside the harness, which waits for
// it to be ready.
type rawServer struct {
	cmd  *exec.Cmd
	out  bytes.Buffer // written until done is closed
	done chan struct{}
	err  error // set before done is closed
}

// serveRaw starts a server on e's data dir and address.
func serveRaw(t *testing.T, e *Env) *rawServer {
	t.Helper()
	s := &rawServer{cmd: exec.Command(bin, "serve", "--data", e.Data, "--listen", e.Addr), done: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
	return s
}

// wait waits for the server to exit and returns its exit.
func (s *rawServer) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(90 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		t.Fatalf("the server did not exit:\n%s", s.out.String())
		return nil
	}
}

// TestAppServerStoppedWhileStarting sends SIGTERM to a server as soon as
// it has started its live app again, while the rest of it may still be
// starting (ten times: the signal does not always come that early): it stops as on any SIGTERM, with status 0 and its app stopped
// before it exits; not killed by the signal, its app left running on its
// own for the orphan's grace period.
func TestAppServerStoppedWhileStarting(t *testing.T) {
	t.Parallel()
	e := stoppedAppEnv(t)
	site := e.SitePath("api")
	for i := range 10 {
		s := serveRaw(t, e)
		// The first process in a colour is the app's supervisor, started
		// in the background of the server's recovery.
		deadline := time.Now().Add(30 * time.Second)
		for len(leftovers(site)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("start %d: the server did not start its app again", i)
			}
			time.Sleep(time.Millisecond)
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		err := s.wait(t)
		if left := leftovers(e.Dir); err != nil || len(left) > 0 {
			t.Fatalf("start %d: SIGTERM while starting: exit %v, processes left after the server exited:\n%s\nserver log:\n%s",
				i, err, strings.Join(left, "\n"), s.out.String())
		}
	}
}

// TestAppServerFailsToStart: a server whose SSH address is taken exits
// with an error after its recovery has started the live app again; it
// stops that app before it exits.
func TestAppServerFailsToStart(t *testing.T) {
	t.Parallel()
	e := stoppedAppEnv(t)
	ln, err := net.Listen("tcp", e.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := range 10 {
		s := serveRaw(t, e)
		err := s.wait(t)
		left := leftovers(e.Dir)
		if err == nil || !strings.Contains(s.out.String(), "address already in use") || len(left) > 0 {
			t.Fatalf("start %d on a taken address: exit %v, processes left after the server exited:\n%s\nserver log:\n%s",
				i, err, strings.Join(left, "\n"), s.out.String())
		}
	}
}

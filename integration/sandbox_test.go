package integration

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procsWith lists the processes whose command line holds marker.
func procsWith(marker string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if line := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")); err == nil && strings.Contains(line, marker) {
			found = append(found, ent.Name()+": "+line)
		}
	}
	return found
}

// killWith ends what a failing test left behind.
func killWith(marker string) {
	for _, p := range procsWith(marker) {
		if pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0]); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// A deployer's build and health command cannot leave processes behind:
// setsid, a double fork and nohup escape a process group and the
// parent-death signal, not the step's cgroup (issue 13, attack 5: a
// leftover process is what a later attack on the next deploy needs).
func TestStepEscapesDieWithTheStep(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	bob := e.AddKey("bob", "deployer", "hello")
	// Markers no other test's processes carry: sleep lengths from the port.
	mark := func(i int) string { return fmt.Sprintf("%s.%d", e.Port, i) }
	t.Cleanup(func() {
		for i := 1; i <= 4; i++ {
			killWith("sleep " + mark(i))
		}
	})
	// Each escape leaves a file when it runs, so the test knows they ran.
	ran := func(i int) string { return filepath.Join(e.Dir, fmt.Sprintf("escape%d", i)) }
	esc := func(i int) string {
		return fmt.Sprintf("sh -c 'touch %s; exec sleep %s'", ran(i), mark(i))
	}
	// The step waits until its escapes run, so that they surely escaped.
	build := fmt.Sprintf("exec </dev/null >/dev/null 2>&1; setsid %s & (%s &); nohup %s & mkdir -p public; echo ok > public/index.html; until [ -e %s ] && [ -e %s ] && [ -e %s ]; do sleep 0.01; done",
		esc(1), esc(2), esc(3), ran(1), ran(2), ran(3))
	health := fmt.Sprintf("setsid %s </dev/null >/dev/null 2>&1 & until [ -e %s ]; do sleep 0.01; done; test -s public/index.html", esc(4), ran(4))
	e.MustEeveon("site", "add", "hello", "--build", build, "--health-cmd", health)
	repo := e.NewRepo("hello", map[string]string{"README": "v1"})
	if r := repo.Push(bob, "hello"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello") {
		t.Fatalf("push: exit %d\n%s", r.Code, r.Out())
	}
	for i := 1; i <= 4; i++ {
		waitFor(t, 10*time.Second, "escape "+strconv.Itoa(i)+" to have run", func() bool {
			_, err := os.Stat(ran(i))
			return err == nil
		})
	}
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		left = nil
		for i := 1; i <= 4; i++ {
			left = append(left, procsWith("sleep "+mark(i))...)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("processes the build and health command started outlived the deploy:\n%s", strings.Join(left, "\n"))
	}
}

// A push bigger than max_push_size is refused by git with the limit named,
// and stores nothing; a build that floods its output has its log cut at
// max_log_size with a note, and the deploy goes on (issue 13, item 6).
func TestPushAndLogLimits(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.restartWithConfig("[deploy]\nmax_push_size = 1048576\nmax_log_size = 262144\n")
	bob := e.AddKey("bob", "deployer", "hello")
	e.MustEeveon("site", "add", "hello", "--build", "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 3000000; mkdir -p public; echo ok > public/index.html")
	repo := e.NewRepo("hello", map[string]string{"README": "v1"})
	big := make([]byte, 3<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo.Dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	repo.Git("add", "big.bin")
	repo.Git("commit", "-q", "-m", "big")
	r := repo.Push(bob, "hello")
	if r.Code == 0 || !strings.Contains(r.Stderr, "exceeds maximum allowed size") {
		t.Fatalf("a 3 MiB push with max_push_size 1 MiB: exit %d\n%s", r.Code, r.Out())
	}
	if e.serverBranch("hello") != "" || e.Live("hello") != "" {
		t.Fatalf("the refused push left branch %q, live %q", e.serverBranch("hello"), e.Live("hello"))
	}

	repo.Git("reset", "-q", "--hard", "HEAD~1")
	r = repo.Push(bob, "hello", "--force", "main")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: hello") || !strings.Contains(r.Stderr, "output truncated") {
		t.Fatalf("push with a flooding build: exit %d\n%s", r.Code, r.Out()[:min(len(r.Out()), 3000)])
	}
	last := e.lastDeploy("hello")
	fi, err := os.Stat(filepath.Join(e.Data, "deploys", "hello", last.ID+".log"))
	if err != nil || fi.Size() > 300<<10 {
		t.Fatalf("deploy log %v, %v; want it cut near 256 KiB", fi, err)
	}
}

// An app's colour lives in a cgroup that ends when the colour is retired
// and when the server stops: what the app started with setsid does not
// outlive it (a leftover listener could squat the next colour's port).
func TestAppEscapesDieWithTheColour(t *testing.T) {
	t.Parallel()
	appBin := testAppBinary(t)
	e := newAppEnv(t)
	admin := e.AddKey("admin", "admin", "")
	marker := func(v string) string { return fmt.Sprintf("%s.%s", e.Port, v) }
	t.Cleanup(func() { killWith("sleep " + marker("1")); killWith("sleep " + marker("2")) })
	start := "setsid sleep " + e.Port + ".$(cat VERSION) </dev/null >/dev/null 2>&1 & exec " + appBin
	e.MustEeveon("site", "add", "api", "--start", start, "--proxy", "127.0.0.1:"+freePort(t), "--health-path", "/up")
	repo := e.NewRepo("api", map[string]string{"VERSION": "1\n"})
	if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "live: api") {
		t.Fatalf("push v1: exit %d\n%s", r.Code, r.Out())
	}
	if len(procsWith("sleep "+marker("1"))) == 0 {
		t.Fatal("the app's setsid sleep is not running: the test proves nothing")
	}
	repo.Commit("v2", map[string]string{"VERSION": "2\n"})
	if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "drained and stopped the app in blue") {
		t.Fatalf("push v2: exit %d\n%s", r.Code, r.Out())
	}
	if left := procsWith("sleep " + marker("1")); len(left) > 0 {
		t.Fatalf("the retired colour's escape still runs:\n%s", strings.Join(left, "\n"))
	}
	e.Stop()
	if left := procsWith("sleep " + marker("2")); len(left) > 0 {
		t.Fatalf("the live colour's escape outlived the server:\n%s", strings.Join(left, "\n"))
	}
}

// A client of `ssh HOST deploy SITE` that stops reading does not hold the
// deploy or its site's lock (found by an attacker: a SIGSTOPped client
// held the lock until the idle timeout): its output is given up on, the
// deploy finishes by itself and the next push deploys.
func TestVerbClientThatStopsReading(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	bob := e.AddKey("bob", "deployer", "hello")
	e.MustEeveon("site", "add", "hello", "--build", "i=0; while [ $i -lt 20 ]; do yes a-line-of-build-output | head -c 300000; sleep 0.1; i=$((i+1)); done; mkdir -p public; echo \"commit $EEVEON_COMMIT\" > public/index.html")
	repo := e.NewRepo("hello", map[string]string{"README": "v1"})
	if r := repo.Push(bob, "hello"); r.Code != 0 {
		t.Fatalf("first push: %s", r.Out()[:min(len(r.Out()), 500)])
	}
	first := e.lastDeploy("hello").ID
	cmd := exec.Command("ssh", append(e.SSHArgs(bob), "deploy@127.0.0.1", "deploy", "hello")...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard // what it reads, it reads slowly: not at all once stopped
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); pr.Close(); pw.Close() })
	waitFor(t, 20*time.Second, "the redeploy to build", func() bool {
		for _, r := range e.deployRecords("hello") {
			if r.ID != first && r.State == "running" && r.Phase == "building" {
				return true
			}
		}
		return false
	})
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 60*time.Second, "the redeploy to finish without its client", func() bool {
		d := e.lastDeploy("hello")
		return d.ID != first && d.State != "running" && d.State != ""
	})
	if d := e.lastDeploy("hello"); d.State != "live" {
		t.Fatalf("the redeploy ended %s: %s", d.State, d.Error)
	}
	t.Logf("finished %s after its client stopped", time.Since(start).Round(time.Second))
	c2 := repo.Commit("two", map[string]string{"README": "v2"})
	if r := repo.Push(bob, "hello"); r.Code != 0 || !strings.Contains(e.ReadSite("hello", "public/index.html"), c2) {
		t.Fatalf("the next push: exit %d", r.Code)
	}
}

// unifiedCgroup is this test process's own cgroup directory in the cgroup
// v2 hierarchy (the server's subtree lives below it), or "".
func unifiedCgroup() string {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	mount := ""
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		for i, x := range f {
			if x == "-" && i+1 < len(f) && f[i+1] == "cgroup2" && len(f) > 4 {
				mount = f[4]
			}
		}
	}
	cg, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(cg), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && mount != "" {
			return filepath.Join(mount, p)
		}
	}
	return ""
}

// What answers on a new colour's port must be that colour's own app
// (issue 13, attack 4: another site's process bound the port first, was
// health-checked and got the traffic). Here the app moves itself out of
// its colour's cgroup before it listens, as a squatter would be outside:
// the deploy fails and the live colour keeps the traffic.
func TestAppPortMustBeTheColours(t *testing.T) {
	t.Parallel()
	outside := unifiedCgroup()
	if outside == "" || os.Geteuid() != 0 {
		t.Skip("needs root and cgroup v2 to play the squatter")
	}
	appBin := testAppBinary(t)
	e := newAppEnvHealth(t, "3s")
	t.Cleanup(func() { killUnder(e.Dir) })
	admin := e.AddKey("admin", "admin", "")
	start := "if [ -e squat ]; then echo $$ > " + filepath.Join(outside, "cgroup.procs") + "; fi; exec " + appBin
	e.MustEeveon("site", "add", "api", "--start", start, "--proxy", "127.0.0.1:"+freePort(t), "--health-path", "/up")
	repo := e.NewRepo("api", map[string]string{"VERSION": "v1\n"})
	if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "live: api") {
		t.Fatalf("push v1: exit %d\n%s", r.Code, r.Out())
	}
	repo.Commit("squat", map[string]string{"VERSION": "v2\n", "squat": "yes"})
	r := repo.Push(admin, "api")
	if r.Code == 0 || !strings.Contains(r.Stderr, "another process listens there") {
		t.Fatalf("a colour whose port is answered from outside it: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("api") != "blue" {
		t.Fatalf("current -> %q, want blue", e.Live("api"))
	}
}

// killUnder ends the processes whose working directory is below dir (an
// app that left its cgroup is outside everything eeveon ends).
func killUnder(dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", ent.Name(), "cwd")); err == nil && strings.HasPrefix(cwd, dir+"/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

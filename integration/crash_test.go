package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slowBuild renders the page like buildScript; when the commit holds a
// file named slow it also writes its pid to marker and sleeps for secs.
func slowBuild(marker string, secs int) string {
	return fmt.Sprintf(`#!/bin/sh
set -e
mkdir -p public
echo "commit $EEVEON_COMMIT color $EEVEON_COLOR" > public/index.html
if [ -f slow ]; then
	echo $$ > '%[1]s.tmp' && mv '%[1]s.tmp' '%[1]s'
	sleep %[2]d
fi
echo built
`, marker, secs)
}

// processGroup reads the process group of pid from /proc.
func processGroup(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/stat: %v", pid, err)
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	g, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatalf("parse /proc/%d/stat: %v", pid, err)
	}
	return g
}

// groupProcs lists the live (not zombie) processes of process group g.
func groupProcs(g int) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, ent := range ents {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(g) {
			out = append(out, ent.Name()+" "+s[strings.IndexByte(s, '(')+1:i])
		}
	}
	return out
}

// pgrepF lists the processes whose command line contains s.
func pgrepF(s string) string {
	out, _ := exec.Command("pgrep", "-a", "-f", s).Output()
	return strings.TrimSpace(string(out))
}

func TestKillDuringBuildThenRestart(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	marker := filepath.Join(e.Dir, "build.pid")
	token := fmt.Sprintf("eeveon-crash-%d", time.Now().UnixNano())
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh "+token, "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo("hello", map[string]string{"build.sh": slowBuild(marker, 30)})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(admin, "hello"); !strings.Contains(r.Stderr, "live: hello "+c1[:7]+" on blue") {
		t.Fatalf("first push: exit %d\n%s", r.Code, r.Out())
	}
	blue := fileTree(t, filepath.Join(e.SitePath("hello"), "blue"))

	c2 := repo.Commit("slow", map[string]string{"slow": "yes"})
	pushed := make(chan Result, 1)
	go func() { pushed <- repo.Push(admin, "hello") }()
	var pid int
	pollUntil(t, 20*time.Second, "the build to start", func() bool {
		b, err := os.ReadFile(marker)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	group := processGroup(t, pid)
	t.Cleanup(func() { _ = syscall.Kill(-group, syscall.SIGKILL) }) // whatever a failure leaves
	if pgrepF(token) == "" || len(groupProcs(group)) == 0 {
		t.Fatalf("the build is not visible before the kill (pid %d, group %d)", pid, group)
	}

	e.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left, members := pgrepF(token), groupProcs(group)
		if left == "" && len(members) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("5 s after the server was killed the build still runs:\npgrep: %s\nprocess group %d: %q", left, group, members)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case r := <-pushed:
		if r.Code == 0 || strings.Contains(r.Stderr, "live:") {
			t.Errorf("the interrupted push reported success: exit %d\n%s", r.Code, r.Out())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the push did not end after the server was killed")
	}

	e.Start()
	if got := e.Live("hello"); got != "blue" {
		t.Errorf("after the restart current -> %q, want blue", got)
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c1+" color blue\n" {
		t.Errorf("live page after the restart %q", got)
	}
	sameTree(t, "blue", blue, fileTree(t, filepath.Join(e.SitePath("hello"), "blue")))
	last := e.lastDeploy("hello")
	if last.State != "interrupted" || last.Commit != c2 || last.Error != "server stopped during building" {
		t.Errorf("history records %+v, want %s interrupted during building", last, c2)
	}
	for _, r := range e.deployRecords("hello") {
		if r.State == "running" {
			t.Errorf("deploy %s is still recorded as running", r.ID)
		}
	}
	st := e.MustEeveon("status", "hello")
	if !strings.Contains(st.Stdout, "live:     blue "+c1[:7]) || strings.Contains(st.Stdout, "running:") {
		t.Errorf("status after the restart:\n%s", st.Stdout)
	}
	for _, n := range entryNames(e.SitePath("hello")) {
		if strings.HasPrefix(n, ".eeveon-tmp-") || strings.HasPrefix(n, ".current.tmp-") {
			t.Errorf("leftover %s in the site dir", n)
		}
	}

	repo.Git("rm", "-q", "slow")
	c3 := repo.Commit("quick again", nil)
	r := repo.Push(admin, "hello")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c3[:7]+" on green") {
		t.Fatalf("push after the restart: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c3+" color green\n" {
		t.Errorf("live page %q", got)
	}
}

// sigterm sends SIGTERM to the server and returns its exit status and
// how long it took to exit.
func (e *Env) sigterm() (int, time.Duration) {
	e.t.Helper()
	e.mu.Lock()
	cmd, exited := e.server, e.exited
	e.server = nil
	e.mu.Unlock()
	if cmd == nil {
		e.t.Fatal("server is not running")
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		e.t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		e.t.Fatalf("server did not stop on SIGTERM")
	}
	return cmd.ProcessState.ExitCode(), time.Since(start)
}

func TestSIGTERMWaitsForRunningDeploy(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	marker := filepath.Join(e.Dir, "build.pid")
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh")
	repo := e.NewRepo("hello", map[string]string{"build.sh": slowBuild(marker, 2)})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(admin, "hello"); !strings.Contains(r.Stderr, "live: hello "+c1[:7]+" on blue") {
		t.Fatalf("first push: exit %d\n%s", r.Code, r.Out())
	}

	c2 := repo.Commit("slow", map[string]string{"slow": "yes"})
	pushed := make(chan Result, 1)
	go func() { pushed <- repo.Push(admin, "hello") }()
	pollUntil(t, 20*time.Second, "the build to start", func() bool {
		_, err := os.Stat(marker)
		return err == nil
	})
	code, took := e.sigterm()
	if code != 0 {
		t.Errorf("server exited %d after SIGTERM, want 0\n%s", code, e.ServerLog())
	}
	if took < time.Second {
		t.Errorf("server exited %s after SIGTERM, before the 2 s build could finish", took)
	}
	r := <-pushed
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c2[:7]+" on green") {
		t.Errorf("the push during shutdown: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.Live("hello"); got != "green" {
		t.Errorf("current -> %q, want green", got)
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c2+" color green\n" {
		t.Errorf("live page %q", got)
	}
	if last := e.lastDeploy("hello"); last.State != "live" || last.Commit != c2 {
		t.Errorf("history records %+v, want %s live", last, c2)
	}
	if _, err := os.Stat(filepath.Join(e.Data, "eeveon.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

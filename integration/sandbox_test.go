package integration

import (
	"fmt"
	"os"
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
	build := fmt.Sprintf("exec </dev/null >/dev/null 2>&1; setsid sleep %s & (sleep %s &); nohup sleep %s & mkdir -p public; echo ok > public/index.html", mark(1), mark(2), mark(3))
	health := fmt.Sprintf("setsid sleep %s </dev/null >/dev/null 2>&1 & test -s public/index.html", mark(4))
	e.MustEeveon("site", "add", "hello", "--build", build, "--health-cmd", health)
	repo := e.NewRepo("hello", map[string]string{"README": "v1"})
	if r := repo.Push(bob, "hello"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello") {
		t.Fatalf("push: exit %d\n%s", r.Code, r.Out())
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

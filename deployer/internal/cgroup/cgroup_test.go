package cgroup

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func open(t *testing.T) *Manager {
	t.Helper()
	m, err := Open(t.TempDir())
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("not root and no delegated cgroup: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// TestKillEndsEscapes: what a command left behind with setsid, a double
// fork or nohup is in its group, and Kill ends all of it.
func TestKillEndsEscapes(t *testing.T) {
	m := open(t)
	g, err := m.New("build")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "exec >/dev/null 2>&1; setsid sleep 301 & (sleep 302 &) ; nohup sleep 303 &")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g.Attr(cmd.SysProcAttr)
	if err := cmd.Run(); err != nil {
		t.Fatalf("command: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(g.Procs()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("group has %v, want the three sleeps", g.Procs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	pids := g.Procs()
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			b, _ := os.ReadFile("/proc/" + itoa(pid) + "/stat")
			if !strings.Contains(string(b), ") Z ") {
				t.Errorf("pid %d survived its group: %s", pid, b)
			}
		}
	}
	if _, err := os.Stat(g.Path()); !os.IsNotExist(err) {
		t.Errorf("group dir left: %v", err)
	}
}

// TestOpenSweepsLeftovers: a new server of the same data dir ends what a
// killed one left in its groups.
func TestOpenSweepsLeftovers(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(dir)
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("no cgroup: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	g, err := m.New("app-blue")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sleep", "304")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	g.Attr(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover process still runs after Open")
	}
	if _, err := os.Stat(g.Path()); !os.IsNotExist(err) {
		t.Errorf("leftover group not removed: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

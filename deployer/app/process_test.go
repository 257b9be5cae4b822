package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sh runs a shell command as an app with output to a buffer.
func sh(t *testing.T, command string) (*Process, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	p, err := Start(Spec{Command: command, Dir: t.TempDir(), Env: []string{"PATH=/usr/bin:/bin"}, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = KillGroup(p.Pgid(), 0) })
	return p, out
}

// stubborn ignores SIGTERM and has a child that does too.
const stubborn = `trap '' TERM; sleep 100 & echo started; sleep 100`

func waitMembers(t *testing.T, pgid, n int) {
	t.Helper()
	if !eventually(30*time.Second, func() bool { return len(GroupMembers(pgid)) >= n }) {
		t.Fatalf("group %d has %v, want %d members", pgid, GroupMembers(pgid), n)
	}
}

func TestProcessStopKillsAStubbornGroup(t *testing.T) {
	p, out := sh(t, stubborn)
	// supervisor, the app's shell, two sleeps
	waitMembers(t, p.Pgid(), 4)
	if !Alive(p.Pid(), p.Pgid()) {
		t.Fatal("Alive is false for a running app")
	}
	start := time.Now()
	err := p.Stop(context.Background(), 300*time.Millisecond)
	took := time.Since(start)
	if !errors.Is(err, ErrKilled) {
		t.Fatalf("Stop: %v, want ErrKilled", err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Fatalf("Stop took %s, want the 300ms grace and then a prompt kill", took)
	}
	if m := GroupMembers(p.Pgid()); len(m) != 0 {
		t.Fatalf("after Stop the group still has %v", m)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done is open after Stop")
	}
	if err := p.Wait(); err == nil || !strings.Contains(err.Error(), "killed by signal killed") {
		t.Fatalf("Wait: %v, want killed by signal killed", err)
	}
	if Alive(p.Pid(), p.Pgid()) {
		t.Fatal("Alive is true after Stop")
	}
	if !strings.Contains(out.String(), "started") {
		t.Fatalf("output %q lacks the app's line", out)
	}
}

func TestProcessStopIsGracefulForAnAppThatHandlesTerm(t *testing.T) {
	p, b, out := startApp(t, "A")
	start := time.Now()
	if err := p.Stop(context.Background(), 5*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a graceful stop took %s", took)
	}
	if !strings.Contains(out.String(), "stopping on SIGTERM") {
		t.Fatalf("the app did not see SIGTERM; log:\n%s", out)
	}
	if err := p.Wait(); err != nil || p.ExitCode() != 0 {
		t.Fatalf("Wait: %v, exit code %d; want a clean exit", err, p.ExitCode())
	}
	if !PortFree(b.Port()) {
		t.Fatalf("port %d is still taken after Stop", b.Port())
	}
}

// SIGTERM's default action must reach a program that does not handle it:
// the supervisor must not leave TERM ignored for its child.
func TestProcessStopTermsAPlainProgram(t *testing.T) {
	p, _ := sh(t, "sleep 100")
	waitMembers(t, p.Pgid(), 2)
	// Two members may be the supervisor and its child before the child
	// became sleep (still running the supervisor's trap code): wait for
	// the exec, or a SIGTERM in between never reaches sleep.
	if !eventually(30*time.Second, func() bool {
		for _, pid := range GroupMembers(p.Pgid()) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(b)) == "sleep" {
				return true
			}
		}
		return false
	}) {
		t.Fatal("sleep never started")
	}
	if err := p.Stop(context.Background(), 3*time.Second); err != nil {
		t.Fatalf("Stop: %v, want sleep to die of SIGTERM", err)
	}
	if err := p.Wait(); err == nil || err.Error() != "killed by signal terminated" {
		t.Fatalf("Wait: %v, want killed by signal terminated", err)
	}
}

func TestProcessExitReportsStatusAndLeavesNothing(t *testing.T) {
	p, out := sh(t, `sleep 100 & echo bye; exit 3`)
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("no exit")
	}
	if err := p.Wait(); err == nil || err.Error() != "exited with status 3" || p.ExitCode() != 3 {
		t.Fatalf("Wait: %v (code %d), want exited with status 3", err, p.ExitCode())
	}
	if m := GroupMembers(p.Pgid()); len(m) != 0 {
		t.Fatalf("the background sleep survived: %v", m)
	}
	if got := out.String(); got != "bye\n" {
		t.Fatalf("output %q, want %q", got, "bye\n")
	}
}

func TestProcessEnvAndDir(t *testing.T) {
	t.Setenv("EEVEON_LEAK", "leaked")
	dir := t.TempDir()
	out := &syncBuffer{}
	p, err := Start(Spec{Command: `echo "$PORT $(pwd) $EEVEON_LEAK"`, Dir: dir, Env: []string{"PORT=4242"}, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if want := "4242 " + dir + " \n"; out.String() != want { // nothing from the server's env
		t.Fatalf("output %q, want %q", out, want)
	}
	if _, err := Start(Spec{Command: "true", Dir: dir + "/missing"}); err == nil {
		t.Fatal("Start in a missing dir succeeded")
	}
}

// The server dies by SIGKILL without stopping its app: the parent-death
// signal makes the supervisor stop the whole group, even parts that
// ignore SIGTERM.
func TestProcessDiesWithTheServer(t *testing.T) {
	server := exec.Command(testApp, "spawn", stubborn, "300ms")
	server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := server.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("spawn: %v", err)
	}
	var pgid int
	if _, err := fmt.Sscanf(line, "pgid %d", &pgid); err != nil {
		t.Fatalf("spawn said %q", line)
	}
	t.Cleanup(func() { _ = KillGroup(pgid, 0) })
	waitMembers(t, pgid, 4)
	if !Alive(pgid, pgid) {
		t.Fatal("Alive is false for the spawned app")
	}

	if err := server.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = server.Wait()
	if !eventually(30*time.Second, func() bool { return len(GroupMembers(pgid)) == 0 }) {
		t.Fatalf("30s after the server died its app's group still has %v", GroupMembers(pgid))
	}
}

func TestAliveAndKillGroup(t *testing.T) {
	if Alive(os.Getpid(), syscall.Getpgrp()) {
		t.Fatal("Alive vouches for a process this package did not start")
	}
	if Alive(1<<22+1, 1<<22+1) {
		t.Fatal("Alive vouches for a pid that does not exist")
	}
	// A group left behind by a dead server: not our child, ignores TERM.
	cmd := exec.Command("/bin/sh", "-c", stubborn)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	waitMembers(t, pgid, 3)
	if Alive(pgid, pgid) {
		t.Fatal("Alive vouches for a shell without the marker")
	}
	start := time.Now()
	if err := KillGroup(pgid, 200*time.Millisecond); err != nil {
		t.Fatalf("KillGroup: %v", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("KillGroup took %s; a group that ignores TERM needs the grace first", took)
	}
	if m := GroupMembers(pgid); len(m) != 0 {
		t.Fatalf("after KillGroup the group still has %v", m)
	}
	if err := KillGroup(pgid, 0); err != nil {
		t.Fatalf("KillGroup of a gone group: %v", err)
	}
	for _, bad := range []int{0, 1, syscall.Getpgrp()} {
		if err := KillGroup(bad, 0); err == nil {
			t.Fatalf("KillGroup(%d) was not refused", bad)
		}
	}
}

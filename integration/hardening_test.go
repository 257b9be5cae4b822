package integration

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file checks, with the real OpenSSH client, that the embedded SSH
// server is nothing but the command surface and git: the identity is the
// key that signed, not one merely offered; there is no pty, shell,
// environment, forwarding of any kind, agent, X11 or subsystem; only public
// keys authenticate; the command line is never a shell's; and the limits
// (command length, failed logins, sessions) hold.

// hdOutput collects a background command's output; safe to read while
// the command writes.
type hdOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *hdOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *hdOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// hdBackground starts a client that the test ends itself, by its pid.
func hdBackground(t *testing.T, env []string, name string, args ...string) (*exec.Cmd, *hdOutput) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &hdOutput{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, out
}

// TestHardenOfferedKeyIsNotIdentity: a client may offer the admin's public
// key (the server answers that it would accept it) and then sign in with
// the deployer key. The session is the deployer's.
func TestHardenOfferedKeyIsNotIdentity(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	bob := e.AddKey("bob", "deployer", "web")
	e.MustEeveon("site", "add", "web", "--build", "true")
	adminFP, bobFP := rbFingerprint(t, admin), rbFingerprint(t, bob)

	// Only the admin's public key, with no private key beside it:
	// OpenSSH offers it, hears "acceptable", then cannot sign with it and
	// goes on to the next identity.
	pubOnly := filepath.Join(e.Dir, "stolen", "admin.pub")
	if err := os.MkdirAll(filepath.Dir(pubOnly), 0o700); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(admin + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubOnly, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	// The stolen public key first, then bob's own key.
	offerThenSign := func(extra []string, command ...string) Result {
		args := append(e.SSHArgs(pubOnly), "-i", bob)
		args = append(append(args, extra...), "deploy@127.0.0.1")
		return run(t, e.Dir, nil, "", "ssh", append(args, command...)...)
	}

	r := offerThenSign([]string{"-v"}, "whoami")
	if r.Code != 0 || r.Stdout != "user bob, role deployer, sites web, key "+bobFP+"\n" {
		t.Fatalf("whoami after offering the admin key: exit %d\nstdout %q\n%s", r.Code, r.Stdout, r.Stderr)
	}
	// The admin key really was offered first and accepted as a candidate.
	offered := regexp.MustCompile(`(?m)^debug1: Offering public key: ` + regexp.QuoteMeta(pubOnly) + ` ED25519 ` + regexp.QuoteMeta(adminFP) + ` `)
	accepted := regexp.MustCompile(`(?m)^debug1: Server accepts key: ` + regexp.QuoteMeta(pubOnly) + ` ED25519 ` + regexp.QuoteMeta(adminFP) + ` `)
	signed := regexp.MustCompile(`(?m)^debug1: Server accepts key: ` + regexp.QuoteMeta(bob) + ` ED25519 ` + regexp.QuoteMeta(bobFP) + ` `)
	if !offered.MatchString(r.Stderr) || !accepted.MatchString(r.Stderr) || !signed.MatchString(r.Stderr) {
		t.Fatalf("ssh -v does not show the admin key offered and accepted, then bob's:\n%s", r.Stderr)
	}
	if i, j := accepted.FindStringIndex(r.Stderr), signed.FindStringIndex(r.Stderr); i[0] > j[0] {
		t.Errorf("bob's key was tried before the admin's:\n%s", r.Stderr)
	}
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.Contains(l, "Load key") {
			t.Logf("observed: %s", l)
		}
	}

	r = offerThenSign(rbQuiet, "rollback", "web")
	// ssh prints its failure to load the private key whatever LogLevel.
	serverSaid := regexp.MustCompile(`(?m)^Load key .*\r?\n`).ReplaceAllString(r.Stderr, "")
	if r.Code != 1 || r.Stdout != "" || serverSaid != "eeveon: permission denied: deployer may not rollback web\n" {
		t.Errorf("rollback after offering the admin key: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if _, ok := rbFindAudit(e.rbAudit(), func(ev rbAuditEvent) bool {
		return ev.Command == "rollback web" && ev.User == "bob" && ev.Fingerprint == bobFP && ev.Outcome == "denied"
	}); !ok {
		t.Errorf("the refused rollback is not in the audit log as bob's")
	}
	for _, ev := range e.rbAudit() {
		if ev.User == "alice" || ev.Fingerprint == adminFP {
			t.Errorf("the audit log credits the admin: %+v", ev)
		}
	}
}

// TestHardenNoPtyNoShell: a pty is refused; a shell request gets the help
// text and a non-zero exit, never a shell.
func TestHardenNoPtyNoShell(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")

	// -tt forces a pty; OpenSSH treats the refusal as fatal for the
	// session (exit 255) because the pty was explicitly required.
	r := e.rbSSH(admin, []string{"-tt"}, "whoami")
	if r.Code == 0 || !strings.Contains(r.Out(), "PTY allocation request failed") {
		t.Errorf("ssh -tt: exit %d\n%s", r.Code, r.Out())
	}

	// A shell request without a pty: help on stderr, exit 1.
	r = e.rbSSH(admin, rbQuiet)
	if r.Code != 1 || r.Stdout != "" || !strings.Contains(r.Stderr, "There is no shell here") ||
		!strings.HasSuffix(r.Stderr, "eeveon: no shell here; run one of the commands above, e.g. ssh HOST status\n") {
		t.Errorf("shell request: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// A blank command is no command: the same answer as in OpenSSH mode.
	if r := e.SSH(admin, "   "); r.Code != 1 || !strings.Contains(r.Stderr, "eeveon: no shell here") {
		t.Errorf("blank command: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if _, ok := rbFindAudit(e.rbAudit(), func(ev rbAuditEvent) bool {
		return ev.User == "alice" && ev.Command == "shell" && ev.Outcome == "denied"
	}); !ok {
		t.Errorf("the shell request is not in the audit log")
	}

	// An interactive login from a terminal (script(1) gives ssh one):
	// the client asks for a pty, is refused, and gets the help, not a
	// shell, even though it then types a command.
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) not installed")
	}
	line := "ssh " + strings.Join(append(e.SSHArgs(admin), "deploy@127.0.0.1"), " ")
	r = run(t, e.Dir, nil, "id; echo SHELL-$((6*7))\n", "script", "-qec", line, "/dev/null")
	out := r.Out()
	if r.Code != 1 || !strings.Contains(out, "PTY allocation request failed") || !strings.Contains(out, "There is no shell here") ||
		strings.Contains(out, "uid=") || strings.Contains(out, "SHELL-42") {
		t.Errorf("interactive login: exit %d\n%s", r.Code, out)
	}
}

// TestHardenEnvIgnored: environment requests change nothing.
func TestHardenEnvIgnored(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	r := e.rbSSH(admin, []string{"-v", "-o", "SetEnv=FOO=bar EEVEON_HOOK_USER=mallory EEVEON_HOOK_ROLE=admin", "-o", "SendEnv=LANG"}, "whoami")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "user alice, role admin") || strings.Contains(r.Stdout, "FOO") || strings.Contains(r.Stdout, "bar") {
		t.Fatalf("whoami with SetEnv: exit %d\n%s", r.Code, r.Out())
	}
	if !strings.Contains(r.Stderr, `setting env FOO = "bar"`) {
		t.Fatalf("ssh did not send the variable:\n%s", r.Stderr)
	}
	if strings.Contains(e.ServerLog(), "FOO") {
		t.Errorf("the server log mentions FOO:\n%s", e.ServerLog())
	}

	// Nor can a pusher pose as someone else to the deploy hook, which
	// learns the pusher from its environment.
	bob := e.AddKey("bob", "deployer", "web")
	e.MustEeveon("site", "add", "web", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo("web", map[string]string{"build.sh": buildScript})
	sshCmd := e.GitSSH(bob) + " -v -o SetEnv=EEVEON_HOOK_USER=mallory\\ EEVEON_HOOK_ROLE=admin\\ EEVEON_HOOK_SITES=web"
	r = run(t, repo.Dir, []string{sshCmd}, "", "git", "push", e.URL("web"), "main")
	var remote []string
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.HasPrefix(l, "remote: ") {
			remote = append(remote, l)
		}
	}
	said := strings.Join(remote, "\n")
	if r.Code != 0 || !strings.Contains(said, " by bob") || strings.Contains(said, "mallory") {
		t.Fatalf("push with SetEnv: exit %d\n%s", r.Code, r.Out())
	}
	if !strings.Contains(r.Stderr, `setting env EEVEON_HOOK_USER = "mallory"`) {
		t.Fatalf("ssh did not send the variables:\n%s", r.Stderr)
	}
	for _, ev := range e.rbAudit() {
		if ev.User == "mallory" || (ev.User == "bob" && ev.Role != "deployer") {
			t.Errorf("audit line from the client's environment: %+v", ev)
		}
	}
}

// TestHardenNoForwarding: local, remote and stdio forwarding are refused.
func TestHardenNoForwarding(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")

	// -L: the local listener is the client's, but every channel it
	// opens is refused; the forwarded connection is closed without a byte
	// of the target (here the SSH server itself, which would greet).
	local := freePort(t)
	args := append(e.SSHArgs(admin), "-N", "-o", "ExitOnForwardFailure=yes", "-L", "127.0.0.1:"+local+":127.0.0.1:"+e.Port, "deploy@127.0.0.1")
	_, out := hdBackground(t, nil, "ssh", args...)
	var conn net.Conn
	rbWaitFor(t, 10*time.Second, "the -L listener", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+local, time.Second)
		if err != nil {
			return false
		}
		conn = c
		return true
	})
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || len(got) != 0 {
		t.Errorf("through -L: read %q, %v (want the connection closed with nothing)", got, err)
	}
	rbWaitFor(t, 5*time.Second, "the client's report of the refused channel", func() bool {
		return strings.Contains(out.String(), "open failed")
	})

	// -W: a stdio forward (direct-tcpip) fails.
	r := e.rbSSH(admin, []string{"-W", "127.0.0.1:" + e.Port})
	if r.Code != 255 || strings.Contains(r.Stdout, "SSH-2.0") || !strings.Contains(r.Stderr, "stdio forwarding failed") {
		t.Errorf("ssh -W: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}

	// -R: the server will not listen for us, dynamic port or fixed.
	for _, spec := range []string{"0:127.0.0.1:22", "127.0.0.1:" + freePort(t) + ":127.0.0.1:22"} {
		r = e.rbSSH(admin, []string{"-o", "ExitOnForwardFailure=yes", "-R", spec}, "whoami")
		if r.Code != 255 || !strings.Contains(r.Stderr, "remote port forwarding failed") || strings.Contains(r.Stdout, "user alice") {
			t.Errorf("ssh -R %s: exit %d\nstdout %q\nstderr %q", spec, r.Code, r.Stdout, r.Stderr)
		}
	}
}

// TestHardenNoAgentNoX11: agent and X11 forwarding are refused.
func TestHardenNoAgentNoX11(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")

	// A real agent holding the admin key, forwarded with -A. OpenSSH
	// sends auth-agent-req@openssh.com without asking for a reply, so the
	// client cannot print the refusal; what shows is that the server never
	// opens an agent channel back to us.
	sock := filepath.Join(e.Dir, "agent.sock")
	hdBackground(t, nil, "ssh-agent", "-D", "-a", sock)
	rbWaitFor(t, 10*time.Second, "ssh-agent", func() bool { _, err := os.Stat(sock); return err == nil })
	if r := run(t, e.Dir, []string{"SSH_AUTH_SOCK=" + sock}, "", "ssh-add", "-q", admin); r.Code != 0 {
		t.Fatalf("ssh-add: %s", r.Out())
	}
	args := append(e.SSHArgs(admin), "-v", "-A", "deploy@127.0.0.1", "whoami")
	r := run(t, e.Dir, []string{"SSH_AUTH_SOCK=" + sock}, "", "ssh", args...)
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "user alice") {
		t.Fatalf("ssh -A whoami: exit %d\n%s", r.Code, r.Out())
	}
	if !strings.Contains(r.Stderr, "Requesting authentication agent forwarding") {
		t.Fatalf("ssh -A did not request agent forwarding:\n%s", r.Stderr)
	}
	if strings.Contains(r.Stderr, "auth-agent@openssh.com") {
		t.Errorf("the server opened an agent channel:\n%s", r.Stderr)
	}

	// X11: OpenSSH asks for a reply and reports the refusal.
	args = append(e.SSHArgs(admin), "-v", "-X", "deploy@127.0.0.1", "whoami")
	r = run(t, e.Dir, []string{"DISPLAY=:99", "XAUTHORITY=" + filepath.Join(e.Dir, "no-xauthority")}, "", "ssh", args...)
	if !strings.Contains(r.Stderr, "Requesting X11 forwarding") || !strings.Contains(r.Stderr, "X11 forwarding request failed on channel 0") {
		t.Errorf("ssh -X: exit %d\n%s", r.Code, r.Out())
	}
	if strings.Contains(r.Stderr, "ctype x11") {
		t.Errorf("the server opened an X11 channel:\n%s", r.Stderr)
	}
}

// TestHardenNoSubsystem: no sftp or any other subsystem.
func TestHardenNoSubsystem(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	r := e.rbSSH(admin, []string{"-s"}, "sftp")
	if r.Code == 0 || !strings.Contains(r.Stderr, "subsystem request failed") || r.Stdout != "" {
		t.Errorf("ssh -s sftp: exit %d\n%s", r.Code, r.Out())
	}
	if _, err := exec.LookPath("sftp"); err != nil {
		t.Skip("sftp not installed")
	}
	args := []string{"-F", "/dev/null", "-i", admin, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + filepath.Join(e.Dir, "known_hosts"), "-o", "StrictHostKeyChecking=accept-new",
		"-P", e.Port, "deploy@127.0.0.1"}
	r = run(t, e.Dir, nil, "ls /\n", "sftp", args...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "subsystem request failed") || strings.Contains(r.Stdout, "sftp>") {
		t.Errorf("sftp: exit %d\n%s", r.Code, r.Out())
	}
}

// TestHardenPublicKeyOnly: neither passwords nor keyboard-interactive are
// offered.
func TestHardenPublicKeyOnly(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	r := e.rbSSH(admin, []string{"-v", "-o", "PubkeyAuthentication=no", "-o", "PasswordAuthentication=yes",
		"-o", "KbdInteractiveAuthentication=yes", "-o", "PreferredAuthentications=password,keyboard-interactive"}, "whoami")
	if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied (publickey).") || strings.Contains(r.Stdout, "user") {
		t.Fatalf("password login: exit %d\n%s", r.Code, r.Out())
	}
	if !regexp.MustCompile(`Authentications that can continue: publickey\r?\n`).MatchString(r.Stderr) {
		t.Errorf("the server offers more than publickey:\n%s", r.Stderr)
	}
	for _, m := range []string{"Next authentication method: password", "Next authentication method: keyboard-interactive"} {
		if strings.Contains(r.Stderr, m) {
			t.Errorf("the client could try %q:\n%s", m, r.Stderr)
		}
	}
}

// TestHardenShellMetacharacters: a command line is split without a
// shell; metacharacters are refused outright.
func TestHardenShellMetacharacters(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "web", "--build", "true")
	marker := filepath.Join(e.Dir, "pwned")
	for _, line := range []string{
		"status web; id",
		"status $(id)",
		"status `id`",
		"status web | cat",
		"status web && id",
		"status web > " + marker,
		"status web\nid",
	} {
		r := e.rbSSH(admin, rbQuiet, line)
		want := "eeveon: bad command line: shell metacharacter"
		if strings.Contains(line, "\n") {
			want = "eeveon: bad command line: control character"
		}
		if r.Code != 2 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, want) || strings.Contains(r.Out(), "uid=") {
			t.Errorf("%q: exit %d\nstdout %q\nstderr %q", line, r.Code, r.Stdout, r.Stderr)
		}
	}
	// Quoted, the characters are part of a word, which is no site name.
	r := e.rbSSH(admin, rbQuiet, "status 'web; id'")
	if r.Code == 0 || strings.Contains(r.Out(), "uid=") || !strings.Contains(r.Stderr, "site") {
		t.Errorf("quoted metacharacters: exit %d\n%s", r.Code, r.Out())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("a redirection created %s", marker)
	}
}

// TestHardenMaxCommandLength: a command longer than max_command_length
// (4096) is refused before it is parsed.
func TestHardenMaxCommandLength(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	long := "status " + strings.Repeat("a", 5000-len("status "))
	r := e.rbSSH(admin, rbQuiet, long)
	if r.Code != 2 || r.Stdout != "" || r.Stderr != "eeveon: bad command line: longer than 4096 bytes\n" {
		t.Errorf("5000-byte command: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// Just under the limit the line is parsed: the error is about the
	// site name, not the length.
	r = e.rbSSH(admin, rbQuiet, long[:4096])
	if r.Code == 0 || strings.Contains(r.Stderr, "longer than") {
		t.Errorf("4096-byte command: exit %d\n%s", r.Code, r.Out())
	}
}

// TestHardenAuthRateLimit: after auth_failures_per_minute failed logins
// from an address, even a valid key from that address is refused (the
// connection is closed before the SSH handshake); other addresses are not
// affected.
func TestHardenAuthRateLimit(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	stranger := e.NewKey("mallory")
	e.restartWithConfig("[ssh]\nauth_failures_per_minute = 3\n")

	if r := e.SSH(admin, "whoami"); r.Code != 0 {
		t.Fatalf("valid login before any failure: exit %d\n%s", r.Code, r.Out())
	}
	for i := 1; i <= 3; i++ {
		r := e.SSH(stranger, "whoami")
		if r.Code != 255 || strings.Contains(r.Stdout, "user") {
			t.Fatalf("unknown key, try %d: exit %d\n%s", i, r.Code, r.Out())
		}
		if i == 1 && !strings.Contains(r.Stderr, "Permission denied (publickey)") {
			t.Errorf("unknown key, try 1, was not refused by authentication:\n%s", r.Stderr)
		}
		t.Logf("unknown key, try %d: %s", i, strings.TrimSpace(r.Stderr))
	}
	r := e.SSH(admin, "whoami")
	if r.Code != 255 || strings.Contains(r.Stdout, "user alice") ||
		!(strings.Contains(r.Stderr, "Connection closed") || strings.Contains(r.Stderr, "Connection reset")) {
		t.Fatalf("valid key after 3 failures: exit %d\n%s", r.Code, r.Out())
	}
	if !strings.Contains(e.ServerLog(), "refusing connection: too many failed logins") {
		t.Errorf("the server log does not say why:\n%s", e.ServerLog())
	}
	// The count is per source address: 127.0.0.2 is still welcome.
	r = e.rbSSH(admin, []string{"-b", "127.0.0.2"}, "whoami")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "user alice") {
		t.Errorf("valid key from 127.0.0.2: exit %d\n%s", r.Code, r.Out())
	}
}

// TestHardenAuthRateLimitCountsOnlyLogins: connections that never try to
// log in (a TCP health check, a port probe) are not failed logins.
func TestHardenAuthRateLimitCountsOnlyLogins(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.restartWithConfig("[ssh]\nauth_failures_per_minute = 3\n")
	for i := 0; i < 3; i++ {
		c, err := net.DialTimeout("tcp", e.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	time.Sleep(200 * time.Millisecond) // let the server see the closes
	if r := e.SSH(admin, "whoami"); r.Code != 0 {
		t.Errorf("valid login after 3 bare TCP connects: exit %d\n%s", r.Code, r.Out())
	}
}

// TestHardenMaxSessions: with max_sessions = 1, a second session while a
// push is deploying is turned away with a clear message.
func TestHardenMaxSessions(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.restartWithConfig("[ssh]\nmax_sessions = 1\n")
	e.MustEeveon("site", "add", "slow", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	started := filepath.Join(e.Dir, "build-started")
	repo := e.NewRepo("slow", map[string]string{"build.sh": "#!/bin/sh\nset -e\ntouch " + started +
		"\nsleep 3\nmkdir -p public\necho ok > public/index.html\n"})

	// The push holds the only session for as long as the deploy runs.
	push := exec.Command("git", "push", e.URL("slow"), "main")
	push.Dir = repo.Dir
	push.Env = append(os.Environ(), e.GitSSH(admin))
	pushOut := &hdOutput{}
	push.Stdout, push.Stderr = pushOut, pushOut
	push.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	push.WaitDelay = time.Second
	if err := push.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var pushErr error
	go func() { pushErr = push.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = syscall.Kill(-push.Process.Pid, syscall.SIGKILL) // git and its ssh
			<-done
		}
	})
	rbWaitFor(t, 15*time.Second, "the build to start", func() bool {
		select {
		case <-done:
			t.Fatalf("the push ended before the build started: %v\n%s", pushErr, pushOut.String())
		default:
		}
		_, err := os.Stat(started)
		return err == nil
	})

	r := e.rbSSH(admin, rbQuiet, "whoami")
	if r.Code != 1 || r.Stdout != "" || r.Stderr != "eeveon: too many sessions; try again shortly\n" {
		t.Errorf("second session during the push: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}

	select {
	case <-done:
		if pushErr != nil || !strings.Contains(pushOut.String(), "live: slow") {
			t.Fatalf("the push: %v\n%s", pushErr, pushOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the push did not finish:\n%s", pushOut.String())
	}
	// The slot is free again.
	if r := e.SSH(admin, "whoami"); r.Code != 0 {
		t.Errorf("whoami after the push: exit %d\n%s", r.Code, r.Out())
	}
}

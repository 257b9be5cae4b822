package integration

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshd is a real OpenSSH server started by the test on a free loopback
// port, with its own config, host key and authorized_keys file.
type sshd struct {
	Port, AuthorizedKeys, User string
	dir                        string
}

func startSSHD(t *testing.T, e *Env) *sshd {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		if p, err := exec.LookPath("sshd"); err == nil {
			bin = p
		} else {
			t.Skip("OpenSSH sshd is not installed (apt-get install openssh-server; .ci/run does)")
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s := &sshd{Port: freePort(t), dir: filepath.Join(e.Dir, "sshd"), User: u.Username}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.AuthorizedKeys = filepath.Join(s.dir, "authorized_keys")
	if r := run(t, s.dir, nil, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(s.dir, "host_key")); r.Code != 0 {
		t.Fatal(r.Out())
	}
	if os.Getuid() == 0 {
		_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	}
	cfg := strings.Join([]string{
		"Port " + s.Port, "ListenAddress 127.0.0.1", "HostKey " + filepath.Join(s.dir, "host_key"),
		"PidFile " + filepath.Join(s.dir, "sshd.pid"), "AuthorizedKeysFile " + s.AuthorizedKeys,
		"StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
		"PermitRootLogin forced-commands-only", "UsePAM no", "LogLevel VERBOSE", "AcceptEnv GIT_PROTOCOL",
	}, "\n") + "\n"
	cfgPath := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Skipf("sshd cannot run here: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			t.Skipf("sshd exited at start (cannot run here):\n%s", log.String())
		default:
		}
		if c, err := net.Dial("tcp", "127.0.0.1:"+s.Port); err == nil {
			c.Close()
			return s
		}
	}
	t.Fatalf("sshd did not start:\n%s", log.String())
	return nil
}

func (s *sshd) args(e *Env, key string) []string {
	return []string{
		"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + filepath.Join(s.dir, "known_hosts"), "-o", "StrictHostKeyChecking=accept-new",
		"-p", s.Port,
	}
}

func (s *sshd) ssh(t *testing.T, e *Env, key string, extra ...string) Result {
	t.Helper()
	args := append(s.args(e, key), extra...)
	return run(t, e.Dir, nil, "", "ssh", args...)
}

func TestOpenSSHForcedCommand(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	s := startSSHD(t, e)
	admin, deployer := e.NewKey("alice"), e.NewKey("bob")
	e.MustEeveon("keys", "add", "--openssh", "--authorized-keys", s.AuthorizedKeys, "--user", "alice", "--role", "admin", admin+".pub")
	e.MustEeveon("keys", "add", "--openssh", "--authorized-keys", s.AuthorizedKeys, "--user", "bob", "--role", "deployer", "--sites", "hello", deployer+".pub")
	ak, _ := os.ReadFile(s.AuthorizedKeys)
	if !strings.Contains(string(ak), "# BEGIN eeveon") || !strings.Contains(string(ak), ",restrict ") {
		t.Fatalf("authorized_keys lacks the managed block or restrict:\n%s", ak)
	}
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")

	url := "ssh://" + s.User + "@127.0.0.1:" + s.Port + "/hello"
	gitSSH := "GIT_SSH_COMMAND=ssh " + strings.Join(s.args(e, deployer)[:len(s.args(e, deployer))-2], " ")
	r := run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c1[:7]+" on blue") {
		t.Fatalf("push through OpenSSH: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("hello") != "blue" {
		t.Fatalf("current -> %q", e.Live("hello"))
	}
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	if r := run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main"); r.Code != 0 || e.Live("hello") != "green" {
		t.Fatalf("second push: exit %d, live %q\n%s", r.Code, e.Live("hello"), r.Out())
	}

	// The same command surface and permission table as the embedded server.
	if r := s.ssh(t, e, deployer, "127.0.0.1", "whoami"); r.Code != 0 || !strings.Contains(r.Stdout, "user bob, role deployer, sites hello") {
		t.Fatalf("whoami: exit %d\n%s", r.Code, r.Out())
	}
	if r := s.ssh(t, e, deployer, "127.0.0.1", "status", "hello"); r.Code != 0 || !strings.Contains(r.Stdout, "green "+c2[:7]) {
		t.Fatalf("status: exit %d\n%s", r.Code, r.Out())
	}
	r = s.ssh(t, e, deployer, "127.0.0.1", "rollback", "hello")
	if r.Code == 0 || !strings.Contains(r.Stderr, "eeveon: permission denied: deployer may not rollback hello") {
		t.Fatalf("deployer rollback through OpenSSH: exit %d\n%s", r.Code, r.Out())
	}
	if r := s.ssh(t, e, admin, "127.0.0.1", "rollback", "hello"); r.Code != 0 || e.Live("hello") != "blue" {
		t.Fatalf("admin rollback through OpenSSH: exit %d, live %q\n%s", r.Code, e.Live("hello"), r.Out())
	}

	// Approvals through OpenSSH: refused for a deployer, done by an admin.
	e.MustEeveon("site", "set", "hello", "--approval")
	c4 := repo.Commit("four", map[string]string{"x": "4"})
	r = run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main")
	if r.Code != 0 || !strings.Contains(r.Stderr, "awaiting approval") {
		t.Fatalf("push to an approval site through OpenSSH: exit %d\n%s", r.Code, r.Out())
	}
	r = s.ssh(t, e, deployer, "127.0.0.1", "approve", "hello")
	if r.Code == 0 || !strings.Contains(r.Stderr, "eeveon: permission denied: deployer may not approve hello") {
		t.Fatalf("deployer approve through OpenSSH: exit %d\n%s", r.Code, r.Out())
	}
	if r := s.ssh(t, e, admin, "127.0.0.1", "approve", "hello"); r.Code != 0 || !strings.Contains(r.Stdout, "live: hello "+c4[:7]) {
		t.Fatalf("admin approve through OpenSSH: exit %d\n%s", r.Code, r.Out())
	}
	e.MustEeveon("site", "set", "hello", "--approval=false")

	// No shell, no pty, no shell metacharacters.
	r = s.ssh(t, e, admin, "-T", "127.0.0.1")
	if r.Code == 0 || !strings.Contains(r.Out(), "no shell here") {
		t.Fatalf("shell through OpenSSH: exit %d\n%s", r.Code, r.Out())
	}
	r = s.ssh(t, e, admin, "-tt", "127.0.0.1", "tty")
	if r.Code == 0 || strings.Contains(r.Stdout, "/dev/pts") {
		t.Fatalf("a pty was allocated: exit %d\n%s", r.Code, r.Out())
	}
	r = s.ssh(t, e, admin, "127.0.0.1", "status hello; id")
	if r.Code == 0 || strings.Contains(r.Out(), "uid=") || !strings.Contains(r.Stderr, "shell metacharacter") {
		t.Fatalf("metacharacters: exit %d\n%s", r.Code, r.Out())
	}

	// A push while the daemon is down is refused (nothing went live) and
	// kept; pushing again once the daemon runs deploys it.
	liveBefore := e.Live("hello")
	e.Stop()
	c3 := repo.Commit("three", map[string]string{"x": "3"})
	r = run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main")
	if r.Code == 0 || !strings.Contains(r.Stderr, "the eeveon server is not running") || !strings.Contains(r.Stderr, "eeveon deploy hello --ref "+c3) {
		t.Fatalf("push with the daemon down: exit %d\n%s", r.Code, r.Out())
	}
	bare := filepath.Join(e.Data, "repos", "hello.git")
	if got := strings.TrimSpace(run(t, e.Dir, nil, "", "git", "--git-dir", bare, "rev-parse", "refs/eeveon/pushed").Stdout); got != c3 {
		t.Fatalf("the push was not kept: refs/eeveon/pushed is %s, want %s", got, c3)
	}
	if e.Live("hello") != liveBefore {
		t.Fatal("a push with the daemon down changed current")
	}
	e.Start()
	if r := run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c3[:7]) {
		t.Fatalf("push again after restart: exit %d\n%s", r.Code, r.Out())
	}
}

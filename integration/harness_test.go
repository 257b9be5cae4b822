// Package integration drives the built eeveon binary end to end with the
// real git and OpenSSH clients, against a server on a free loopback port
// with its data in a temp dir.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin is the eeveon binary built once for the whole run.
var bin string

func TestMain(m *testing.M) {
	for _, tool := range []string{"git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "integration tests need %s on PATH: %v\n", tool, err)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "eeveon-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "eeveon")
	build := exec.Command("go", "build", "-o", bin, "../cmd/eeveon")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build eeveon:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Env is one server with its data dir, keys and clients.
type Env struct {
	t    testing.TB
	Dir  string // the test's temp dir
	Data string // the data dir
	Addr string // SSH address host:port
	Port string

	mu     sync.Mutex
	server *exec.Cmd
	log    *bytes.Buffer
	exited chan struct{}
	keys   map[string]string // user -> private key file
}

// NewEnv initialises a data dir and starts a server on a free port. The
// server is stopped when the test ends.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	dir := t.TempDir()
	e := &Env{t: t, Dir: dir, Data: filepath.Join(dir, "data"), keys: map[string]string{}}
	e.Port = freePort(t)
	e.Addr = "127.0.0.1:" + e.Port
	e.MustEeveon("init")
	e.Start()
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("server log:\n%s", e.ServerLog())
		}
	})
	return e
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// Start runs `eeveon serve` and waits until it accepts connections.
func (e *Env) Start() {
	e.t.Helper()
	e.mu.Lock()
	cmd := exec.Command(bin, "serve", "--data", e.Data, "--listen", e.Addr)
	if e.log == nil {
		e.log = &bytes.Buffer{}
	}
	w := &lockedWriter{mu: &e.mu, w: e.log}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.mu.Unlock()
		e.t.Fatalf("start server: %v", err)
	}
	e.server = cmd
	exited := make(chan struct{})
	e.exited = exited
	e.mu.Unlock()
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", e.Addr, time.Second)
		if err == nil {
			c.Close()
			if _, err := os.Stat(filepath.Join(e.Data, "eeveon.sock")); err == nil {
				return
			}
		}
		select {
		case <-exited:
			e.t.Fatalf("server exited at start:\n%s", e.ServerLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
	e.t.Fatalf("server did not start in time:\n%s", e.ServerLog())
}

// Stop sends SIGTERM and waits for a graceful exit.
func (e *Env) Stop() {
	e.stop(syscall.SIGTERM)
}

// Kill sends SIGKILL to the server (not its children: the kernel's
// parent-death signal must take care of builds).
func (e *Env) Kill() {
	e.stop(syscall.SIGKILL)
}

func (e *Env) stop(sig syscall.Signal) {
	e.mu.Lock()
	cmd, exited := e.server, e.exited
	e.server = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(90 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		e.t.Errorf("server did not stop on %v", sig)
	}
}

// ServerLog is everything the server printed so far.
func (e *Env) ServerLog() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.log == nil {
		return ""
	}
	return e.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Result is what a command printed and its exit status.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Out is stdout and stderr together.
func (r Result) Out() string { return r.Stdout + r.Stderr }

func run(t testing.TB, dir string, env []string, stdin string, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("run %s %q: %v", name, args, err)
		}
	}
	return Result{stdout.String(), stderr.String(), code}
}

// Eeveon runs the CLI against this env's data dir.
func (e *Env) Eeveon(args ...string) Result {
	e.t.Helper()
	return run(e.t, e.Dir, nil, "", bin, append(args, "--data", e.Data)...)
}

// MustEeveon runs the CLI and fails the test on a non-zero exit.
func (e *Env) MustEeveon(args ...string) Result {
	e.t.Helper()
	r := e.Eeveon(args...)
	if r.Code != 0 {
		e.t.Fatalf("eeveon %q: exit %d\n%s", args, r.Code, r.Out())
	}
	return r
}

// AddKey makes an ed25519 key for user and registers it with role (and
// sites, comma-separated, may be empty). It returns the private key path.
func (e *Env) AddKey(user, role, sites string) string {
	e.t.Helper()
	key := e.NewKey(user)
	args := []string{"keys", "add", "--user", user, "--role", role, key + ".pub"}
	if sites != "" {
		args = append(args, "--sites", sites)
	}
	e.MustEeveon(args...)
	return key
}

// NewKey makes a key pair without registering it.
func (e *Env) NewKey(name string) string {
	e.t.Helper()
	key := filepath.Join(e.Dir, "key-"+name)
	if r := run(e.t, e.Dir, nil, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@test", "-f", key); r.Code != 0 {
		e.t.Fatalf("ssh-keygen: %s", r.Out())
	}
	e.keys[name] = key
	return key
}

// SSHArgs are the OpenSSH client options for key: a throwaway
// known_hosts, no user config, only this key.
func (e *Env) SSHArgs(key string) []string {
	return []string{
		"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + filepath.Join(e.Dir, "known_hosts"), "-o", "StrictHostKeyChecking=accept-new",
		"-o", "ConnectTimeout=10", "-p", e.Port,
	}
}

// SSH runs a command over the real ssh client with key.
func (e *Env) SSH(key string, command ...string) Result {
	e.t.Helper()
	args := append(e.SSHArgs(key), "deploy@127.0.0.1")
	args = append(args, command...)
	return run(e.t, e.Dir, nil, "", "ssh", args...)
}

// GitSSH is GIT_SSH_COMMAND for key.
func (e *Env) GitSSH(key string) string {
	return "GIT_SSH_COMMAND=ssh " + strings.Join(e.SSHArgs(key)[:len(e.SSHArgs(key))-2], " ")
}

// URL is the push URL of a site.
func (e *Env) URL(path string) string {
	return "ssh://deploy@" + e.Addr + "/" + strings.TrimPrefix(path, "/")
}

// Repo is a local work tree to push from.
type Repo struct {
	e   *Env
	Dir string
}

// NewRepo makes a git work tree with one commit of files.
func (e *Env) NewRepo(name string, files map[string]string) *Repo {
	e.t.Helper()
	r := &Repo{e: e, Dir: filepath.Join(e.Dir, "work-"+name)}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	r.Git("init", "-q", "-b", "main")
	r.Commit("initial", files)
	return r
}

// Git runs git in the work tree and fails the test on error.
func (r *Repo) Git(args ...string) string {
	r.e.t.Helper()
	res := run(r.e.t, r.Dir, []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@test"}, "", "git", args...)
	if res.Code != 0 {
		r.e.t.Fatalf("git %q: %s", args, res.Out())
	}
	return strings.TrimSpace(res.Stdout)
}

// Commit writes files (path -> content; mode 0755 when content starts
// with "#!") and commits them, returning the commit id.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.e.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.e.t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			r.e.t.Fatal(err)
		}
	}
	r.Git("add", "-A")
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}

// Push pushes with key to the site path; extra args go to git push.
func (r *Repo) Push(key, path string, extra ...string) Result {
	r.e.t.Helper()
	args := append([]string{"push", r.e.URL(path)}, extra...)
	if len(extra) == 0 {
		args = append(args, "main")
	}
	return run(r.e.t, r.Dir, []string{r.e.GitSSH(key)}, "", "git", args...)
}

// SitePath is the default path of a site.
func (e *Env) SitePath(site string) string { return filepath.Join(e.Data, "sites", site) }

// Live reports where current points ("" if it does not exist).
func (e *Env) Live(site string) string {
	target, err := os.Readlink(filepath.Join(e.SitePath(site), "current"))
	if err != nil {
		return ""
	}
	return target
}

// ReadSite reads a file of the site through current.
func (e *Env) ReadSite(site, name string) string {
	b, err := os.ReadFile(filepath.Join(e.SitePath(site), "current", name))
	if err != nil {
		return ""
	}
	return string(b)
}

// PID is the process id of the running server (0 when it is stopped).
func (e *Env) PID() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server == nil {
		return 0
	}
	return e.server.Process.Pid
}

// restartWithConfig stops the server, replaces eeveon.toml with content
// and starts it again.
func (e *Env) restartWithConfig(content string) {
	e.t.Helper()
	e.Stop()
	if err := os.WriteFile(filepath.Join(e.Data, "eeveon.toml"), []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.Start()
}

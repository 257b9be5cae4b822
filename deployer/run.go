package deployer

import (
	"github.com/eeveon/eeveon/deployer/internal/cgroup"

	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// baseEnv is what a build or health command inherits from the server's
// environment; everything else is left out so that server internals do not
// leak into user code.
var baseEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL"}

func commandEnv(extra map[string]string) []string {
	var env []string
	for _, k := range baseEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if os.Getenv("PATH") == "" {
		env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin")
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// errTimeout marks a command stopped by its time limit.
var errTimeout = errors.New("timed out")

// supervisor is the direct child of the server for every user command. It
// runs the command in the background of its own process group and, when
// the kernel tells it the server died (the parent-death signal, SIGTERM),
// kills the whole group: the parent-death signal alone reaches only the
// direct child, not what the command started.
const supervisor = `trap 'kill -KILL 0' TERM; /bin/sh -c "$1" & wait $!`

// runShell runs script with sh -c in dir, in its own process group, with
// output to out. Cancelling ctx or passing the timeout kills the whole
// group, and so does the death of the server.
// proc is how a user command runs: its environment, extra open files
// (the first is fd 3) and, with run_as, the Unix user it runs as.
type proc struct {
	env   []string
	files []*os.File
	cred  *syscall.Credential
	// cgroups, when set, puts each command in a cgroup of its own (named
	// after scope) that ends with it: nothing it started outlives it.
	cgroups *cgroup.Manager
	scope   string
}

func runShell(ctx context.Context, dir, script string, pr proc, out io.Writer, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", supervisor, "eeveon-run", script)
	cmd.Dir = dir
	cmd.Env = pr.env
	cmd.ExtraFiles = pr.files // the first is fd 3
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: pr.cred}
	var group *cgroup.Group
	if pr.cgroups != nil {
		g, err := pr.cgroups.New(pr.scope)
		if err != nil {
			return fmt.Errorf("contain the command: %w", err)
		}
		g.Attr(cmd.SysProcAttr)
		group = g
	}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A background grandchild holding the output pipe must not hang us.
	cmd.WaitDelay = 3 * time.Second
	err := cmd.Run()
	if cmd.Process != nil {
		// Whatever the outcome, nothing of this command outlives it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if group != nil {
		// Nor what it left running in its cgroup (setsid, double forks,
		// daemons); a group that cannot be ended fails the step.
		if gerr := group.Remove(); gerr != nil && err == nil {
			return fmt.Errorf("end what the command left running: %w", gerr)
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w after %s", errTimeout, timeout)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	if pr.cred != nil && errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("the run_as user (uid %d) cannot enter %s: give the site a path outside the data dir whose parents that user may traverse", pr.cred.Uid, dir)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("killed by signal %s", ws.Signal())
		}
		if code > 128 && code < 128+65 { // the supervisor reports a signalled command as 128+n
			return fmt.Errorf("killed by signal %s", syscall.Signal(code-128))
		}
		return fmt.Errorf("exited with status %d", code)
	}
	return err
}

// lineWriter prefixes every line written through it. It buffers a partial
// line until its newline arrives or Flush is called. Safe for concurrent use.
type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64*1024 { // a very long line without newline
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

func (l *lineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	_, _ = fmt.Fprintf(l.w, "%s%s\n", l.prefix, line)
}

// Flush writes out a trailing partial line.
func (l *lineWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}

// teeWriter writes to the deploy log and to the client. A client that went
// away (a closed connection) stops receiving; the log keeps everything.
type teeWriter struct {
	mu     sync.Mutex
	log    io.Writer
	client io.Writer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.log != nil {
		_, _ = t.log.Write(p)
	}
	if t.client != nil {
		if _, err := t.client.Write(p); err != nil {
			t.client = nil
		}
	}
	return len(p), nil
}

// capWriter passes on the first max bytes written to it, then one note,
// then nothing: a command that floods its output cannot fill the disk
// with its deploy log or hold its client. It never fails a write (the
// command goes on, bounded by its timeout).
type capWriter struct {
	mu      sync.Mutex
	w       io.Writer
	max     int64
	written int64
	midLine bool // the last byte passed on was not a newline
}

func (c *capWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.written > c.max {
		return len(p), nil
	}
	pass := p
	if room := c.max - c.written; int64(len(p)) > room {
		// Up to the last whole line: the masker sees a secret's lines
		// whole, never a cut one.
		pass = p[:bytes.LastIndexByte(p[:room], '\n')+1]
	}
	if len(pass) > 0 {
		_, _ = c.w.Write(pass)
		c.midLine = pass[len(pass)-1] != '\n'
	}
	c.written += int64(len(p))
	if c.written > c.max {
		nl := ""
		if c.midLine {
			nl = "\n"
		}
		_, _ = fmt.Fprintf(c.w, "%s==> output truncated: the commands of this deploy wrote more than %d bytes (max_log_size); the rest is not kept\n", nl, c.max)
	}
	return len(p), nil
}

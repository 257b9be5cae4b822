package app

import (
	"github.com/eeveon/eeveon/deployer/internal/cgroup"

	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Spec is how to run an app.
type Spec struct {
	// Command is run with /bin/sh -c.
	Command string
	// Dir is the working directory (the colour's directory).
	Dir string
	// Env is the complete environment, PORT included; nothing is
	// inherited from the server.
	Env []string
	// Out receives stdout and stderr, e.g. a rotating log file. It is
	// written from one goroutine at a time. Nil discards the output.
	Out io.Writer
	// Files are extra open files for the app; the first is fd 3.
	Files []*os.File
	// Cred, if set, is the Unix user and groups the app runs as.
	Cred *syscall.Credential
	// OrphanGrace is how long the app gets between SIGTERM and SIGKILL
	// when the server dies without stopping it. Default 2s.
	OrphanGrace time.Duration
	// Cgroup, if set, is the group the app's processes start in (its
	// restarts too); its owner ends it with the colour.
	Cgroup *cgroup.Group
}

// marker is the $0 of every supervisor shell, by which Alive recognises
// the processes this package started.
const marker = "eeveon-app"

// supervisorScript is the app's group leader and the server's direct
// child. The app runs in the background of the same process group:
//
//   - SIGTERM (Stop, sent to the whole group) reaches the app directly;
//     the shell only notes it and keeps waiting, so the app's own graceful
//     shutdown runs. The trap is a no-op command rather than an empty one: an
//     ignored signal would be inherited by the app.
//   - SIGHUP is the parent-death signal: the server died. The shell then
//     stops the group itself: SIGTERM, a grace period ($2 seconds; sleep
//     by absolute path, as the app's env may have no PATH), SIGKILL.
//   - The shell exits with the app's status (128+n for a signal).
const supervisorScript = `trap 'kill -TERM 0; /bin/sleep "$2" 2>/dev/null || sleep "$2"; kill -KILL 0' HUP
trap ':' TERM
/bin/sh -c "$1" &
app=$!
while :; do
	wait "$app"
	status=$?
	kill -0 "$app" 2>/dev/null || exit "$status"
done`

// Process is a running app: a supervisor shell that leads its own
// process group, with the app command as its child in that group. When
// the app exits, whatever it left running in the group is killed, so a
// finished Process leaves nothing behind.
type Process struct {
	pid     int
	started time.Time
	done    chan struct{}

	mu   sync.Mutex
	err  error // set before done is closed
	code int
}

// Start runs spec's command. It returns once the process exists; the app
// may still be starting (see WaitHealthy). The app's lifetime is bound to
// Stop, not to a context: it outlives the deploy that started it. If the
// server dies, the app is stopped too (SIGTERM, then SIGKILL after
// spec.OrphanGrace).
func Start(spec Spec) (*Process, error) {
	grace := spec.OrphanGrace
	if grace <= 0 {
		grace = 2 * time.Second
	}
	cmd := exec.Command("/bin/sh", "-c", supervisorScript, marker, spec.Command,
		strconv.FormatFloat(grace.Seconds(), 'f', 3, 64))
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would mean the server's environment
	}
	cmd.ExtraFiles = spec.Files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGHUP, Credential: spec.Cred}
	if spec.Cgroup != nil {
		spec.Cgroup.Attr(cmd.SysProcAttr)
	}

	// Our own pipe instead of exec's: Wait must not hang on a grandchild
	// that keeps the output open, and the copying ends only after the
	// group is gone, so the log is complete when Done is closed.
	var pr, pw *os.File
	if spec.Out != nil {
		var err error
		if pr, pw, err = os.Pipe(); err != nil {
			return nil, fmt.Errorf("start app: %w", err)
		}
		cmd.Stdout, cmd.Stderr = pw, pw
	}
	if err := cmd.Start(); err != nil {
		if pr != nil {
			pr.Close()
			pw.Close()
		}
		if spec.Cred != nil && errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("start app as uid %d in %s: %w", spec.Cred.Uid, spec.Dir, err)
		}
		return nil, fmt.Errorf("start app in %s: %w", spec.Dir, err)
	}
	p := &Process{pid: cmd.Process.Pid, started: time.Now(), done: make(chan struct{}), code: -1}
	copied := make(chan struct{})
	if pr != nil {
		pw.Close()
		go func() {
			defer close(copied)
			_, _ = io.Copy(spec.Out, pr)
		}()
	} else {
		close(copied)
	}
	go func() {
		err := cmd.Wait()
		// Nothing of the app outlives it.
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		waitGroupGone(p.pid, 2*time.Second)
		if pr != nil {
			select {
			case <-copied:
			case <-time.After(time.Second):
				// Something that left the group still holds the output.
			}
			pr.Close()
		}
		p.mu.Lock()
		p.err, p.code = exitError(err, cmd.ProcessState)
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id of the supervisor shell, the app's parent.
func (p *Process) Pid() int { return p.pid }

// Pgid is the id of the app's process group (the same number as Pid).
// Persist it with Pid to find the app again after a crash (Alive,
// KillGroup).
func (p *Process) Pgid() int { return p.pid }

// Started is when the process was started.
func (p *Process) Started() time.Time { return p.started }

// Done is closed when the app has exited and its group is gone.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the app to exit and returns nil for status 0, else an
// error such as "exited with status 3" or "killed by signal terminated".
func (p *Process) Wait() error {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// ExitCode is the app's exit status once it has exited (128+n when a
// signal killed it), or -1 while it runs.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code
}

// ErrKilled is returned by Stop when the app had to be killed.
var ErrKilled = errors.New("did not stop in time; killed")

// Stop sends SIGTERM to the app's whole process group, waits up to grace
// (or until ctx ends) for it to exit, then sends SIGKILL to the group. It
// returns once the process has exited: nil if it went on SIGTERM (or had
// already gone), an error wrapping ErrKilled if it had to be killed.
func (p *Process) Stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("stop app (pid %d): %w after %s", p.pid, ErrKilled, grace)
}

// exitError turns the supervisor's end into an error and a status.
func exitError(err error, st *os.ProcessState) (error, int) {
	code := -1
	if st != nil {
		code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
			return fmt.Errorf("killed by signal %s", ws.Signal()), code
		}
	}
	switch {
	case err == nil:
		return nil, code
	case code > 128 && code < 128+65: // the shell reports a signalled app as 128+n
		return fmt.Errorf("killed by signal %s", syscall.Signal(code-128)), code
	case code >= 0:
		return fmt.Errorf("exited with status %d", code), code
	}
	return err, code
}

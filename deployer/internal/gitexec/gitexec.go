// Package gitexec runs git's transport commands (receive-pack for a push,
// upload-pack for a fetch or clone) on a site's bare repository for a
// client whose request was already authorised.
package gitexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eeveon/eeveon/hooks/hookenv"
	"github.com/eeveon/eeveon/keys"
)

// Params is one git transport command to run.
type Params struct {
	Verb keys.Verb // keys.VerbPush runs receive-pack, anything else upload-pack
	Repo string    // the site's bare repository
	// Pusher travels to the repository's proc-receive hook in the
	// environment (hookenv).
	Pusher keys.Identity
	// ClientEnv is the client's environment; only a valid GIT_PROTOCOL
	// (git protocol v2) is passed on.
	ClientEnv []string
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer
	// MaxPushSize bounds the pack a push may send (receive.maxInputSize);
	// 0: no bound.
	MaxPushSize int64
}

// Result is how git ended: the exit status for the client and the outcome
// for the audit log ("ok", "client disconnected" or "error: …").
type Result struct {
	Code    int
	Outcome string
}

// WaitDelay bounds the wait for git's output after it was killed.
const WaitDelay = 5 * time.Second

var gitProtocolRe = regexp.MustCompile(`^version=[0-9]$`)

// Run runs git in its own process group, killed when ctx ends (a client
// that goes away). The error is for git that could not start; it is
// internal detail for the server log, not for the client.
func Run(ctx context.Context, p Params) (Result, error) {
	sub := "upload-pack"
	if p.Verb == keys.VerbPush {
		sub = "receive-pack"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	args := []string{sub, p.Repo}
	if p.Verb == keys.VerbPush && p.MaxPushSize > 0 {
		args = append([]string{"-c", "receive.maxInputSize=" + strconv.FormatInt(p.MaxPushSize, 10)}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, hookenv.Encode(p.Pusher)...)
	for _, kv := range p.ClientEnv {
		if v, ok := strings.CutPrefix(kv, "GIT_PROTOCOL="); ok && gitProtocolRe.MatchString(v) {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = WaitDelay
	in, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		return Result{Code: 1}, fmt.Errorf("start git %s: %w", sub, err)
	}
	// Copy the client's data in without making Wait wait for the client
	// to close its side.
	go func() {
		_, _ = io.Copy(in, p.Stdin)
		in.Close()
	}()
	err = cmd.Wait()
	switch {
	case err != nil && ctx.Err() != nil:
		// The client hung up first (go-git closes right after listing
		// refs; a user may press Ctrl-C): git was stopped with it.
		return Result{Code: 1, Outcome: "client disconnected"}, nil
	case err != nil:
		res := Result{Code: 1, Outcome: "error: " + err.Error()}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			res.Code = ee.ExitCode()
		}
		return res, nil
	}
	return Result{Outcome: "ok"}, nil
}

package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/internal/hookenv"
	"github.com/eeveon/eeveon/keys"
)

// GitCommand recognises git's transport commands in either spelling
// ("git-receive-pack 'x'" or "git receive-pack 'x'") and returns the verb
// and the repository path.
func GitCommand(args []string) (keys.Verb, string, bool) {
	if len(args) == 3 && args[0] == "git" {
		args = []string{"git-" + args[1], args[2]}
	}
	if len(args) != 2 {
		return "", "", false
	}
	switch args[0] {
	case "git-receive-pack":
		return keys.VerbPush, args[1], true
	case "git-upload-pack":
		return keys.VerbFetch, args[1], true
	}
	return "", "", false
}

// AuthorizeGit resolves the repository path of a push or fetch to a site
// the identity may use. A refusal is audited and returned as one line.
func (rt *Router) AuthorizeGit(id keys.Identity, verb keys.Verb, path string) (string, error) {
	site, err := names.RepoPath(path)
	if err == nil {
		_, err = rt.Site(id, site, verb)
	}
	if err != nil {
		if errors.Is(err, names.ErrInvalid) {
			err = fmt.Errorf("%w: repository %q (use ssh://HOST:PORT/SITE)", deployer.ErrSiteNotFound, clipArg(path))
		}
		outcome := "error: " + err.Error()
		if errors.Is(err, keys.ErrPermissionDenied) {
			outcome = "denied"
		}
		rt.audit(id, string(verb)+" "+clipArg(path), site, outcome)
		return "", err
	}
	return site, nil
}

var gitProtocolRe = regexp.MustCompile(`^version=[0-9]$`)

// RunGit runs the real git receive-pack or upload-pack on the site's bare
// repository with the given streams, in its own process group, killed
// when ctx ends (a client that goes away). The pusher's identity travels
// to the post-receive hook in the environment. From the client's
// environment only GIT_PROTOCOL (git protocol v2) is passed on.
func (rt *Router) RunGit(ctx context.Context, id keys.Identity, verb keys.Verb, site string, clientEnv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	sub := "upload-pack"
	if verb == keys.VerbPush {
		sub = "receive-pack"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", sub, rt.Engine.Data().Repo(site))
	env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, hookenv.Encode(id)...)
	for _, kv := range clientEnv {
		if v, ok := strings.CutPrefix(kv, "GIT_PROTOCOL="); ok && gitProtocolRe.MatchString(v) {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		if rt.Log != nil {
			rt.Log.Error("start git", "err", err)
		}
		fmt.Fprintln(stderr, "eeveon: internal error starting git (see the server log)")
		return 1
	}
	// Copy the client's data in without making Wait wait for the client
	// to close its side.
	go func() {
		_, _ = io.Copy(in, stdin)
		in.Close()
	}()
	err = cmd.Wait()
	code, outcome := 0, "ok"
	switch {
	case err != nil && ctx.Err() != nil:
		// The client hung up first (go-git closes right after listing
		// refs; a user may press Ctrl-C): git was stopped with it.
		code, outcome = 1, "client disconnected"
	case err != nil:
		code, outcome = 1, "error: "+err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		}
	}
	rt.audit(id, string(verb), site, outcome)
	return code
}

package sshd

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

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/keys"
)

// identity is who signed in: the entry of the key that actually signed
// in, looked up again now (a key removed since the handshake is refused).
func (s *Server) identity(sess ssh.Session) (keys.Identity, bool) {
	key, ok := sess.Context().Value(verifiedKey).(gossh.PublicKey)
	if !ok {
		return keys.Identity{}, false
	}
	e, ok := s.Keys.Lookup(key)
	if !ok {
		return keys.Identity{}, false
	}
	id := e.Identity()
	id.Remote = sess.RemoteAddr().String()
	id.Source = "ssh"
	return id, true
}

func (s *Server) handle(sess ssh.Session) {
	select {
	case s.sessions <- struct{}{}:
		defer func() { <-s.sessions }()
	default:
		fmt.Fprintln(sess.Stderr(), "eeveon: too many sessions; try again shortly")
		_ = sess.Exit(1)
		return
	}
	id, ok := s.identity(sess)
	if !ok {
		fmt.Fprintln(sess.Stderr(), "eeveon: permission denied: unknown key")
		_ = sess.Exit(1)
		return
	}
	raw := sess.RawCommand()
	if raw == "" {
		// A shell request: there is no shell, only the command surface.
		s.Router.Run(sess.Context(), id, []string{"help"}, command.IO{Stdout: sess.Stderr(), Stderr: sess.Stderr()})
		fmt.Fprintln(sess.Stderr(), "eeveon: no shell here; run one of the commands above, e.g. ssh HOST status")
		s.Router.AuditEvent(id, "shell", "", "denied")
		_ = sess.Exit(1)
		return
	}
	args, err := command.Parse(raw, s.Config.MaxCommandLen)
	if err != nil {
		fmt.Fprintf(sess.Stderr(), "eeveon: %v\n", err)
		s.Router.AuditEvent(id, raw, "", "error: "+err.Error())
		_ = sess.Exit(2)
		return
	}
	if verb, path, ok := gitCommand(args); ok {
		_ = sess.Exit(s.git(sess, id, verb, path))
		return
	}
	_ = sess.Exit(s.Router.Run(sess.Context(), id, args, command.IO{Stdin: sess, Stdout: sess, Stderr: sess.Stderr()}))
}

// gitCommand recognises git's transport commands in either spelling.
func gitCommand(args []string) (keys.Verb, string, bool) {
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

var gitProtocolRe = regexp.MustCompile(`^version=[0-9]$`)

// git runs the real git receive-pack or upload-pack on the site's bare
// repo, wired to the session: a client that goes away kills it. The
// post-receive hook inherits the pusher's identity through the
// environment and hands the push to the daemon.
func (s *Server) git(sess ssh.Session, id keys.Identity, verb keys.Verb, path string) int {
	site, err := names.RepoPath(path)
	if err == nil {
		_, err = s.Router.Site(id, site, verb)
	}
	if err != nil {
		if errors.Is(err, names.ErrInvalid) {
			err = fmt.Errorf("%w: repository %q (use ssh://HOST:PORT/SITE)", deployer.ErrSiteNotFound, clip(path))
		}
		fmt.Fprintf(sess.Stderr(), "eeveon: %v\n", err)
		s.Router.AuditEvent(id, string(verb), site, "denied: "+err.Error())
		return 1
	}
	sub := "upload-pack"
	if verb == keys.VerbPush {
		sub = "receive-pack"
	}
	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", sub, s.Data.Repo(site))
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"EEVEON_HOOK_USER=" + id.User, "EEVEON_HOOK_ROLE=" + string(id.Role),
		"EEVEON_HOOK_FINGERPRINT=" + id.Fingerprint, "EEVEON_HOOK_REMOTE=" + id.Remote,
		"EEVEON_HOOK_SOURCE=" + id.Source, "EEVEON_HOOK_SITES=" + strings.Join(id.Sites, ","),
	}
	for _, kv := range sess.Environ() {
		// git protocol v2 travels in this one variable; nothing else
		// from the client's environment is used.
		if v, ok := strings.CutPrefix(kv, "GIT_PROTOCOL="); ok && gitProtocolRe.MatchString(v) {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stdout = sess
	cmd.Stderr = sess.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fmt.Fprintln(sess.Stderr(), "eeveon: internal error starting git")
		return 1
	}
	if err := cmd.Start(); err != nil {
		s.Log.Error("start git", "err", err)
		fmt.Fprintln(sess.Stderr(), "eeveon: internal error starting git")
		return 1
	}
	// Copy the client's data in without making Wait wait for the client
	// to close its side.
	go func() {
		_, _ = io.Copy(stdin, sess)
		stdin.Close()
	}()
	err = cmd.Wait()
	code := 0
	outcome := "ok"
	if err != nil {
		code = 1
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		}
		outcome = "error: " + err.Error()
	}
	s.Router.AuditEvent(id, string(verb), site, outcome)
	return code
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

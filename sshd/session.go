package sshd

import (
	"fmt"
	"strings"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer/command"
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
	if strings.TrimSpace(raw) == "" {
		// No command (a shell request) or only blanks: the same answer as
		// eeveon shell gives in OpenSSH mode.
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
		s.Router.AuditEvent(id, command.RedactLine(raw), "", "error: "+err.Error())
		_ = sess.Exit(2)
		return
	}
	if verb, path, ok := command.GitCommand(args); ok {
		_ = sess.Exit(s.git(sess, id, verb, path))
		return
	}
	_ = sess.Exit(s.Router.Run(sess.Context(), id, args, command.IO{Stdin: sess, Stdout: sess, Stderr: sess.Stderr()}))
}

func (s *Server) git(sess ssh.Session, id keys.Identity, verb keys.Verb, path string) int {
	site, err := s.Router.AuthorizeGit(id, verb, path)
	if err != nil {
		fmt.Fprintf(sess.Stderr(), "eeveon: %v\n", err)
		return 1
	}
	return s.Router.RunGit(sess.Context(), id, verb, site, sess.Environ(), sess, sess, sess.Stderr())
}

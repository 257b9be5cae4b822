package sshd

import (
	"context"
	"fmt"

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
	// A command's output never waits on a client that stopped reading
	// (git's transport runs as a child and is killed with the session).
	run := func(ctx context.Context, id keys.Identity, args []string, stdio command.IO) int {
		return s.Router.Run(ctx, id, args, command.IO{Stdin: stdio.Stdin,
			Stdout: &boundedWriter{w: stdio.Stdout}, Stderr: &boundedWriter{w: stdio.Stderr}})
	}
	fe := command.Session{Router: s.Router, MaxLen: s.Config.MaxCommandLen, Env: sess.Environ(), Run: run}
	_ = sess.Exit(fe.Handle(sess.Context(), id, sess.RawCommand(), command.IO{Stdin: sess, Stdout: sess, Stderr: sess.Stderr()}))
}

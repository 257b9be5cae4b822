// Package sshd is the embedded SSH server: public-key authentication
// against the role-tagged key store, the git transport (the real git
// receive-pack and upload-pack), and the operations commands, routed
// through the same router as every other entry point. There is no shell.
package sshd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/charmbracelet/log"
	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/command"
	"github.com/eeveon/eeveon/keys"
)

// Server is the embedded SSH server.
type Server struct {
	Data   deployer.Data
	Config deployer.SSHConfig
	Keys   *keys.Store
	Router *command.Router
	Log    *log.Logger

	srv     *ssh.Server
	ln      net.Listener
	limiter *authLimiter
	// failedAuth holds the remote addresses of connections with a failed
	// login attempt, until the connection ends.
	failedAuth sync.Map
	sessions   chan struct{}
}

type ctxKey struct{ name string }

// verifiedKey holds the public key that actually signed in: x/crypto calls
// VerifiedPublicKeyCallback only after the client proved it holds the
// private key, unlike the public key handler, which also sees keys the
// client merely offers.
var verifiedKey = &ctxKey{"verified-key"}

// Listen binds addr (use 127.0.0.1:0 for a free port) and prepares the
// server. Serve must follow.
func (s *Server) Listen(addr string) error {
	hostKey, err := os.ReadFile(s.Data.HostKey())
	if err != nil {
		return fmt.Errorf("read host key: %w", err)
	}
	signer, err := gossh.ParsePrivateKey(hostKey)
	if err != nil {
		return fmt.Errorf("parse host key %s: %w", s.Data.HostKey(), err)
	}
	s.limiter = newAuthLimiter(s.Config.AuthFailures, time.Minute)
	s.sessions = make(chan struct{}, s.Config.MaxSessions)
	s.srv = &ssh.Server{
		Version:     "eeveon",
		HostSigners: []ssh.Signer{signer},
		Handler:     s.handle,
		IdleTimeout: s.Config.IdleTimeout.Duration,
		PublicKeyHandler: func(ctx ssh.Context, key ssh.PublicKey) bool {
			_, ok := s.Keys.Lookup(key)
			return ok && keys.CheckKey(key) == nil
		},
		ServerConfigCallback: func(ctx ssh.Context) *gossh.ServerConfig {
			return &gossh.ServerConfig{
				MaxAuthTries: 6,
				// Remember whether this connection tried to log in and
				// failed; only such connections count against the
				// failed-login limit (a bare TCP probe does not).
				AuthLogCallback: func(conn gossh.ConnMetadata, method string, err error) {
					switch {
					case err == nil:
						s.failedAuth.Delete(conn.RemoteAddr().String())
					case method != "none":
						s.failedAuth.Store(conn.RemoteAddr().String(), true)
					}
				},
				VerifiedPublicKeyCallback: func(_ gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
					ctx.SetValue(verifiedKey, key)
					return perms, nil
				},
			}
		},
		ConnCallback: func(ctx ssh.Context, conn net.Conn) net.Conn {
			host := remoteHost(conn.RemoteAddr())
			if !s.limiter.allow(host) {
				s.Log.Warn("refusing connection: too many failed logins", "remote", host)
				return nil
			}
			return conn
		},
		ConnectionFailedCallback: func(conn net.Conn, err error) {
			if _, tried := s.failedAuth.LoadAndDelete(conn.RemoteAddr().String()); !tried {
				return // no login attempt: a port probe or a dropped handshake
			}
			s.limiter.fail(remoteHost(conn.RemoteAddr()))
			s.Log.Info("ssh login failed", "remote", conn.RemoteAddr().String(), "err", err)
		},
		PtyCallback:                   func(ssh.Context, ssh.Pty) bool { return false },
		ChannelHandlers:               map[string]ssh.ChannelHandler{"session": sessionHandler},
		RequestHandlers:               map[string]ssh.RequestHandler{},
		SubsystemHandlers:             map[string]ssh.SubsystemHandler{},
		LocalPortForwardingCallback:   func(ssh.Context, string, uint32) bool { return false },
		ReversePortForwardingCallback: func(ssh.Context, string, uint32) bool { return false },
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts connections until Shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits (bounded by ctx) for sessions.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// sessionHandler filters the session channel's requests before the
// default handler sees them: agent and X11 forwarding are refused
// explicitly (the default would accept an agent request).
func sessionHandler(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	ssh.DefaultSessionHandler(srv, conn, filteredChannel{newChan}, ctx)
}

type filteredChannel struct{ gossh.NewChannel }

func (f filteredChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := f.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		for r := range reqs {
			switch r.Type {
			case "auth-agent-req@openssh.com", "x11-req", "pty-req":
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
				continue
			}
			out <- r
		}
	}()
	return ch, out, nil
}

func remoteHost(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// authLimiter counts failed logins per source address in a fixed window.
type authLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	hosts  map[string]*failures
}

type failures struct {
	n     int
	start time.Time
}

func newAuthLimiter(max int, window time.Duration) *authLimiter {
	return &authLimiter{max: max, window: window, hosts: map[string]*failures{}}
}

func (l *authLimiter) allow(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.hosts[host]
	if !ok {
		return true
	}
	if time.Since(f.start) > l.window {
		delete(l.hosts, host)
		return true
	}
	return f.n < l.max
}

func (l *authLimiter) fail(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.hosts[host]
	if !ok || time.Since(f.start) > l.window {
		f = &failures{start: time.Now()}
		l.hosts[host] = f
	}
	f.n++
	if len(l.hosts) > 10000 { // bound memory under a scan
		for h, v := range l.hosts {
			if time.Since(v.start) > l.window {
				delete(l.hosts, h)
			}
		}
	}
}

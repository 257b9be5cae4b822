package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"sync"

	"github.com/charmbracelet/log"
	"golang.org/x/sys/unix"

	"github.com/eeveon/eeveon/keys"
)

// Handler runs one request for an identity and returns how it ended.
type Handler func(ctx context.Context, id keys.Identity, req Request, stdout, stderr io.Writer) Result

// Server serves the control socket.
type Server struct {
	Path       string
	AdminGroup string // Unix group whose members act as admin
	Handler    Handler
	Log        *log.Logger

	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	done bool
}

// Listen binds the socket (replacing a stale one) with mode 0660.
func (s *Server) Listen() error {
	if c, err := net.Dial("unix", s.Path); err == nil {
		c.Close()
		return fmt.Errorf("another eeveon server answers on %s", s.Path)
	}
	_ = os.Remove(s.Path)
	ln, err := net.Listen("unix", s.Path)
	if err != nil {
		return fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(s.Path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("listen on control socket: %w", err)
	}
	// Members of the admin group reach the socket as themselves (with
	// the data dir group-owned by that group, mode 0750).
	if g, err := user.LookupGroup(s.AdminGroup); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			if err := os.Chown(s.Path, -1, gid); err != nil && s.Log != nil {
				s.Log.Warn("control socket: cannot give it to the admin group", "group", s.AdminGroup, "err", err)
			}
		}
	}
	s.ln = ln
	return nil
}

// Serve accepts connections until Close. Each request runs under ctx.
func (s *Server) Serve(ctx context.Context) error {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.done
			s.mu.Unlock()
			if done {
				return nil
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.handle(ctx, conn.(*net.UnixConn))
		}()
	}
}

// Close stops accepting and waits for running requests to finish.
func (s *Server) Close() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.wg.Wait()
}

func (s *Server) handle(ctx context.Context, conn *net.UnixConn) {
	fc := newFrameConn(conn)
	stdout := &frameWriter{c: fc, stream: 1}
	stderr := &frameWriter{c: fc, stream: 2}
	exitWith := func(res Result) {
		if err := fc.send(Frame{Exit: &res.Code, Reason: res.Reason}); err != nil {
			s.Log.Warn("control: the client went away or stopped reading; it did not get the outcome", "err", err)
		}
	}
	exit := func(code int) { exitWith(Result{Code: code}) }
	cred, err := peerCred(conn)
	if err != nil {
		s.Log.Error("control: peer credentials", "err", err)
		return
	}
	r := bufio.NewReaderSize(conn, 64*1024)
	line, err := readLine(r, maxRequest)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: bad request: %v\n", err)
		exit(2)
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		fmt.Fprintf(stderr, "eeveon: bad request: %v\n", err)
		exit(2)
		return
	}
	id, err := s.identify(cred, req.Claim)
	if err == nil && req.Push != nil && !trustedPeer(cred) && id.Role != keys.RoleAdmin {
		// Anyone else could deploy any commit in the repository this way,
		// which only an admin may (deploy --ref).
		err = errors.New("permission denied: a push is handed over by the repository's hook, run as the eeveon service user")
	}
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: %v\n", err)
		exit(1)
		return
	}
	// A client that hangs up cancels what waits on it (not a running
	// deploy, which finishes on its own).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var b [1]byte
		_, _ = conn.Read(b[:])
		cancel()
	}()
	exitWith(s.Handler(ctx, id, req, stdout, stderr))
}

func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, errors.New("request too large")
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, cerr
}

// identify decides who the peer is. A claim (from the git hook or the
// OpenSSH forced command) is honoured only from the service user or root,
// which is what sshd and the embedded server run those as. Otherwise the
// peer's Unix account decides: root or a member of the admin group is
// admin, anyone else who can reach the socket is a deployer.
func (s *Server) identify(cred *unix.Ucred, claim *keys.Identity) (keys.Identity, error) {
	if claim != nil {
		if !trustedPeer(cred) {
			return keys.Identity{}, errors.New("permission denied: only the eeveon service user may act for another identity")
		}
		id := *claim
		if id.User == "" || (id.Role != keys.RoleAdmin && id.Role != keys.RoleDeployer) {
			return keys.Identity{}, errors.New("bad request: incomplete identity")
		}
		return id, nil
	}
	return LocalIdentity(cred.Uid, cred.Gid, s.AdminGroup), nil
}

// trustedPeer: root or the service user (the daemon's own uid), who run
// the hooks and the forced command and so may speak for others.
func trustedPeer(cred *unix.Ucred) bool { return cred.Uid == 0 || int(cred.Uid) == os.Getuid() }

// LocalIdentity is the identity of a local Unix account: root or a member
// of adminGroup is admin, anyone else a deployer.
func LocalIdentity(uid, gid uint32, adminGroup string) keys.Identity {
	name := strconv.Itoa(int(uid))
	var groups []string
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
		groups, _ = u.GroupIds()
	}
	id := keys.Identity{User: name, Role: keys.RoleDeployer, Remote: "local", Source: "local"}
	if uid == 0 {
		id.Role = keys.RoleAdmin
	} else if g, err := user.LookupGroup(adminGroup); err == nil && (slices.Contains(groups, g.Gid) || strconv.Itoa(int(gid)) == g.Gid) {
		id.Role = keys.RoleAdmin
	}
	return id
}

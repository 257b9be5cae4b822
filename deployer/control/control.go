// Package control is the daemon's Unix control socket: the local CLI, the
// git post-receive hook and the OpenSSH forced command are thin clients
// that send one request and stream the answer back.
//
// Wire format: the client sends one JSON Request line; the server answers
// with JSON Frame lines (output chunks for stdout or stderr) and a last
// frame carrying the exit status.
package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/eeveon/eeveon/keys"
)

// Request is what a client asks for.
type Request struct {
	// Args is the command line, e.g. ["status", "hello"].
	Args []string `json:"args"`
	// Input is the command's standard input, when it has one.
	Input []byte `json:"input,omitempty"`
	// Claim is the identity the client acts for (the pusher of a git
	// hook, the key of an OpenSSH forced command). The server honours it
	// only from a peer running as the service user or root.
	Claim *keys.Identity `json:"claim,omitempty"`
	// Push is an update of a site's branch handed over by the repository's
	// proc-receive hook, to be deployed. It is never made from a command
	// line: the forced command and the CLI send Args only.
	Push *Push `json:"push,omitempty"`
}

// Push is one pushed update of a site's branch: git's old and new commit
// (all zeros for none) and the ref.
type Push struct {
	Site string `json:"site"`
	Ref  string `json:"ref"`
	Old  string `json:"old"`
	New  string `json:"new"`
}

// Result is how a request ended: its exit status and, for a push that did
// not go live, a one-line reason for git to show beside the ref.
type Result struct {
	Code   int
	Reason string
}

// Frame is one piece of the answer.
type Frame struct {
	Stream int    `json:"s,omitempty"` // 1 stdout, 2 stderr
	Data   []byte `json:"d,omitempty"`
	Exit   *int   `json:"exit,omitempty"`
	Reason string `json:"reason,omitempty"` // with Exit: Result.Reason
}

// maxRequest bounds a request line (arguments plus input).
const maxRequest = 1 << 20

// clientWriteTimeout bounds how long the server waits for a client to take
// a frame. Past it the client is dropped: what it asked for (a deploy)
// goes on without it and ends by its own timeouts, never held by a client
// that stopped reading.
var clientWriteTimeout = 30 * time.Second

// frameWriter sends writes as frames on one stream. Writers of both
// streams share the connection's state.
type frameWriter struct {
	c      *frameConn
	stream int
}

// frameConn is the answer's side of a connection: one encoder, one lock,
// and once a write failed or timed out, no more writes (a frame may have
// been cut).
type frameConn struct {
	mu     sync.Mutex
	conn   net.Conn
	enc    *json.Encoder
	broken error
}

func newFrameConn(conn net.Conn) *frameConn {
	return &frameConn{conn: conn, enc: json.NewEncoder(conn)}
}

func (c *frameConn) send(f Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(clientWriteTimeout))
	if err := c.enc.Encode(f); err != nil {
		c.broken = err
		return err
	}
	return nil
}

func (f *frameWriter) Write(p []byte) (int, error) {
	if err := f.c.send(Frame{Stream: f.stream, Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ErrNoServer is returned when nothing listens on the control socket.
var ErrNoServer = errors.New("the eeveon server is not running")

// Call sends req to the daemon at socket and copies the answer to stdout
// and stderr. It returns the command's exit status.
func Call(socket string, req Request, stdout, stderr io.Writer) (int, error) {
	res, err := CallResult(socket, req, stdout, stderr)
	return res.Code, err
}

// CallResult is Call that also returns the reason a push did not go live.
func CallResult(socket string, req Request, stdout, stderr io.Writer) (Result, error) {
	fail := Result{Code: 1}
	conn, err := net.Dial("unix", socket)
	switch {
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
		return fail, fmt.Errorf("%w (no answer on %s; start it with: eeveon serve)", ErrNoServer, socket)
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return fail, fmt.Errorf("permission denied: this Unix account may not use the eeveon server's socket %s (see the README: the local CLI and sudo)", socket)
	case err != nil:
		return fail, fmt.Errorf("connect to the eeveon server: %w", err)
	}
	defer conn.Close()
	b, err := json.Marshal(req)
	if err != nil {
		return fail, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fail, fmt.Errorf("send request: %w", err)
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var f Frame
		if err := dec.Decode(&f); err != nil {
			return fail, errors.New("lost the connection to the eeveon server before the command finished (see the server log)")
		}
		switch {
		case f.Exit != nil:
			return Result{Code: *f.Exit, Reason: f.Reason}, nil
		case f.Stream == 2:
			_, _ = stderr.Write(f.Data)
		default:
			_, _ = stdout.Write(f.Data)
		}
	}
}

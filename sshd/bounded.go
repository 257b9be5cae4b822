package sshd

import (
	"errors"
	"io"
	"sync"
	"time"
)

// stalledAfter is how long a client may take nothing before its session's
// output is given up on.
const stalledAfter = 10 * time.Second

// errStalled is returned for writes to a client that stopped reading.
var errStalled = errors.New("the client stopped reading")

// boundedWriter writes to a session's stream without ever waiting on it
// for longer than stalledAfter: a client that stops reading (or sends
// keepalives and never reads) would otherwise hold what writes to it — a
// deploy, its site's lock. Past that, this write and every later one fail
// at once; the deploy drops its client and goes on.
type boundedWriter struct {
	w      io.Writer
	mu     sync.Mutex
	broken bool
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken {
		return 0, errStalled
	}
	done := make(chan error, 1)
	buf := append([]byte(nil), p...)
	go func() { _, err := b.w.Write(buf); done <- err }()
	t := time.NewTimer(stalledAfter)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			b.broken = true
			return 0, err
		}
		return len(p), nil
	case <-t.C:
		// The write goroutine ends with the session.
		b.broken = true
		return 0, errStalled
	}
}

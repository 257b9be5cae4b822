package app

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/charmbracelet/log"
)

// Policy is how a Supervisor backs off between restarts. Zero fields take
// the defaults.
type Policy struct {
	// MinDelay is the wait before the first restart (default 1s); it
	// doubles with each crash that follows.
	MinDelay time.Duration
	// MaxDelay caps the wait (default 30s).
	MaxDelay time.Duration
	// ResetAfter is how long an app must stay up for the wait to start
	// over at MinDelay (default 60s).
	ResetAfter time.Duration
	// OnEvent, if set, receives every exit, restart and failed start. It
	// is called from the supervisor's goroutine and must not block.
	OnEvent func(Event)
}

// Event kinds.
const (
	EventExited      = "exited"       // the app exited on its own; Process is the one that exited
	EventRestarted   = "restarted"    // a new process runs; Process is the new one
	EventStartFailed = "start_failed" // starting it again failed; another try follows
)

// Event is something that happened to a supervised app.
type Event struct {
	Kind     string
	Process  *Process      // see the kinds
	Err      error         // the exit (exited) or the start error (start_failed)
	Delay    time.Duration // the wait before the next try (exited, start_failed)
	Restarts int           // restarts so far
}

// Supervisor keeps one app process running: when it exits without Stop
// having been called, it is started again from the same Spec after a
// delay that doubles with each quick crash. Every event is logged.
type Supervisor struct {
	spec   Spec
	log    *log.Logger
	policy Policy

	mu       sync.Mutex
	cur      *Process
	restarts int
	stopped  bool
	stop     chan struct{}
	done     chan struct{}
}

// Supervise watches p, which was started from spec, and restarts it as
// policy says. logger receives the events (nil discards them).
func Supervise(p *Process, spec Spec, logger *log.Logger, policy Policy) *Supervisor {
	if logger == nil {
		logger = log.New(io.Discard)
	}
	if policy.MinDelay <= 0 {
		policy.MinDelay = time.Second
	}
	if policy.MaxDelay <= 0 {
		policy.MaxDelay = 30 * time.Second
	}
	if policy.ResetAfter <= 0 {
		policy.ResetAfter = time.Minute
	}
	s := &Supervisor{spec: spec, log: logger, policy: policy, cur: p,
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// Current is the process running now (or the one that last exited).
// Its Pid and Pgid change with each restart.
func (s *Supervisor) Current() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Restarts is how many times the app was started again.
func (s *Supervisor) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Stop ends the supervision, then stops the current process as
// Process.Stop does, and returns its result once the process has exited
// and no restart can follow.
func (s *Supervisor) Stop(ctx context.Context, grace time.Duration) error {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.stop)
	}
	p := s.cur
	s.mu.Unlock()
	err := p.Stop(ctx, grace)
	<-s.done
	return err
}

func (s *Supervisor) emit(e Event) {
	if s.policy.OnEvent != nil {
		s.policy.OnEvent(e)
	}
}

func (s *Supervisor) run() {
	defer close(s.done)
	delay := s.policy.MinDelay
	for {
		p := s.Current()
		select {
		case <-p.Done():
		case <-s.stop:
			return
		}
		select {
		case <-s.stop: // the exit was Stop's doing
			return
		default:
		}
		up := time.Since(p.Started())
		if up >= s.policy.ResetAfter {
			delay = s.policy.MinDelay
		}
		err := p.Wait()
		s.log.Warn("app exited", "pid", p.Pid(), "status", errText(err), "uptime", up.Round(time.Millisecond), "restart_in", delay)
		s.emit(Event{Kind: EventExited, Process: p, Err: err, Delay: delay, Restarts: s.Restarts()})
		for {
			select {
			case <-time.After(delay):
			case <-s.stop:
				return
			}
			next := min(delay*2, s.policy.MaxDelay)
			s.mu.Lock()
			if s.stopped {
				s.mu.Unlock()
				return
			}
			np, err := Start(s.spec)
			if err == nil {
				s.cur = np
				s.restarts++
			}
			n := s.restarts
			s.mu.Unlock()
			if err != nil {
				s.log.Error("app restart failed", "err", err, "retry_in", next)
				s.emit(Event{Kind: EventStartFailed, Err: err, Delay: next, Restarts: n})
				delay = next
				continue
			}
			s.log.Info("app restarted", "pid", np.Pid(), "restarts", n)
			s.emit(Event{Kind: EventRestarted, Process: np, Restarts: n})
			delay = next
			break
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}

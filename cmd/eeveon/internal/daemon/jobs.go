package daemon

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
)

// scheduler runs the daemon's timed jobs, one goroutine each, so that a
// slow job never delays another.
type scheduler struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newScheduler() *scheduler {
	ctx, cancel := context.WithCancel(context.Background())
	return &scheduler{ctx: ctx, cancel: cancel}
}

// every runs job after first, then interval after each run ends, until
// stop. The job's context ends with stop.
func (s *scheduler) every(first, interval time.Duration, job func(ctx context.Context)) {
	s.wg.Go(func() {
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
			job(s.ctx)
			t.Reset(interval)
		}
	})
}

// stop cancels the jobs and waits, until ctx ends, for those running.
func (s *scheduler) stop(ctx context.Context) {
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// runVacuum runs one scheduled vacuum and logs what it did.
func runVacuum(ctx context.Context, engine *deployer.Engine, cfg deployer.VacuumConfig, l *log.Logger) {
	var out bytes.Buffer
	err := engine.Vacuum(ctx, deployer.VacuumOptions{Keep: cfg.Keep, MaxAge: cfg.MaxAge.Duration}, &out)
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line != "" {
			l.Info(line)
		}
	}
	if err != nil && !errors.Is(err, deployer.ErrShuttingDown) && !errors.Is(err, context.Canceled) {
		l.Warn("vacuum failed", "err", err)
	}
}

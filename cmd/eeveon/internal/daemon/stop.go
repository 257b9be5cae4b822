package daemon

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"
)

// notifyDrain bounds the delivery of the last notifications at shutdown.
const notifyDrain = 3 * time.Second

// A stage of the shutdown: its steps run together, each bounded by the
// stage's context, and the next stage starts when all have returned.
type stage struct {
	timeout time.Duration
	steps   []func(ctx context.Context)
}

// stop takes the daemon down. This is the one place that orders it, and
// the order is not simply the reverse of the start's:
//
//  1. Within the grace period, together: the SSH and HTTP servers stop
//     taking connections and wait for those open (a push's session waits
//     for its deploy), while the timed jobs and the poller stop and then
//     the engine refuses new deploys, waits for the running ones
//     (interrupting them when the grace is over) and stops the apps.
//  2. The notifier delivers what the last deploys said.
//  3. The control socket closes: the hooks of the pushes above and the
//     `eeveon shell` sessions of OpenSSH talk through it until their
//     deploys end, so it goes last although it opened after the recovery.
//  4. server.json goes.
//
// Parts that never came up are skipped, so a start that fails half-way
// stops with the same list.
func (d *Daemon) stop() {
	grace := d.cfg.Deploy.ShutdownTimeout.Duration
	for _, st := range []stage{
		{grace, []func(context.Context){d.stopSSH, d.stopHTTP, d.stopDeploys}},
		{notifyDrain, []func(context.Context){d.stopNotifier}},
		{grace, []func(context.Context){d.stopControl}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), st.timeout)
		var wg sync.WaitGroup
		for _, step := range st.steps {
			wg.Go(func() { step(ctx) })
		}
		wg.Wait()
		cancel()
	}
	_ = os.Remove(d.data.ServerState())
}

func (d *Daemon) stopSSH(ctx context.Context) {
	if !d.up.ssh {
		return
	}
	if err := d.ssh.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn("ssh shutdown", "err", err)
	}
}

func (d *Daemon) stopHTTP(ctx context.Context) {
	if !d.up.web {
		return
	}
	if err := d.web.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn("http shutdown", "err", err)
	}
}

// stopDeploys stops what starts deploys from inside the daemon before the
// engine drains, so that the timed jobs never race its shutdown.
func (d *Daemon) stopDeploys(ctx context.Context) {
	d.jobs.stop(ctx)
	if err := d.poller.Stop(ctx); err != nil {
		d.log.Warn("poller shutdown", "err", err)
	}
	if d.up.engine {
		d.engine.Shutdown(ctx)
	}
}

func (d *Daemon) stopNotifier(ctx context.Context) {
	if err := d.notifier.Stop(ctx); err != nil {
		d.log.Warn("notifications left undelivered at shutdown")
	}
}

// stopControl cancels the requests still running and waits for them
// until ctx ends.
func (d *Daemon) stopControl(ctx context.Context) {
	if !d.up.ctl {
		return
	}
	d.stopCtl()
	closed := make(chan struct{})
	go func() { d.ctl.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		d.log.Warn("control socket: requests still running at exit")
	}
	_ = os.Remove(d.data.Socket())
}

package poll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/eeveon/eeveon/deployer"
)

// poll runs one poll of site s, records and logs its outcome, and returns
// the wait before the next one.
func (p *Poller) poll(ctx context.Context, s deployer.Site, e *entry) time.Duration {
	interval := s.PollInterval.Duration
	c, err := p.creds(s)
	again := false
	if err == nil {
		again, err = p.check(ctx, s, e, c)
	}
	if ctx.Err() != nil {
		return 0 // stopping: nothing to record
	}
	if err != nil {
		if !errors.Is(err, errNoBranch) {
			e.state.Failures++
		}
		msg := scrub(s, c, err.Error())
		e.state.LastError = msg
		delay := jitter(backoff(interval, e.state.Failures))
		if msg != e.logged {
			// Once when a site starts failing or its error changes.
			e.logged = msg
			p.log.Warn(s.Name+": poll failed", "err", msg, "failures", e.state.Failures, "retry_in", delay.Round(time.Second))
		}
		p.save(s.Name, e)
		return delay
	}
	p.recovered(s, e)
	p.save(s.Name, e)
	if again {
		return 0
	}
	return jitter(interval)
}

// recovered clears the failure count after a good poll, with one line in
// the log if there was a failure to recover from.
func (p *Poller) recovered(s deployer.Site, e *entry) {
	if e.logged != "" || e.state.Failures > 0 || e.state.LastError != "" {
		p.log.Info(s.Name+": poll recovered", "after_failures", e.state.Failures)
	}
	e.logged, e.state.Failures, e.state.LastError = "", 0, ""
}

func (p *Poller) save(site string, e *entry) {
	if err := p.persist(site, e); err != nil {
		p.log.Error(site+": save poll state", "err", err)
	}
}

// check compares the remote's branch tip with the last commit handed to
// the engine and, when it moved, fetches and deploys it. again asks for
// an immediate new poll (the branch moved during the fetch).
func (p *Poller) check(ctx context.Context, s deployer.Site, e *entry, c creds) (again bool, err error) {
	if err := p.acquire(ctx); err != nil {
		return false, err
	}
	held := true
	defer func() {
		if held {
			p.release()
		}
	}()
	if p.beforeList != nil {
		p.beforeList(s.Name)
	}
	tip, err := p.remoteTip(ctx, s, c)
	if err != nil {
		return false, err
	}
	e.state.LastSeen = tip
	p.recovered(s, e)
	if tip == e.state.LastDeployed {
		return false, nil
	}
	if live, ok := deployer.LiveRelease(s); ok && live.Commit == tip {
		// Deployed already, by a push or before this state existed.
		p.log.Info(fmt.Sprintf("%s: %s is live already; not deploying it again", s.Name, deployer.ShortCommit(tip)))
		e.state.LastDeployed = tip
		return false, nil
	}
	if e.announced != tip {
		e.announced = tip
		p.log.Info(fmt.Sprintf("%s moved to %s; fetching", s.Name, deployer.ShortCommit(tip)))
	}
	if local, err := deployer.ResolveCommit(ctx, p.data, s.Name, s.Ref()); err != nil || local != tip {
		if err := p.fetch(ctx, s, c); err != nil {
			return false, err
		}
	}
	got, err := deployer.ResolveCommit(ctx, p.data, s.Name, s.Ref())
	if err != nil {
		return false, fmt.Errorf("after fetch: %w", err)
	}
	if got != tip {
		p.log.Info(fmt.Sprintf("%s moved on to %s during the fetch; polling again", s.Name, deployer.ShortCommit(got)))
		return true, nil
	}
	p.release()
	held = false
	return false, p.deploy(ctx, s, e, tip)
}

// deploy hands commit to the engine, after recording it: whatever the
// outcome, the poller does not deploy it again, unless the deploy never
// started or a shutdown interrupted it.
func (p *Poller) deploy(ctx context.Context, s deployer.Site, e *entry, commit string) error {
	prev, prevID := e.state.LastDeployed, e.state.DeployID
	e.state.LastDeployed, e.state.DeployID = commit, ""
	if err := p.persist(s.Name, e); err != nil {
		// Without a record of the attempt a restart could deploy it twice.
		e.state.LastDeployed, e.state.DeployID = prev, prevID
		return err
	}
	rec, err := p.engine.Deploy(ctx, deployer.Request{
		Site: s.Name, Commit: commit, Ref: s.Ref(), Trigger: "poll", User: "poll", FromPush: true,
	}, io.Discard)
	if rec.ID == "" || rec.State == deployer.StateInterrupted || errors.Is(err, deployer.ErrShuttingDown) {
		e.state.LastDeployed, e.state.DeployID = prev, prevID
		p.save(s.Name, e)
		if rec.ID == "" && err != nil && !errors.Is(err, deployer.ErrShuttingDown) {
			return fmt.Errorf("deploy %s: %w", deployer.ShortCommit(commit), err)
		}
		return nil
	}
	e.state.DeployID = rec.ID
	if err != nil {
		p.log.Warn(fmt.Sprintf("%s: deploy of %s did not go live; waiting for a new commit", s.Name, deployer.ShortCommit(commit)),
			"deploy", rec.ID, "state", rec.State)
	}
	return nil
}

package deployer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"
)

// Approval errors.
var (
	ErrNothingPending = errors.New("nothing is waiting for approval")
	ErrApproval       = errors.New("cannot approve")
	// ErrNotWaiting is also wrapped by the ErrApproval of a deploy that no
	// longer waits (expired, superseded, decided): the approval came late,
	// rather than against the site's rules.
	ErrNotWaiting = errors.New("no longer waiting for approval")
)

// awaitApproval ends a built, healthy deploy in pending_approval instead
// of swapping. Its colour stays as built until it is approved, rejected,
// expires or a newer deploy supersedes it.
func (e *Engine) awaitApproval(j *job) error {
	exp := time.Now().UTC().Add(j.site.ApprovalTimeout.Duration)
	j.r.ExpiresAt = &exp
	e.finish(j, StatePendingApproval, "")
	return nil
}

// Pending is the deploy waiting for approval on a site, if any.
func (e *Engine) Pending(site string) (Record, bool) {
	return e.waiting.get(site)
}

// supersedePending ends the site's pending deploy, if any, because j
// builds into its colour. The site lock is held.
func (e *Engine) supersedePending(j *job) {
	old, ok := e.Pending(j.site.Name)
	if !ok {
		return
	}
	oj, closeLog, err := e.resume(j.site, old, j.out)
	if err != nil {
		j.l.Error("supersede pending deploy", "deploy", old.ID, "err", err)
		return
	}
	defer closeLog()
	e.finish(oj, StateSuperseded, fmt.Sprintf("deploy %s (%s) replaces it", j.r.ID, firstNonEmpty(j.r.Short(), j.r.Ref)))
}

// resume makes a job of an existing record, appending to its log; out
// also receives the output.
func (e *Engine) resume(site Site, r Record, out io.Writer) (*job, func(), error) {
	rec := r
	return e.newJob(site, &rec, out)
}

// decide takes the site lock and hands the pending deploy (the one named
// by id, if given) to act. Expired deploys are expired on the way.
func (e *Engine) decide(ctx context.Context, name, id string, out io.Writer, act func(*job) error) (Record, error) {
	done, err := e.begin()
	if err != nil {
		return Record{}, err
	}
	defer done()
	site, err := LoadSite(e.data, name)
	if err != nil {
		return Record{}, err
	}
	unlock, err := e.lock(ctx, name)
	if err != nil {
		return Record{}, err
	}
	defer unlock()
	pending, ok := e.Pending(name)
	if id != "" && (!ok || pending.ID != id) {
		r, err := LoadRecord(e.data, name, id)
		if err != nil {
			return Record{}, err
		}
		return r, notWaiting{fmt.Errorf("%w: deploy %s is %s, not waiting for approval", ErrApproval, id, r.State)}
	}
	if !ok {
		return Record{}, fmt.Errorf("%w on %s", ErrNothingPending, name)
	}
	j, closeLog, err := e.resume(site, pending, out)
	if err != nil {
		return pending, err
	}
	defer closeLog()
	if time.Now().After(*pending.ExpiresAt) {
		e.finish(j, StateExpired, "the approval window ended at "+pending.ExpiresAt.Format(time.RFC3339))
		return *j.r, notWaiting{fmt.Errorf("%w: deploy %s expired at %s", ErrApproval, pending.ID, pending.ExpiresAt.Format(time.RFC3339))}
	}
	err = act(j)
	return *j.r, err
}

// Approve puts the deploy waiting on a site live, after checking its
// health again, and records who approved it. id, when given, must name the
// pending deploy: an approval never releases a newer one than the approver
// saw.
func (e *Engine) Approve(ctx context.Context, site, id, user string, out io.Writer) (Record, error) {
	return e.decide(ctx, site, id, out, func(j *job) error {
		if j.site.RequireOtherApprover && j.r.User == user {
			return fmt.Errorf("%w: %s pushed deploy %s and this site requires another admin to approve it", ErrApproval, user, j.r.ID)
		}
		if !e.ws.holds(j.site.Name, j.r.Color, j.r.ID) {
			// Another deploy built there since (this one should have been
			// superseded; a crash may have kept its record waiting).
			e.finish(j, StateSuperseded, "another deploy has built into "+j.r.Color+" since")
			return fmt.Errorf("%w: %s no longer holds deploy %s; push again", ErrNotWaiting, j.r.Color, j.r.ID)
		}
		if err := j.r.transition(StateRunning); err != nil {
			return err
		}
		j.approved = true
		j.r.ApprovedBy = user
		j.p.step("approved by %s: %s %s on %s (deploy %s by %s)", user, j.site.Name, j.r.Short(), j.r.Color, j.r.ID, j.r.User)
		e.emit(EventApproved, j)
		if j.secretsErr != nil {
			return e.fail(j, StateFailed, "secrets: "+j.secretsErr.Error())
		}
		dir := filepath.Join(j.site.Path, j.r.Color)
		pr, err := e.ws.env(j, dir)
		if err != nil {
			return e.failed(j, "prepare health check", err)
		}
		return e.checkAndSwap(j, dir, pr)
	})
}

// Reject discards the deploy waiting on a site.
func (e *Engine) Reject(ctx context.Context, site, id, user string, out io.Writer) (Record, error) {
	return e.decide(ctx, site, id, out, func(j *job) error {
		j.r.ApprovedBy = user
		e.finish(j, StateRejected, "rejected by "+user)
		return nil
	})
}

// ExpirePending expires every pending deploy past its deadline. The
// daemon calls it on a timer; a site busy with a deploy is left for the
// next sweep.
func (e *Engine) ExpirePending(now time.Time) {
	for _, r := range e.waiting.due(now) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := e.decide(ctx, r.Site, r.ID, io.Discard, func(*job) error { return nil })
		cancel()
		if errors.Is(err, ErrSiteNotFound) {
			e.dropPending(r, "the site was removed")
			continue
		}
		if err != nil && !errors.Is(err, ErrApproval) && !errors.Is(err, context.DeadlineExceeded) {
			e.log.Warn("expire pending deploy", "site", r.Site, "deploy", r.ID, "err", err)
		}
	}
}

// dropPending forgets a pending deploy whose site is gone, recording it as
// expired (there is no site history left to append to).
func (e *Engine) dropPending(r Record, why string) {
	r.State, r.Error, r.Phase, r.FinishedAt = StateExpired, why, PhaseFinished, time.Now().UTC()
	e.waiting.note(r)
	e.apps.stopPendingApp(r.Site, r.ID, progress{})
	if err := saveRecord(e.data, &r); err != nil {
		e.log.Warn("expire pending deploy", "site", r.Site, "deploy", r.ID, "err", err)
		return
	}
	e.log.Info("pending deploy expired", "site", r.Site, "deploy", r.ID, "why", why)
}

// waiting is the deploys waiting for approval, one per site at most, with
// its own lock. They change under the site's lock.
type waiting struct {
	mu      sync.Mutex
	pending map[string]Record
}

// get is the deploy waiting on site, if any.
func (w *waiting) get(site string) (Record, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.pending[site]
	return r, ok
}

// note follows r: it waits, or (if it was the one waiting) no longer does.
func (w *waiting) note(r Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		w.pending = map[string]Record{}
	}
	if r.State == StatePendingApproval {
		w.pending[r.Site] = r
	} else if p, ok := w.pending[r.Site]; ok && p.ID == r.ID {
		delete(w.pending, r.Site)
	}
}

// due lists the waiting deploys past their deadline at now.
func (w *waiting) due(now time.Time) []Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	var due []Record
	for _, r := range w.pending {
		if r.ExpiresAt != nil && now.After(*r.ExpiresAt) {
			due = append(due, r)
		}
	}
	return due
}

// notWaiting marks an approval error as ErrNotWaiting too; its text is
// the wrapped one's.
type notWaiting struct{ error }

func (notWaiting) Is(target error) bool { return target == ErrNotWaiting }
func (n notWaiting) Unwrap() error      { return n.error }

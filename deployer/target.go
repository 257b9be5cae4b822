package deployer

import (
	"context"
	"errors"
	"fmt"
)

// A target is how one kind of site puts a built commit live. The
// orchestrator (the pipeline, approvals, the rollback) owns the site lock,
// the record, the states and the output; it calls, in this order, admit,
// colour and checkout, builds, then check, and hands what check returns
// to approval (hold) or puts it live (switchLive); ended hears every
// outcome. Each kind owns its steps and its state: static (blue and green
// behind a symlink), in-place, and app (blue and green processes behind
// the built-in proxy). A new kind of site is a new target, not a branch in
// the orchestrator.
type target interface {
	// admit refuses a deploy this kind cannot do.
	admit(j *job) error
	// colour is where the deploy builds, given the live colour.
	colour(live string) string
	// checkout puts the deploy's commit where it builds and returns the
	// directory.
	checkout(ctx context.Context, j *job) (dir string, err error)
	// check health-checks the built colour in dir.
	check(j *job, dir string, pr proc) (candidate, error)
	// ended hears how a deploy of this site ended.
	ended(j *job, state State)
}

// candidate is a built colour that passed its check.
type candidate interface {
	// hold keeps it while its deploy waits for approval.
	hold(j *job)
	// discard drops it: its deploy does not go live.
	discard()
	// switchLive makes it live. On error, nothing changed and the
	// candidate cleaned up after itself.
	switchLive(j *job) (switched, error)
}

// switched is what a switch tells the orchestrator.
type switched struct {
	port   int    // the live app's port, for on_swap (0: none)
	note   string // added to the "live:" line
	retire func() // winds the colour that was live down, after the outcome is recorded
}

// stepError is a failure of one step of a target; step "" has the
// message stand alone.
type stepError struct {
	step string
	err  error
}

func (s *stepError) Error() string {
	if s.step == "" {
		return s.err.Error()
	}
	return s.step + ": " + s.err.Error()
}

func (s *stepError) Unwrap() error { return s.err }

// targetFor is the target of a site deployed with strategy.
func (e *Engine) targetFor(site Site, strategy Strategy) target {
	switch {
	case strategy == InPlace:
		return inPlaceTarget{e}
	case site.IsApp():
		return e.apps
	default:
		return staticTarget{e}
	}
}

// staticTarget: files in blue and green, current a symlink to the live one.
type staticTarget struct{ e *Engine }

func (staticTarget) admit(*job) error          { return nil }
func (staticTarget) colour(live string) string { return otherColor(live) }
func (staticTarget) ended(*job, State)         {}

func (t staticTarget) checkout(ctx context.Context, j *job) (string, error) {
	return t.e.ws.checkoutColour(ctx, j.site, j.r)
}

func (t staticTarget) check(j *job, dir string, pr proc) (candidate, error) {
	if err := t.e.healthCheck(t.e.hard, j, dir, pr); err != nil {
		return nil, err
	}
	return symlinkSwap{}, nil
}

// symlinkSwap points current at the checked colour with one rename(2).
type symlinkSwap struct{}

func (symlinkSwap) hold(*job) {}
func (symlinkSwap) discard()  {}

func (symlinkSwap) switchLive(j *job) (switched, error) {
	if err := swapCurrent(j.site.Path, j.r.Color, j.r.ID); err != nil {
		return switched{}, &stepError{"swap", err}
	}
	return switched{}, nil
}

// inPlaceTarget: current is a real directory, checked out into and built
// where it serves; there is nothing to switch and no instant rollback.
type inPlaceTarget struct{ e *Engine }

func (inPlaceTarget) colour(string) string { return colorInPlace }
func (inPlaceTarget) ended(*job, State)    {}

func (inPlaceTarget) admit(j *job) error {
	if j.site.Approval {
		return errors.New("in-place deploys cannot wait for approval; use the blue-green strategy")
	}
	if j.site.IsApp() {
		return errors.New("an app site deploys blue-green only: the new colour's app starts next to the live one")
	}
	return nil
}

func (t inPlaceTarget) checkout(ctx context.Context, j *job) (string, error) {
	return t.e.ws.checkoutInPlace(ctx, j.site, j.r)
}

func (t inPlaceTarget) check(j *job, dir string, pr proc) (candidate, error) {
	if err := t.e.healthCheck(t.e.hard, j, dir, pr); err != nil {
		return nil, err
	}
	return inPlaceLive{}, nil
}

// inPlaceLive is live as soon as it is built.
type inPlaceLive struct{}

func (inPlaceLive) hold(*job)                         {}
func (inPlaceLive) discard()                          {}
func (inPlaceLive) switchLive(*job) (switched, error) { return switched{}, nil }

// The app target is the apps' runtime (apps.go).

func (*appRuntime) admit(*job) error          { return nil }
func (*appRuntime) colour(live string) string { return otherColor(live) }

func (a *appRuntime) checkout(ctx context.Context, j *job) (string, error) {
	return a.e.ws.checkoutColour(ctx, j.site, j.r)
}

func (a *appRuntime) check(j *job, dir string, pr proc) (candidate, error) {
	inst, err := a.checkApp(j, dir, pr)
	if err != nil {
		return nil, err
	}
	return &appCandidate{a: a, inst: inst}, nil
}

// ended stops the app of a deploy that waited for approval and will not
// go live (rejected, expired, superseded, failed).
func (a *appRuntime) ended(j *job, state State) {
	if state != StatePendingApproval {
		a.stopPendingApp(j.site.Name, j.r.ID, j.p)
	}
}

// appCandidate is a new colour's app, running and healthy.
type appCandidate struct {
	a    *appRuntime
	inst *appInst
}

// hold keeps the app running until the decision.
func (c *appCandidate) hold(j *job) { c.a.holdForApproval(j.site.Name, c.inst) }

func (c *appCandidate) discard() { _ = c.inst.stop(c.a.e.cfg.App.StopGrace.Duration) }

// switchLive puts the app live: the symlink, then the proxy; the old
// colour is drained and stopped by retire.
func (c *appCandidate) switchLive(j *job) (switched, error) {
	site, r, inst := j.site, j.r, c.inst
	px, err := c.a.ensureProxy(site)
	if err != nil {
		c.discard()
		return switched{}, &stepError{"proxy", err}
	}
	// The app passed its check; if it has died since, it does not get the
	// traffic: the live colour keeps it.
	if isDone(inst.current().Done()) {
		c.discard()
		return switched{}, &stepError{"", errors.New("the app exited after its health check; " + site.Name + " keeps serving the live colour")}
	}
	// Still its own port, just before the traffic goes there.
	if err := inst.ownsPort(); err != nil {
		c.discard()
		return switched{}, &stepError{"switch", err}
	}
	if err := swapCurrent(site.Path, r.Color, r.ID); err != nil {
		c.discard()
		return switched{}, &stepError{"swap", err}
	}
	old := c.a.goLive(px, inst)
	return switched{
		port: inst.port,
		note: fmt.Sprintf("; the proxy on %s sends new requests to port %d", site.Proxy, inst.port),
		retire: func() {
			if old != nil {
				c.a.retire(px, old, j.p)
			}
		},
	}, nil
}

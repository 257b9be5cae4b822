package deployer

import (
	"errors"
	"time"
)

// DeployError is the outcome of a deploy that did not go live: which deploy,
// the step that ended it, the state it was recorded with and the cause.
// Callers tell outcomes apart with errors.As and errors.Is (the cause is
// wrapped); the text a client sees is rendered at the edge from these
// fields and Error, which is masked: it never holds a secret value.
type DeployError struct {
	ID    string // the deploy record, "" when none was written
	Step  string // resolve, checkout, build, health check, swap, …; "" when the deploy was refused as a whole
	State State  // the recorded state: failed, interrupted, rejected, expired
	msg   string // the reason, masked
	Err   error  // the cause, for errors.Is; never printed
}

func (e *DeployError) Error() string { return e.msg }

func (e *DeployError) Unwrap() error { return e.Err }

// DeployOutcome reports what err says of a deploy: the DeployError in it,
// if any.
func DeployOutcome(err error) (*DeployError, bool) {
	var de *DeployError
	ok := errors.As(err, &de)
	return de, ok
}

// announce tells the server log and the deploy's client how j ended: the
// last lines of a push or a verb, and of the deploy log.
func (e *Engine) announce(j *job) {
	site, r, p, l := j.site, j.r, j.p, j.l
	why := r.Error
	switch state := r.State; state {
	case StateLive:
		l.Info("deploy live", "commit", r.Short(), "color", r.Color, "took", r.Duration())
		p.step("deploy %s finished in %s", r.ID, r.Duration())
	case StateSuperseded:
		l.Info("deploy superseded", "why", why)
		p.step("superseded: %s", why)
	case StatePendingApproval:
		l.Info("deploy awaiting approval", "commit", r.Short(), "color", r.Color, "expires", r.ExpiresAt)
		host, port := e.cfg.SSHHint()
		p.step("awaiting approval: ssh -p %s deploy@%s approve %s %s", port, host, site.Name, r.ID)
		p.step("%s %s is built and healthy on %s; the approval expires at %s (reject: ssh -p %s deploy@%s reject %s)",
			site.Name, r.Short(), r.Color, r.ExpiresAt.Format(time.RFC3339), port, host, site.Name)
	case StateRejected, StateExpired:
		l.Info("deploy "+state, "why", why)
		p.step("%s: %s; %s stays on %s", state, why, site.Name, firstNonEmpty(LiveColor(site.Path), "nothing"))
	default:
		l.Warn("deploy "+state, "why", why)
		stays := "has no live release yet"
		if c := LiveColor(site.Path); c != "" {
			stays = "stays on " + c
			if lr, ok := liveRecord(site, c); ok {
				stays += " (" + lr.Short() + ")"
			}
		}
		p.step("FAILED (%s): %s; %s %s", state, why, site.Name, stays)
		p.step("deploy %s %s after %s; log: eeveon logs %s %s", r.ID, state, r.Duration(), site.Name, r.ID)
	}
}

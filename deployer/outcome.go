package deployer

import "errors"

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

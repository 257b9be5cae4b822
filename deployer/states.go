package deployer

import "fmt"

// The deploy state machine:
//
//	running ─┬─► live
//	         ├─► failed | interrupted | superseded
//	         └─► pending_approval ─┬─► running (approved) ─► …
//	                               └─► rejected | expired | superseded
//
// (an interrupted deploy is also what recovery makes of a running record
// after a crash; it may find it live instead, if it had switched).
var transitions = map[State][]State{
	StateRunning:         {StateLive, StateFailed, StateInterrupted, StateSuperseded, StatePendingApproval},
	StatePendingApproval: {StateRunning, StateRejected, StateExpired, StateSuperseded, StateFailed, StateInterrupted},
}

// transition moves r to state, or says why it may not. An outcome is
// final: a record that ended does not change again.
func (r *Record) transition(to State) error {
	for _, ok := range transitions[r.State] {
		if ok == to {
			r.State = to
			return nil
		}
	}
	return fmt.Errorf("deploy %s: no transition from %s to %s", r.ID, r.State, to)
}

// EventKind is what happened to a deploy, for notifications.
type EventKind string

// Event kinds.
const (
	EventDeployStarted   EventKind = "deploy_started"
	EventLive            EventKind = "live"
	EventFailed          EventKind = "failed"
	EventPendingApproval EventKind = "pending_approval"
	EventApproved        EventKind = "approved"
	EventRejected        EventKind = "rejected"
	EventExpired         EventKind = "expired"
	EventRolledBack      EventKind = "rolled_back"
	EventSuperseded      EventKind = "superseded"
)

// NotifyEvents are the event kinds a [[notify]] block may filter on: the
// kinds the engine emits.
var NotifyEvents = []EventKind{
	EventDeployStarted, EventLive, EventFailed, EventPendingApproval, EventApproved,
	EventRejected, EventExpired, EventRolledBack, EventSuperseded,
}

// eventOf is the event a deploy's outcome is announced as.
func eventOf(r Record) EventKind {
	switch {
	case r.State == StateLive && (r.Trigger == TriggerRollback || r.Trigger == TriggerRollbackTo):
		return EventRolledBack
	case r.State == StateInterrupted:
		return EventFailed
	}
	return EventKind(r.State)
}

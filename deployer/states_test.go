package deployer

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestTransitions(t *testing.T) {
	all := []State{StateRunning, StateLive, StateFailed, StateInterrupted, StateSuperseded, StatePendingApproval, StateRejected, StateExpired}
	allowed := map[[2]State]bool{}
	for from, tos := range transitions {
		for _, to := range tos {
			allowed[[2]State{from, to}] = true
		}
	}
	for _, from := range all {
		for _, to := range all {
			r := Record{ID: "x", State: from}
			err := r.transition(to)
			want := allowed[[2]State{from, to}]
			if (err == nil) != want {
				t.Errorf("%s -> %s: %v, allowed %v", from, to, err, want)
			}
			if err == nil && r.State != to || err != nil && r.State != from {
				t.Errorf("%s -> %s left the record %s", from, to, r.State)
			}
		}
	}
	// Outcomes are final; a waiting deploy is approved back to running.
	for _, s := range []State{StateLive, StateFailed, StateInterrupted, StateSuperseded, StateRejected, StateExpired} {
		if len(transitions[s]) != 0 {
			t.Errorf("%s is an outcome but has transitions %v", s, transitions[s])
		}
	}
	if !allowed[[2]State{StatePendingApproval, StateRunning}] {
		t.Error("approval cannot resume a waiting deploy")
	}
}

func TestEventOf(t *testing.T) {
	for _, tc := range []struct {
		r    Record
		want EventKind
	}{
		{Record{State: StateLive, Trigger: "push"}, EventLive},
		{Record{State: StateLive, Trigger: TriggerRollback}, EventRolledBack},
		{Record{State: StateLive, Trigger: TriggerRollbackTo}, EventRolledBack},
		{Record{State: StateInterrupted}, EventFailed},
		{Record{State: StateFailed}, EventFailed},
		{Record{State: StatePendingApproval}, EventPendingApproval},
		{Record{State: StateSuperseded}, EventSuperseded},
	} {
		if got := eventOf(tc.r); got != tc.want {
			t.Errorf("eventOf(%s, %s) = %s, want %s", tc.r.State, tc.r.Trigger, got, tc.want)
		}
	}
	for _, k := range NotifyEvents {
		if k == "" {
			t.Error("an empty event kind")
		}
	}
}

// TestRollbackOutcomeIsTyped: the documented sentinel holds for a site
// never deployed, and the outcome says which deploy and state.
func TestRollbackOutcomeIsTyped(t *testing.T) {
	e := testEngine(t)
	addSite(t, e, Site{Name: "hello"})
	r, err := e.Rollback(context.Background(), Request{Site: "hello", User: "alice"}, io.Discard)
	if !errors.Is(err, ErrNoRollback) {
		t.Fatalf("Rollback of a site never deployed: %v, want ErrNoRollback", err)
	}
	de, ok := DeployOutcome(err)
	if !ok || de.ID != r.ID || de.State != StateFailed || de.Step != "rollback" {
		t.Errorf("outcome %+v, want the failed rollback deploy %s", de, r.ID)
	}
}

func TestCapWriter(t *testing.T) {
	var b strings.Builder
	c := &capWriter{w: &b, max: 10}
	for _, s := range []string{"12345", "6789\n", "abcdef", "more", "and more"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); !strings.HasPrefix(got, "123456789\n==> output truncated") || strings.Contains(got, "abc") || strings.Contains(got, "and more") || strings.Count(got, "truncated") != 1 {
		t.Errorf("capped output %q", got)
	}
}

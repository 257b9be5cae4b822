package app

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/log"
)

// recorder collects a supervisor's events with their times.
type recorder struct {
	mu     sync.Mutex
	events []Event
	at     []time.Time
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.at = append(r.at, time.Now())
}

func (r *recorder) kinds(kind string) ([]Event, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var es []Event
	var ts []time.Time
	for i, e := range r.events {
		if e.Kind == kind {
			es, ts = append(es, e), append(ts, r.at[i])
		}
	}
	return es, ts
}

func TestSupervisorRestartsWithBackoffAndStops(t *testing.T) {
	logs := &syncBuffer{}
	rec := &recorder{}
	spec := Spec{Command: "echo run; exit 3", Dir: t.TempDir(), Env: []string{}}
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	min, max := 50*time.Millisecond, 200*time.Millisecond
	s := Supervise(p, spec, log.New(logs), Policy{MinDelay: min, MaxDelay: max, ResetAfter: 10 * time.Second, OnEvent: rec.add})
	if !eventually(30*time.Second, func() bool { r, _ := rec.kinds(EventRestarted); return len(r) >= 5 }) {
		t.Fatalf("no 5 restarts; events %+v", rec.events)
	}
	if err := s.Stop(context.Background(), time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	restarts := s.Restarts()
	time.Sleep(3 * max)
	if s.Restarts() != restarts {
		t.Fatalf("restarts went on after Stop: %d then %d", restarts, s.Restarts())
	}

	exited, exitedAt := rec.kinds(EventExited)
	restarted, restartedAt := rec.kinds(EventRestarted)
	want := []time.Duration{min, 2 * min, 4 * min, max, max}
	for i, d := range want {
		if exited[i].Delay != d {
			t.Fatalf("exit %d: delay %s, want %s (all: %v)", i+1, exited[i].Delay, d, exited)
		}
		if exited[i].Err == nil || exited[i].Err.Error() != "exited with status 3" {
			t.Fatalf("exit %d: err %v", i+1, exited[i].Err)
		}
		if gap := restartedAt[i].Sub(exitedAt[i]); gap < d || gap > d+time.Second {
			t.Fatalf("restart %d came %s after the exit, want about %s", i+1, gap, d)
		}
		if restarted[i].Restarts != i+1 || restarted[i].Process == nil || restarted[i].Process == p {
			t.Fatalf("restart %d: %+v", i+1, restarted[i])
		}
	}
	if !strings.Contains(logs.String(), "app exited") || !strings.Contains(logs.String(), "app restarted") {
		t.Fatalf("log lacks the events:\n%s", logs)
	}
}

func TestSupervisorResetsTheDelayAfterAGoodRun(t *testing.T) {
	rec := &recorder{}
	spec := Spec{Command: "sleep 0.3; exit 1", Dir: t.TempDir(), Env: []string{"PATH=/usr/bin:/bin"}}
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	s := Supervise(p, spec, nil, Policy{MinDelay: 50 * time.Millisecond, MaxDelay: time.Second, ResetAfter: 200 * time.Millisecond, OnEvent: rec.add})
	defer s.Stop(context.Background(), time.Second)
	if !eventually(30*time.Second, func() bool { e, _ := rec.kinds(EventExited); return len(e) >= 3 }) {
		t.Fatal("no 3 exits")
	}
	exited, _ := rec.kinds(EventExited)
	for i, e := range exited[:3] {
		if e.Delay != 50*time.Millisecond {
			t.Fatalf("exit %d after a run longer than ResetAfter: delay %s, want 50ms", i+1, e.Delay)
		}
	}
}

// Stop ends a healthy app for good: no restart, nothing left.
func TestSupervisorStopDoesNotRestart(t *testing.T) {
	rec := &recorder{}
	p, b, _ := startApp(t, "A")
	spec := appSpec(b.Port(), nil, "VERSION=A")
	s := Supervise(p, spec, nil, Policy{MinDelay: 10 * time.Millisecond, OnEvent: rec.add})
	if err := s.Stop(context.Background(), 2*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if e, _ := rec.kinds(EventExited); len(e) != 0 || s.Restarts() != 0 {
		t.Fatalf("events after Stop: %+v, %d restarts", e, s.Restarts())
	}
	if m := GroupMembers(p.Pgid()); len(m) != 0 || !PortFree(b.Port()) {
		t.Fatalf("after Stop: group %v, port %d free %v", m, b.Port(), PortFree(b.Port()))
	}
}

// A supervised app that crashes comes back and serves again.
func TestSupervisorBringsBackACrashedApp(t *testing.T) {
	rec := &recorder{}
	p, b, _ := startApp(t, "A")
	spec := appSpec(b.Port(), nil, "VERSION=A")
	s := Supervise(p, spec, nil, Policy{MinDelay: 20 * time.Millisecond, OnEvent: rec.add})
	defer s.Stop(context.Background(), 2*time.Second)
	if err := KillGroup(p.Pgid(), 0); err != nil { // a crash
		t.Fatal(err)
	}
	if !eventually(30*time.Second, func() bool { r, _ := rec.kinds(EventRestarted); return len(r) == 1 }) {
		t.Fatalf("no restart: %+v", rec.events)
	}
	np := s.Current()
	if np == p || np.Pid() == p.Pid() {
		t.Fatal("Current is still the crashed process")
	}
	if err := WaitHealthy(context.Background(), b.URL()+"/up", 20*time.Millisecond, time.Second, 30*time.Second, np.Done()); err != nil {
		t.Fatalf("restarted app: %v", err)
	}
}

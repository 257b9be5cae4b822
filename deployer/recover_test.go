package deployer

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestRecoverFinishesFromHistory: the server died after writing a
// deploy's outcome to history and before its record: Recover copies the
// outcome to the record and does not add a second history line.
func TestRecoverFinishesFromHistory(t *testing.T) {
	e := testEngine(t)
	s := addSite(t, e, Site{Name: "web"})
	now := time.Now().UTC()
	r := Record{ID: "20260101-000000-abcd", Site: "web", Commit: strings.Repeat("a", 40), Color: "blue",
		Strategy: BlueGreen, State: StateRunning, Phase: PhaseSwapping, StartedAt: now}
	if err := os.MkdirAll(e.data.DeploysDir("web"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := saveRecord(e.data, &r); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.Path, 0o755); err != nil {
		t.Fatal(err)
	}
	done := r
	done.State, done.Phase, done.FinishedAt = StateLive, "", now
	if err := appendHistory(s, done); err != nil {
		t.Fatal(err)
	}
	e.Recover()
	got, err := LoadRecord(e.data, "web", r.ID)
	if err != nil || got.State != StateLive {
		t.Fatalf("record after recover: %+v, %v", got, err)
	}
	h, _ := History(s)
	if len(h) != 1 {
		t.Fatalf("history has %d lines, want 1", len(h))
	}
}

package deployer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// randomLine is a history line of any colour, state and trigger, or
// (rarely) a line that does not parse.
func randomLine(rnd *rand.Rand, n int) string {
	if rnd.IntN(15) == 0 {
		return "not json"
	}
	pick := func(s ...string) string { return s[rnd.IntN(len(s))] }
	r := Record{
		ID: fmt.Sprintf("20260101-000000-%04x", n), Site: "web", Commit: fmt.Sprintf("%040x", n),
		Color:   pick("blue", "green", "blue", "green", colorInPlace, ""),
		State:   State(pick(string(StateLive), string(StateLive), string(StateFailed), string(StateInterrupted), string(StateSuperseded), string(StatePendingApproval), string(StateRejected), string(StateExpired))),
		Trigger: pick("push", "push", TriggerRollback, TriggerRollbackTo, "poll"),
	}
	b, _ := json.Marshal(r)
	return string(b)
}

func setCurrent(t *testing.T, path, color string) {
	t.Helper()
	cur := filepath.Join(path, currentLink)
	if err := os.RemoveAll(cur); err != nil {
		t.Fatal(err)
	}
	var err error
	if color == colorInPlace {
		err = os.Mkdir(cur, 0o755)
	} else {
		err = os.Symlink(color, cur)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// rollbackView is what the readers of a history see: the instant
// rollback for each live colour and the live record of each colour.
func rollbackView(t *testing.T, s Site) string {
	t.Helper()
	var b strings.Builder
	for _, live := range []string{"blue", "green", colorInPlace} {
		setCurrent(t, s.Path, live)
		r, err := RollbackTarget(s)
		fmt.Fprintf(&b, "live %s: rollback to %q, %v\n", live, r.ID, err)
	}
	for _, c := range []string{"blue", "green", colorInPlace} {
		r, ok := liveRecord(s, c)
		fmt.Fprintf(&b, "%s serves %q %v\n", c, r.ID, ok)
	}
	return b.String()
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestVacuumKeepsWhatRollbackReads: for random histories and any --keep,
// the instant rollback and the live records read the same from the
// vacuumed history as from the whole one, also after more deploys; no
// line is lost; and the lines of deploys still running stay.
func TestVacuumKeepsWhatRollbackReads(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "web"})
	full := Site{Name: "web", Path: t.TempDir()}
	for _, s := range []Site{site, full} {
		for _, c := range []string{"blue", "green"} {
			if err := os.MkdirAll(filepath.Join(s.Path, c), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	running := Record{ID: "20251231-000000-0001", Site: "web", State: StateRunning, Phase: PhaseSwapping, StartedAt: time.Now()}
	writeRecord(t, e.Data(), running)
	runningLine, _ := json.Marshal(Record{ID: running.ID, Site: "web", Color: "green", State: StateLive, Trigger: "push"})

	for iter := range 300 {
		rnd := rand.New(rand.NewPCG(uint64(iter), 1))
		var lines []string
		if iter%10 == 0 {
			lines = append(lines, string(runningLine))
		}
		for i := range rnd.IntN(30) {
			lines = append(lines, randomLine(rnd, i))
		}
		hist := ""
		if len(lines) > 0 {
			hist = strings.Join(lines, "\n") + "\n"
		}
		for _, s := range []Site{site, full} {
			writeFile(t, filepath.Join(s.Path, historyFile), hist)
		}
		_ = os.Remove(filepath.Join(site.Path, archiveFile))
		keep := 1 + rnd.IntN(4)
		want := rollbackView(t, full)
		if err := e.Vacuum(context.Background(), VacuumOptions{Keep: keep, MaxAge: time.Hour}, io.Discard); err != nil {
			t.Fatal(err)
		}
		kept := fileLines(t, filepath.Join(site.Path, historyFile))
		if got := rollbackView(t, site); got != want {
			t.Fatalf("iteration %d, --keep %d: after vacuum\n%s\nwant\n%s\nhistory:\n%s\nkept:\n%s", iter, keep, got, want, hist, strings.Join(kept, "\n"))
		}
		all := append(fileLines(t, filepath.Join(site.Path, archiveFile)), kept...)
		if slices.Sort(all); !slices.Equal(all, slices.Sorted(slices.Values(lines))) {
			t.Fatalf("iteration %d: history and archive do not hold the lines there were", iter)
		}
		if extra := len(kept) - min(keep, len(lines)); extra > 6 {
			t.Fatalf("iteration %d: vacuum kept %d lines beyond --keep %d", iter, extra, keep)
		}
		if iter%10 == 0 && !slices.Contains(kept, string(runningLine)) {
			t.Fatalf("iteration %d: the line of a deploy still running was archived", iter)
		}
		// More deploys after the vacuum.
		for i := range rnd.IntN(6) {
			l := randomLine(rnd, 1000+i) + "\n"
			for _, s := range []Site{site, full} {
				f, err := os.OpenFile(filepath.Join(s.Path, historyFile), os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteString(l)
				f.Close()
			}
		}
		if got, want := rollbackView(t, site), rollbackView(t, full); got != want {
			t.Fatalf("iteration %d, --keep %d: after vacuum and more deploys\n%s\nwant\n%s", iter, keep, got, want)
		}
	}
}

// TestFindDeploy: rollback --to finds a deploy whose record vacuum removed
// in the history or its archive, and refuses a line whose commit is not
// an object id.
func TestFindDeploy(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "web"})
	if err := os.MkdirAll(site.Path, 0o755); err != nil {
		t.Fatal(err)
	}
	line := func(id, commit string) string {
		b, _ := json.Marshal(Record{ID: id, Site: "web", Commit: commit, State: StateLive})
		return string(b) + "\n"
	}
	c := strings.Repeat("ab", 20)
	writeFile(t, filepath.Join(site.Path, archiveFile), line("20260101-000000-0001", c)+line("20260101-000000-0003", "--output=x"))
	writeFile(t, filepath.Join(site.Path, historyFile), line("20260101-000000-0002", c))
	for _, id := range []string{"20260101-000000-0001", "20260101-000000-0002"} {
		if r, err := FindDeploy(e.Data(), site, id); err != nil || r.Commit != c {
			t.Errorf("FindDeploy(%s) = %+v, %v", id, r, err)
		}
	}
	if _, err := FindDeploy(e.Data(), site, "20260101-000000-0003"); err == nil || !strings.Contains(err.Error(), "malformed commit") {
		t.Errorf("a malformed commit: %v", err)
	}
	if _, err := FindDeploy(e.Data(), site, "20260101-000000-0009"); err == nil || !strings.Contains(err.Error(), "web has no deploy 20260101-000000-0009") {
		t.Errorf("an unknown id: %v", err)
	}
	if _, err := FindDeploy(e.Data(), site, "../x"); err == nil {
		t.Error("a malformed id was looked up")
	}
}

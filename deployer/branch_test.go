package deployer

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// branchOf is the commit the site's branch points at.
func branchOf(t *testing.T, e *Engine, site string) string {
	t.Helper()
	tip, _ := e.branchTip(Site{Name: site, Branch: "main"})
	return tip
}

// stash puts commits in the site's repo under a ref of the test's, as the
// objects of a push are there before its deploy.
func stash(t *testing.T, w *worktree, name string) string {
	t.Helper()
	gitOut(t, w.dir, "push", "-q", "-f", "origin", "HEAD:refs/test/"+name)
	return gitOut(t, w.dir, "rev-parse", "HEAD")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestLiveLeavesANewerPushAlone: a deploy going live does not move the
// branch back over a newer push that waits for the site (found by review:
// a push made against the newer one was then refused).
func TestLiveLeavesANewerPushAlone(t *testing.T) {
	e := testEngine(t)
	gates := t.TempDir()
	addSite(t, e, Site{Name: "hello", Build: "until [ -e " + ShellQuote(gates) + "/$EEVEON_COMMIT ]; do sleep 0.01; done"})
	w := newWorktree(t, e, "hello")
	c1 := w.commit(map[string]string{"index.html": "v1"})
	writeFile(t, filepath.Join(gates, c1), "")
	mustDeploy(t, e, Request{})
	a := w.commitOnly(map[string]string{"index.html": "a"})
	stash(t, w, "a")
	b := w.commitOnly(map[string]string{"index.html": "b"})
	stash(t, w, "b")
	push := func(commit, old string) <-chan Record {
		done := make(chan Record, 1)
		go func() {
			r, _ := e.Deploy(context.Background(), Request{Site: "hello", Commit: commit, Old: old, Ref: "refs/heads/main", Trigger: "push", User: "bob", FromPush: true}, &bytes.Buffer{})
			done <- r
		}()
		return done
	}
	doneA := push(a, c1)
	waitUntil(t, "A to build", func() bool { return strings.Contains(queuedRecords(t, e, "hello"), "building") })
	doneB := push(b, a)
	waitUntil(t, "B to wait", func() bool { return strings.Contains(queuedRecords(t, e, "hello"), "queued") })
	if got := branchOf(t, e, "hello"); got != b {
		t.Fatalf("branch %s after B arrived, want %s", ShortCommit(got), ShortCommit(b))
	}
	writeFile(t, filepath.Join(gates, a), "")
	if r := <-doneA; r.State != StateLive {
		t.Fatalf("A = %s", r.State)
	}
	if got := branchOf(t, e, "hello"); got != b {
		t.Errorf("A going live moved the branch to %s over B's push %s", ShortCommit(got), ShortCommit(b))
	}
	writeFile(t, filepath.Join(gates, b), "")
	if r := <-doneB; r.State != StateLive || branchOf(t, e, "hello") != b {
		t.Errorf("B = %s, branch %s", r.State, ShortCommit(branchOf(t, e, "hello")))
	}
}

// TestSupersededPushGoesBack: a push waiting for approval that a deploy
// of another commit supersedes does not leave the branch on a commit that
// never went live (found by review).
func TestSupersededPushGoesBack(t *testing.T) {
	e := testEngine(t)
	addSite(t, e, Site{Name: "hello", Approval: true, Build: "test ! -e broken"})
	w := newWorktree(t, e, "hello")
	c1 := w.commit(map[string]string{"index.html": "v1"})
	r := mustPending(t, e, Request{})
	if _, err := e.Approve(context.Background(), "hello", r.ID, "carol", &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	broken := w.commitOnly(map[string]string{"broken": "yes"})
	stash(t, w, "broken")
	gitOut(t, w.dir, "reset", "-q", "--hard", c1)
	p := w.commitOnly(map[string]string{"index.html": "p"})
	stash(t, w, "p")
	if r, _, err := deploy(t, e, Request{Commit: p, Old: c1, Trigger: "push", FromPush: true}); err != nil || r.State != StatePendingApproval {
		t.Fatalf("push of p = %s, %v", r.State, err)
	}
	if got := branchOf(t, e, "hello"); got != p {
		t.Fatalf("branch %s while p waits, want p", ShortCommit(got))
	}
	// An admin's deploy of another commit supersedes p, and fails.
	if r, _, _ := deploy(t, e, Request{Ref: broken}); r.State != StateFailed {
		t.Fatalf("deploy --ref broken = %s", r.State)
	}
	if got := branchOf(t, e, "hello"); got != c1 {
		t.Errorf("branch %s after p was superseded and the other deploy failed, want the live %s", ShortCommit(got), ShortCommit(c1))
	}

}

func mustPending(t *testing.T, e *Engine, req Request) Record {
	t.Helper()
	r, out, err := deploy(t, e, req)
	if err != nil || r.State != StatePendingApproval {
		t.Fatalf("deploy: %v (state %q)\n%s", err, r.State, out)
	}
	return r
}

// TestDecidedDeployNeverWaitsAgain: a crash between a pending deploy's
// outcome in history and its record (found by an attacker: Recover put a
// superseded deploy back in the approval queue) leaves it decided; and an
// approval never releases a colour another deploy has built into since.
func TestDecidedDeployNeverWaitsAgain(t *testing.T) {
	e := testEngine(t)
	site := addSite(t, e, Site{Name: "hello", Approval: true})
	w := newWorktree(t, e, "hello")
	w.commit(map[string]string{"index.html": "v1"})
	y := mustPending(t, e, Request{})
	// The outcome reached history, the record still says waiting.
	done := y
	done.State, done.Error, done.Phase, done.FinishedAt = StateSuperseded, "replaced", PhaseFinished, time.Now().UTC()
	if err := appendHistory(site, done); err != nil {
		t.Fatal(err)
	}
	e2 := testEngine(t)
	e2.data = e.data
	e2.ws.data = e.data
	e2.Recover()
	if p, ok := e2.Pending("hello"); ok {
		t.Fatalf("deploy %s waits for approval again after recovery", p.ID)
	}
	if r, err := LoadRecord(e.data, "hello", y.ID); err != nil || r.State != StateSuperseded {
		t.Errorf("record after recovery: %s, %v", r.State, err)
	}

	// A waiting deploy whose colour another deploy took is not approved.
	z := mustPending(t, e2, Request{})
	if err := WriteFileAtomic(colourOwner(e.data, "hello", z.Color), []byte("20260101-000000-abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.Approve(context.Background(), "hello", z.ID, "carol", &bytes.Buffer{}); !errors.Is(err, ErrNotWaiting) {
		t.Fatalf("approve of a deploy whose colour was taken: %v", err)
	}
	if LiveColor(site.Path) != "" {
		t.Error("it went live")
	}
}

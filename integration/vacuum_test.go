package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// failNoTouch adds n history lines that write into no colour: deploys of
// a ref the repository does not have fail before the checkout.
func failNoTouch(t *testing.T, e *Env, key, site string, n int) {
	t.Helper()
	for range n {
		if r := e.SSH(key, "deploy", site, "--ref", "no-such-ref"); r.Code == 0 || !strings.Contains(r.Out(), "unknown revision") {
			t.Fatalf("deploy of an unknown ref: exit %d\n%s", r.Code, r.Out())
		}
	}
}

// deployIDs maps the commits of a site's live deploys to their ids, from
// the history in the deploy records (eeveon history before any vacuum).
func deployIDs(t *testing.T, e *Env, site string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(\d{8}-\d{6}-[0-9a-f]{4})\s+live\s+\S+\s+([0-9a-f]{7})`).FindAllStringSubmatch(e.MustEeveon("history", site, "-n", "1000").Stdout, -1) {
		ids[m[2]] = m[1]
	}
	return ids
}

// TestVacuumKeepsRollback: whatever --keep and --max-age say, vacuum
// leaves what the instant rollback needs for both colours, what a
// rollback --to of an old deploy needs, and never makes a colour that a
// failed deploy overwrote look good again.
func TestVacuumKeepsRollback(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "web", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo("web", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(admin, "web"); r.Code != 0 {
		t.Fatalf("push 1: %s", r.Out())
	}
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	if r := repo.Push(admin, "web"); r.Code != 0 || e.Live("web") != "green" {
		t.Fatalf("push 2: live %q\n%s", e.Live("web"), r.Out())
	}
	ids := deployIDs(t, e, "web")
	serves := func(commit, color string) bool {
		return e.Live("web") == color && e.ReadSite("web", "public/index.html") == "commit "+commit+" color "+color+"\n"
	}
	rollback := func(commit, color string) {
		t.Helper()
		r := e.SSH(admin, "rollback", "web")
		if r.Code != 0 || !strings.Contains(r.Stdout, "live: web "+commit[:7]+" on "+color) || !serves(commit, color) {
			t.Fatalf("rollback to %s on %s: exit %d, live %q\n%s", commit[:7], color, r.Code, e.Live("web"), r.Out())
		}
	}

	// The daily vacuum of a site with more failures than --keep lines
	// since its last swap.
	failNoTouch(t, e, admin, "web", 6)
	if r := e.MustEeveon("vacuum", "--keep", "5", "--max-age", "1ns"); !strings.Contains(r.Stdout, "history lines to .deploy_history.archive") {
		t.Fatalf("vacuum --keep 5 archived nothing:\n%s", r.Stdout)
	}
	rollback(c1, "blue")

	// --keep 1: only the rollback line would be left; green's release
	// must stay reachable too.
	failNoTouch(t, e, admin, "web", 2)
	e.MustEeveon("vacuum", "--keep", "1", "--max-age", "1ns")
	rollback(c2, "green")
	e.MustEeveon("vacuum", "--keep", "1", "--max-age", "1ns")
	rollback(c1, "blue")

	// A deploy whose record and history line vacuum moved away can still
	// be redeployed by its id.
	if _, err := os.Stat(filepath.Join(e.Data, "deploys", "web", ids[c1[:7]]+".json")); !os.IsNotExist(err) {
		t.Fatalf("the first deploy's record is still there (%v): the test does not test what it says", err)
	}
	r := e.SSH(admin, "rollback", "web", "--to", ids[c1[:7]])
	if r.Code != 0 || !strings.Contains(r.Stdout, "building green") || !serves(c1, "green") {
		t.Fatalf("rollback --to a vacuumed deploy: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}
	// An id that never existed is still a clear error.
	r = e.SSH(admin, "rollback", "web", "--to", "20200101-000000-abcd")
	if r.Code == 0 || !strings.Contains(r.Stderr, "web has no deploy 20200101-000000-abcd") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Fatalf("rollback --to an unknown id: exit %d\n%s", r.Code, r.Out())
	}

	// A failed build overwrote blue; vacuum must not drop that line and
	// leave the older good one of blue to be swapped to.
	repo.Commit("broken", map[string]string{"build.sh": "#!/bin/sh\nexit 1\n"})
	if r := repo.Push(admin, "web"); !strings.Contains(r.Stderr, "FAILED") {
		t.Fatalf("broken push did not fail:\n%s", r.Out())
	}
	failNoTouch(t, e, admin, "web", 2)
	e.MustEeveon("vacuum", "--keep", "1", "--max-age", "1ns")
	if r := e.SSH(admin, "rollback", "web"); r.Code == 0 || !strings.Contains(r.Stderr, "blue no longer holds a good release") || !serves(c1, "green") {
		t.Fatalf("rollback onto a colour a failed deploy overwrote, after vacuum: exit %d\n%s", r.Code, r.Out())
	}
}

// TestVacuumKeepsRollbackAcrossInPlace: a spell of in-place deploys
// leaves both colour directories as they were; a vacuum meanwhile must
// not take away the rollback to the colour not overwritten since.
func TestVacuumKeepsRollbackAcrossInPlace(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "web", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo("web", map[string]string{"build.sh": buildScript})
	if r := repo.Push(admin, "web"); r.Code != 0 {
		t.Fatalf("push 1: %s", r.Out())
	}
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	if r := repo.Push(admin, "web"); r.Code != 0 || e.Live("web") != "green" {
		t.Fatalf("push 2: live %q\n%s", e.Live("web"), r.Out())
	}
	e.MustEeveon("site", "set", "web", "--strategy", "in-place")
	c3 := repo.Commit("three", map[string]string{"x": "3"})
	if r := repo.Push(admin, "web"); r.Code != 0 || e.ReadSite("web", "public/index.html") != "commit "+c3+" color in-place\n" {
		t.Fatalf("in-place push: exit %d\n%s", r.Code, r.Out())
	}
	e.MustEeveon("vacuum", "--keep", "1", "--max-age", "1ns")
	e.MustEeveon("site", "set", "web", "--strategy", "blue-green")
	repo.Commit("four", map[string]string{"x": "4"})
	if r := repo.Push(admin, "web"); r.Code != 0 || e.Live("web") != "blue" {
		t.Fatalf("blue-green push after in-place: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}
	r := e.SSH(admin, "rollback", "web")
	if r.Code != 0 || e.Live("web") != "green" || e.ReadSite("web", "public/index.html") != "commit "+c2+" color green\n" {
		t.Fatalf("rollback to green: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}
}

// TestAppVacuumKeepsRollback: the same for an app site: after vacuum the
// rollback starts the previous colour's app again and the proxy serves it.
func TestAppVacuumKeepsRollback(t *testing.T) {
	t.Parallel()
	appBin := testAppBinary(t)
	e := newAppEnv(t)
	admin := e.AddKey("admin", "admin", "")
	proxy := "127.0.0.1:" + freePort(t)
	e.MustEeveon("site", "add", "api", "--start", "exec "+appBin, "--proxy", proxy, "--health-path", "/up")
	repo := e.NewRepo("api", map[string]string{"VERSION": "v1\n"})
	for _, v := range []string{"v1", "v2"} {
		if v != "v1" {
			repo.Commit(v, map[string]string{"VERSION": v + "\n"})
		}
		if r := repo.Push(admin, "api"); r.Code != 0 || !strings.Contains(r.Stderr, "live: api") {
			t.Fatalf("push %s: exit %d\n%s", v, r.Code, r.Out())
		}
	}
	failNoTouch(t, e, admin, "api", 3)
	e.MustEeveon("vacuum", "--keep", "2", "--max-age", "1ns")
	if r := e.SSH(admin, "rollback", "api"); r.Code != 0 || !strings.Contains(r.Out(), "health check passed") {
		t.Fatalf("rollback after vacuum: exit %d\n%s", r.Code, r.Out())
	}
	if code, body := appGet(t, "http://"+proxy+"/"); code != 200 || body != "v1" || e.Live("api") != "blue" {
		t.Fatalf("after the rollback the proxy answers %d %q, live %q", code, body, e.Live("api"))
	}
	e.MustEeveon("vacuum", "--keep", "1", "--max-age", "1ns")
	if r := e.SSH(admin, "rollback", "api"); r.Code != 0 {
		t.Fatalf("second rollback after vacuum: exit %d\n%s", r.Code, r.Out())
	}
	if code, body := appGet(t, "http://"+proxy+"/"); code != 200 || body != "v2" || e.Live("api") != "green" {
		t.Fatalf("after the second rollback the proxy answers %d %q, live %q", code, body, e.Live("api"))
	}
	e.Stop()
	if left := leftovers(e.Dir); len(left) > 0 {
		t.Fatalf("processes left after the server stopped:\n%s", strings.Join(left, "\n"))
	}
}

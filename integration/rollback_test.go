package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestRollback(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	deployer := e.AddKey("bob", "deployer", "hello")
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(admin, "hello"); r.Code != 0 {
		t.Fatalf("push 1: %s", r.Out())
	}
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	if r := repo.Push(deployer, "hello"); r.Code != 0 {
		t.Fatalf("push 2: %s", r.Out())
	}
	if e.Live("hello") != "green" {
		t.Fatalf("expected green live, got %q", e.Live("hello"))
	}

	// A deployer may not roll back.
	r := e.SSH(deployer, "rollback", "hello")
	if r.Code == 0 || !strings.Contains(r.Stderr, "eeveon: permission denied: deployer may not rollback hello") {
		t.Fatalf("deployer rollback: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("hello") != "green" {
		t.Fatal("a refused rollback changed current")
	}

	// An admin swaps back instantly: no build runs.
	r = e.SSH(admin, "rollback", "hello")
	if r.Code != 0 {
		t.Fatalf("rollback: exit %d\n%s", r.Code, r.Out())
	}
	if strings.Contains(r.Stdout, "building") || !strings.Contains(r.Stdout, "live: hello "+c1[:7]+" on blue") {
		t.Fatalf("rollback output:\n%s", r.Stdout)
	}
	if e.Live("hello") != "blue" || e.ReadSite("hello", "public/index.html") != "commit "+c1+" color blue\n" {
		t.Fatalf("after rollback current -> %q serving %q", e.Live("hello"), e.ReadSite("hello", "public/index.html"))
	}
	st := e.SSH(admin, "status", "hello")
	if !strings.Contains(st.Stdout, "blue "+c1[:7]) {
		t.Errorf("status after rollback:\n%s", st.Stdout)
	}
	hist := e.SSH(admin, "history", "hello")
	if !regexp.MustCompile(`live\s+blue\s+` + c1[:7] + `\s+alice\s+rollback`).MatchString(hist.Stdout) {
		t.Errorf("history lacks the rollback:\n%s", hist.Stdout)
	}

	// Rolling back again goes forward to green.
	if r := e.SSH(admin, "rollback", "hello"); r.Code != 0 || e.Live("hello") != "green" {
		t.Fatalf("second rollback: exit %d, live %q\n%s", r.Code, e.Live("hello"), r.Out())
	}

	// A failed deploy overwrote blue: no instant rollback to it any more.
	repo.Commit("broken", map[string]string{"build.sh": "#!/bin/sh\nexit 1\n"})
	if r := repo.Push(admin, "hello"); !strings.Contains(r.Stderr, "FAILED") {
		t.Fatalf("broken push did not fail:\n%s", r.Out())
	}
	r = e.SSH(admin, "rollback", "hello")
	if r.Code == 0 || !strings.Contains(r.Out(), "blue no longer holds a good release") {
		t.Fatalf("rollback onto a failed colour: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("hello") != "green" || e.ReadSite("hello", "public/index.html") != "commit "+c2+" color green\n" {
		t.Fatal("a refused rollback changed what is served")
	}

	// --to redeploys the first release through the pipeline.
	first := regexp.MustCompile(`(?m)^(\d{8}-\d{6}-[0-9a-f]{4})\s+live\s+blue\s+` + c1[:7]).FindStringSubmatch(hist.Stdout)
	if first == nil {
		t.Fatalf("no first deploy in history:\n%s", hist.Stdout)
	}
	r = e.SSH(admin, "rollback", "hello", "--to", first[1])
	if r.Code != 0 || !strings.Contains(r.Stdout, "building blue") || e.Live("hello") != "blue" {
		t.Fatalf("rollback --to: exit %d, live %q\n%s", r.Code, e.Live("hello"), r.Out())
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c1+" color blue\n" {
		t.Fatalf("after rollback --to, serving %q", got)
	}
}

// TestRollbackAfterFailedRollbackTo: a rollback --to that fails has written
// into the inactive colour, so the instant rollback may not swap to it.
func TestRollbackAfterFailedRollbackTo(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	marker := filepath.Join(e.Dir, "fail-builds")
	build := "#!/bin/sh\nset -e\ntest ! -e '" + marker + "'\nmkdir -p public\necho \"commit $EEVEON_COMMIT\" > public/index.html\n"
	e.MustEeveon("site", "add", "web", "--build", "./build.sh")
	repo := e.NewRepo("web", map[string]string{"build.sh": build})
	for i := 2; i <= 3; i++ {
		if r := repo.Push(admin, "web"); r.Code != 0 {
			t.Fatalf("push: %s", r.Out())
		}
		repo.Commit("next", map[string]string{"n": strings.Repeat("x", i)})
	}
	if r := repo.Push(admin, "web"); r.Code != 0 || e.Live("web") != "blue" {
		t.Fatalf("third push: live %q\n%s", e.Live("web"), r.Out())
	}
	served := e.ReadSite("web", "public/index.html")
	hist := e.MustEeveon("history", "web").Stdout
	first := regexp.MustCompile(`(?m)^(\d{8}-\d{6}-[0-9a-f]{4})\s+live\s+blue`).FindStringSubmatch(hist)
	if first == nil {
		t.Fatalf("no first deploy:\n%s", hist)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.SSH(admin, "rollback", "web", "--to", first[1]); r.Code == 0 {
		t.Fatalf("rollback --to with a failing build succeeded:\n%s", r.Out())
	}
	r := e.SSH(admin, "rollback", "web")
	if r.Code == 0 || !strings.Contains(r.Stderr, "green no longer holds a good release") {
		t.Fatalf("instant rollback onto a colour a failed rollback --to wrote: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("web") != "blue" || e.ReadSite("web", "public/index.html") != served {
		t.Fatal("what is served changed")
	}
	if !strings.Contains(e.MustEeveon("history", "web").Stdout, "rollback-to") {
		t.Error("the failed rollback --to is not in the history as rollback-to")
	}
}

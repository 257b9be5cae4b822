package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The site's build writes the commit into the page, so the page proves
// which commit each colour holds.
const buildScript = "#!/bin/sh\nset -e\nmkdir -p public\necho \"commit $EEVEON_COMMIT color $EEVEON_COLOR\" > public/index.html\necho built $EEVEON_SITE\n"

func TestPushGoesLiveBlueThenGreen(t *testing.T) {
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript, "README": "v1"})
	c1 := repo.Git("rev-parse", "HEAD")

	r := repo.Push(admin, "hello")
	if r.Code != 0 {
		t.Fatalf("first push failed: %s", r.Out())
	}
	for _, want := range []string{"remote: ==> site hello, commit " + c1[:7], "building blue", "built hello", "health check passed", "live: hello " + c1[:7] + " on blue", "finished in"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("push output lacks %q:\n%s", want, r.Stderr)
		}
	}
	if got := e.Live("hello"); got != "blue" {
		t.Fatalf("current -> %q, want blue", got)
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c1+" color blue\n" {
		t.Fatalf("live page = %q", got)
	}
	if _, err := os.Stat(filepath.Join(e.SitePath("hello"), "blue", ".git")); !os.IsNotExist(err) {
		t.Errorf("colour dir has a .git: %v", err)
	}

	c2 := repo.Commit("second", map[string]string{"README": "v2"})
	r = repo.Push(admin, "hello")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c2[:7]+" on green") {
		t.Fatalf("second push: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.Live("hello"); got != "green" {
		t.Fatalf("current -> %q after second push, want green", got)
	}
	// The previous colour is intact for a rollback.
	b, err := os.ReadFile(filepath.Join(e.SitePath("hello"), "blue", "public", "index.html"))
	if err != nil || string(b) != "commit "+c1+" color blue\n" {
		t.Fatalf("blue was not kept intact: %q, %v", b, err)
	}

	hist := e.MustEeveon("history", "hello")
	if n := strings.Count(hist.Stdout, " live "); n != 2 {
		t.Errorf("history shows %d live deploys, want 2:\n%s", n, hist.Stdout)
	}
	st := e.MustEeveon("status", "hello")
	if !strings.Contains(st.Stdout, "green "+c2[:7]) || !strings.Contains(st.Stdout, "by alice") {
		t.Errorf("status does not show green %s by alice:\n%s", c2[:7], st.Stdout)
	}
}

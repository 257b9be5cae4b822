package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVacuum(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	deployer := e.AddKey("bob", "deployer", "")
	e.MustEeveon("site", "add", "web")
	repo := e.NewRepo("web", map[string]string{"v": "0"})
	var commits []string
	for i := 1; i <= 5; i++ {
		commits = append(commits, repo.Commit("c", map[string]string{"v": strings.Repeat("x", i)}))
		if r := repo.Push(admin, "web"); r.Code != 0 {
			t.Fatalf("push %d: %s", i, r.Out())
		}
	}
	records := func() []string {
		m, _ := filepath.Glob(filepath.Join(e.Data, "deploys", "web", "*.json"))
		return m
	}
	if n := len(records()); n != 5 {
		t.Fatalf("%d deploy records before vacuum, want 5", n)
	}
	leftover := filepath.Join(e.SitePath("web"), ".eeveon-tmp-20260101-000000-abcd")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	liveBefore := e.ReadSite("web", "v")

	if r := e.SSH(deployer, "vacuum"); r.Code == 0 || !strings.Contains(r.Stderr, "permission denied: deployer may not vacuum") {
		t.Fatalf("deployer vacuum: exit %d\n%s", r.Code, r.Out())
	}
	dry := e.MustEeveon("vacuum", "--keep", "2", "--max-age", "1ns", "--dry-run")
	if !strings.Contains(dry.Stdout, "would remove 3 deploy records") || len(records()) != 5 {
		t.Fatalf("dry run changed something or said something else:\n%s", dry.Stdout)
	}
	r := e.MustEeveon("vacuum", "--keep", "2", "--max-age", "1ns")
	for _, want := range []string{"removed 3 deploy records", "moved 3 history lines", "leftover .eeveon-tmp-"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("vacuum output lacks %q:\n%s", want, r.Stdout)
		}
	}
	if n := len(records()); n != 2 {
		t.Errorf("%d deploy records after vacuum, want 2 (the live and the rollback release)", n)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Error("the leftover temp dir is still there")
	}
	hist := e.MustEeveon("history", "web").Stdout
	if strings.Count(hist, " live ") != 2 {
		t.Errorf("history should keep the last 2 lines:\n%s", hist)
	}
	arch, _ := os.ReadFile(filepath.Join(e.SitePath("web"), ".deploy_history.archive"))
	if strings.Count(string(arch), "\n") != 3 || !strings.Contains(string(arch), commits[0]) {
		t.Errorf("archive should hold the 3 oldest lines:\n%s", arch)
	}
	// Neither the live colour nor the rollback colour was touched.
	if e.ReadSite("web", "v") != liveBefore {
		t.Error("vacuum changed the live colour")
	}
	if r := e.SSH(admin, "rollback", "web"); r.Code != 0 || !strings.Contains(r.Stdout, "live: web "+commits[3][:7]) {
		t.Fatalf("rollback after vacuum: exit %d\n%s", r.Code, r.Out())
	}
	// Old segments of the rotated logs go; the current audit log stays.
	old := filepath.Join(e.Data, "audit.log.20200101T000000.000000000Z")
	if err := os.WriteFile(old, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-90 * 24 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if r := e.MustEeveon("vacuum"); !strings.Contains(r.Stdout, "removed log segment audit.log.20200101") {
		t.Errorf("old audit segment not removed:\n%s", r.Stdout)
	}
	if _, err := os.Stat(filepath.Join(e.Data, "audit.log")); err != nil {
		t.Error("vacuum removed the live audit log")
	}

	// Offline, vacuum runs in the CLI under the data dir's lock.
	e.Stop()
	if r := e.Eeveon("vacuum", "--dry-run"); r.Code != 0 {
		t.Fatalf("offline vacuum: exit %d\n%s", r.Code, r.Out())
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.MustEeveon("site", "add", "web")
	r := e.Eeveon("check")
	if r.Code != 0 || !strings.Contains(r.Stdout, "OK    git") || !strings.Contains(r.Stdout, "ssh "+e.Addr+" is in use by the running eeveon server") ||
		!strings.Contains(r.Stdout, "WARN  keys            no keys") || !strings.Contains(r.Stdout, "OK    containment     each build") {
		t.Fatalf("check on a fresh server: exit %d\n%s", r.Code, r.Out())
	}
	hostKey := filepath.Join(e.Data, "ssh_host_ed25519_key")
	if err := os.Chmod(hostKey, 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.Eeveon("check", "--json")
	var results []struct{ Check, Status, Message, Fix string }
	if err := json.Unmarshal([]byte(r.Stdout), &results); err != nil {
		t.Fatalf("check --json is not JSON: %v\n%s", err, r.Stdout)
	}
	failed := false
	for _, res := range results {
		if res.Check == "host key" && res.Status == "FAIL" && res.Fix == "chmod 600 "+hostKey {
			failed = true
		}
	}
	if r.Code == 0 || !failed {
		t.Fatalf("a world-readable host key is not a FAIL with its fix: exit %d\n%s", r.Code, r.Stdout)
	}
	if err := os.WriteFile(filepath.Join(e.Data, "eeveon.toml"), []byte("nonsense = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.Eeveon("check"); r.Code == 0 || !strings.Contains(r.Stdout, "unknown key nonsense") {
		t.Fatalf("a bad config is not reported: exit %d\n%s", r.Code, r.Stdout)
	}
}

func TestOnSwap(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	logf := filepath.Join(e.Dir, "swaps.log")
	e.MustEeveon("site", "add", "web", "--on-swap", "echo \"$EEVEON_COLOR $EEVEON_PATH $EEVEON_COMMIT\" >> '"+logf+"'")
	repo := e.NewRepo("web", map[string]string{"v": "1"})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(admin, "web"); r.Code != 0 || !strings.Contains(r.Stderr, "on_swap:") {
		t.Fatalf("push: %s", r.Out())
	}
	c2 := repo.Commit("two", map[string]string{"v": "2"})
	if r := repo.Push(admin, "web"); r.Code != 0 {
		t.Fatal(r.Out())
	}
	if r := e.SSH(admin, "rollback", "web"); r.Code != 0 {
		t.Fatal(r.Out())
	}
	b, _ := os.ReadFile(logf)
	want := strings.Join([]string{
		"blue " + filepath.Join(e.SitePath("web"), "blue") + " " + c1,
		"green " + filepath.Join(e.SitePath("web"), "green") + " " + c2,
		"blue " + filepath.Join(e.SitePath("web"), "blue") + " " + c1,
	}, "\n") + "\n"
	if string(b) != want {
		t.Fatalf("on_swap saw:\n%s\nwant:\n%s", b, want)
	}
	// A failing on_swap is reported; the switch stands.
	e.MustEeveon("site", "set", "web", "--on-swap", "exit 4")
	repo.Commit("three", map[string]string{"v": "3"})
	r := repo.Push(admin, "web")
	if r.Code != 0 || !strings.Contains(r.Stderr, "warning: on_swap exited with status 4") || e.Live("web") != "green" {
		t.Fatalf("failing on_swap: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}
}

func TestCheckAppAddressClash(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	proxy := "127.0.0.1:" + freePort(t)
	e.MustEeveon("site", "add", "a", "--start", "true", "--proxy", proxy)
	if r := e.Eeveon("site", "add", "b", "--start", "true", "--proxy", proxy); r.Code == 0 || !strings.Contains(r.Stderr, "sites b and a both use "+proxy) {
		t.Fatalf("site add on a taken proxy address: exit %d\n%s", r.Code, r.Out())
	}
	// A hand-edited site file gets past that; check finds it.
	a, err := os.ReadFile(filepath.Join(e.Data, "sites.d", "a.toml"))
	if err != nil {
		t.Fatal(err)
	}
	b := strings.Replace(string(a), `name = "a"`, `name = "b"`, 1)
	b = strings.Replace(b, filepath.Join(e.Data, "sites", "a"), filepath.Join(e.Data, "sites", "b"), 1)
	if err := os.WriteFile(filepath.Join(e.Data, "sites.d", "b.toml"), []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.Eeveon("check")
	if r.Code == 0 || !strings.Contains(r.Stdout, "sites a and b both use "+proxy) {
		t.Fatalf("two app sites on one proxy address: exit %d\n%s", r.Code, r.Stdout)
	}
}

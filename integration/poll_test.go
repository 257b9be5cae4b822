package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pollState reads the poller's state file of a site.
func (e *Env) pollState(site string) (st struct {
	LastSeen     string `json:"last_seen"`
	LastDeployed string `json:"last_deployed"`
	Failures     int    `json:"failures"`
	LastError    string `json:"last_error"`
}) {
	b, err := os.ReadFile(filepath.Join(e.Data, "state", site+".poll.json"))
	if err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// waitFor polls cond until it holds or within passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %s", what, within)
}

// waitLiveCommit waits until the site serves a page built from commit.
func (e *Env) waitLiveCommit(site, commit string, within time.Duration) {
	e.t.Helper()
	waitFor(e.t, within, site+" live with "+commit[:7], func() bool {
		return strings.HasPrefix(e.ReadSite(site, "public/index.html"), "commit "+commit+" ")
	})
}

func TestPollFileRemoteDeploysBacksOffAndRecovers(t *testing.T) {
	e := NewEnv(t)
	remote := filepath.Join(e.Dir, "remote.git")
	if r := run(t, e.Dir, nil, "", "git", "init", "-q", "--bare", remote); r.Code != 0 {
		t.Fatal(r.Out())
	}
	repo := e.NewRepo("web", map[string]string{"build.sh": buildScript, "README": "v1"})
	repo.Git("remote", "add", "origin", remote)
	repo.Git("push", "-q", "origin", "main")
	c1 := repo.Git("rev-parse", "HEAD")

	// Added while the server runs: no restart needed.
	e.MustEeveon("site", "add", "web", "--poll", "file://"+remote, "--interval", "1s",
		"--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	e.waitLiveCommit("web", c1, 15*time.Second)
	st := e.MustEeveon("status", "web")
	if !strings.Contains(st.Stdout, c1[:7]) || !strings.Contains(st.Stdout, "by poll") {
		t.Errorf("status does not show %s by poll:\n%s", c1[:7], st.Stdout)
	}

	// No change: nothing fetched, nothing deployed over several intervals.
	time.Sleep(3500 * time.Millisecond)
	if h := e.MustEeveon("history", "web"); strings.Count(h.Stdout, " live ") != 1 {
		t.Fatalf("history after unchanged intervals:\n%s", h.Stdout)
	}
	if n := strings.Count(e.ServerLog(), "web moved to"); n != 1 {
		t.Fatalf("%d 'moved to' lines for one commit:\n%s", n, e.ServerLog())
	}

	// The remote goes away: one warning, however many rounds fail.
	if err := os.Rename(remote, remote+".away"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "two failed polls", func() bool { return e.pollState("web").Failures >= 2 })
	if n := strings.Count(e.ServerLog(), "web: poll failed"); n != 1 {
		t.Fatalf("%d warnings for %d failed polls, want 1:\n%s", n, e.pollState("web").Failures, e.ServerLog())
	}
	if st := e.pollState("web"); !strings.Contains(st.LastError, "repository not found") {
		t.Errorf("poll state error = %q", st.LastError)
	}

	// Back, with a new commit: deployed, and the recovery is logged once.
	if err := os.Rename(remote+".away", remote); err != nil {
		t.Fatal(err)
	}
	c2 := repo.Commit("second", map[string]string{"README": "v2"})
	repo.Git("push", "-q", "origin", "main")
	e.waitLiveCommit("web", c2, 25*time.Second)
	log := e.ServerLog()
	if strings.Count(log, "web: poll recovered") != 1 || strings.Count(log, "web: poll failed") != 1 {
		t.Errorf("want one failure and one recovery line:\n%s", log)
	}
	if !strings.Contains(log, "poll: web moved to "+c2[:7]+"; fetching") {
		t.Errorf("log lacks the moved-to line for %s:\n%s", c2[:7], log)
	}
	if h := e.MustEeveon("history", "web"); strings.Count(h.Stdout, " live ") != 2 {
		t.Errorf("history:\n%s", h.Stdout)
	}
	if st := e.pollState("web"); st.LastDeployed != c2 || st.Failures != 0 || st.LastError != "" {
		t.Errorf("poll state = %+v", st)
	}

	// A restart does not deploy the same commit again.
	e.Stop()
	e.Start()
	time.Sleep(2500 * time.Millisecond)
	if h := e.MustEeveon("history", "web"); strings.Count(h.Stdout, " live ") != 2 {
		t.Errorf("history after restart:\n%s", h.Stdout)
	}
}

func TestPollOverEmbeddedSSH(t *testing.T) {
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "src", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")

	// mirror polls src on this same server, with a deployer key for src
	// and the server's host key pinned.
	bot := e.AddKey("mirror-bot", "deployer", "src")
	pub, err := os.ReadFile(filepath.Join(e.Data, "ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(e.Dir, "poll_known_hosts")
	if err := os.WriteFile(known, []byte("[127.0.0.1]:"+e.Port+" "+string(pub)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.MustEeveon("site", "add", "mirror", "--poll", "ssh://deploy@127.0.0.1:"+e.Port+"/src", "--interval", "1s",
		"--poll-ssh-key", bot, "--poll-known-hosts", known,
		"--build", "./build.sh", "--health-cmd", "test -s public/index.html")

	// The same, but expecting another host key: refused, never deployed.
	other := e.NewKey("not-the-host")
	otherPub, err := os.ReadFile(other + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	wrongKnown := filepath.Join(e.Dir, "wrong_known_hosts")
	if err := os.WriteFile(wrongKnown, []byte("[127.0.0.1]:"+e.Port+" "+string(otherPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.MustEeveon("site", "add", "spoofed", "--poll", "ssh://deploy@127.0.0.1:"+e.Port+"/src", "--interval", "1s",
		"--poll-ssh-key", bot, "--poll-known-hosts", wrongKnown, "--build", "./build.sh")

	repo := e.NewRepo("src", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")
	if r := repo.Push(admin, "src"); r.Code != 0 {
		t.Fatalf("push: %s", r.Out())
	}
	e.waitLiveCommit("src", c1, 5*time.Second)
	e.waitLiveCommit("mirror", c1, 15*time.Second)
	if st := e.MustEeveon("status", "mirror"); !strings.Contains(st.Stdout, c1[:7]) {
		t.Errorf("mirror status:\n%s", st.Stdout)
	}
	if st := e.pollState("mirror"); st.LastDeployed != c1 {
		t.Errorf("mirror poll state = %+v", st)
	}

	c2 := repo.Commit("second", map[string]string{"README": "v2"})
	if r := repo.Push(admin, "src"); r.Code != 0 {
		t.Fatalf("push: %s", r.Out())
	}
	e.waitLiveCommit("mirror", c2, 15*time.Second)

	if st := e.pollState("spoofed"); st.Failures == 0 || !strings.Contains(st.LastError, "key mismatch") || st.LastDeployed != "" {
		t.Errorf("spoofed poll state = %+v, want host key mismatch failures", st)
	}
	if e.Live("spoofed") != "" {
		t.Error("a site polling with the wrong host key went live")
	}
	if n := strings.Count(e.ServerLog(), "spoofed: poll failed"); n != 1 {
		t.Errorf("%d warnings for the spoofed site, want 1", n)
	}
}

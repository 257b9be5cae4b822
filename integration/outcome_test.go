package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The push is the deploy: git push exits non-zero when the deploy did not
// go live, and the branch on the server only moves when it did, so that
// pushing the same commit again after a failure deploys it again.

// healthGate is a health command that passes while the file gate exists:
// the test makes a deploy fail or pass without a new commit.
func healthGate(e *Env) (cmd string, open, shut func()) {
	gate := filepath.Join(e.Dir, "healthy")
	open = func() {
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	shut = func() { _ = os.Remove(gate) }
	return "test -f '" + gate + "' || { echo gate shut; false; }", open, shut
}

// serverBranch is the commit the site's branch points at on the server.
func (e *Env) serverBranch(site string) string {
	e.t.Helper()
	return strings.TrimSpace(run(e.t, e.Dir, nil, "", "git", "--git-dir", filepath.Join(e.Data, "repos", site+".git"), "rev-parse", "--verify", "-q", "main").Stdout)
}

func wantRejected(t *testing.T, what string, r Result, reason string) {
	t.Helper()
	if r.Code == 0 {
		t.Fatalf("%s: git push exited 0 although the deploy did not go live:\n%s", what, r.Out())
	}
	if !strings.Contains(r.Stderr, "! [remote rejected] main -> main (") || !strings.Contains(r.Stderr, reason) {
		t.Fatalf("%s: push output lacks the rejected ref with %q:\n%s", what, reason, r.Out())
	}
	if strings.Contains(r.Stderr, "live: hello") {
		t.Fatalf("%s: push output claims the deploy went live:\n%s", what, r.Out())
	}
}

func TestPushExitStatusAndRetry(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.restartWithConfig(shortHealthConfig)
	gate, open, shut := healthGate(e)
	open()
	admin, repo, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh", "--health-cmd", gate)
	if got := e.serverBranch("hello"); got != c1 {
		t.Fatalf("server branch %s after a live push, want %s", got, c1)
	}

	// A failing build: the push is rejected and the branch stays.
	c2 := repo.Commit("broken build", map[string]string{"build.sh": "#!/bin/sh\necho about to fail\nexit 3\n"})
	r := repo.Push(admin, "hello")
	wantRejected(t, "failed build", r, "build: exited with status 3")
	if got := e.serverBranch("hello"); got != c1 {
		t.Fatalf("server branch moved to %s after a failed deploy, want the live %s", got, c1)
	}
	st := e.SSH(admin, "status", "hello")
	if !strings.Contains(st.Stdout, "live:     blue "+c1[:7]) || !strings.Contains(st.Stdout, "failed:   deploy ") || !strings.Contains(st.Stdout, "of "+c2[:7]) {
		t.Errorf("status does not tell what is live and what failed:\n%s", st.Out())
	}

	// A transient failure (the health check), then the same commit again.
	c3 := repo.Commit("good again", map[string]string{"build.sh": buildScript})
	shut()
	wantRejected(t, "failed health check", repo.Push(admin, "hello"), "health check")
	if e.Live("hello") != "blue" {
		t.Fatalf("a failed health check changed current to %q", e.Live("hello"))
	}
	open()
	r = repo.Push(admin, "hello")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c3[:7]+" on green") {
		t.Fatalf("pushing the same commit again did not deploy it: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.serverBranch("hello"); got != c3 {
		t.Fatalf("server branch %s after the retry went live, want %s", got, c3)
	}

	// Non-fast-forward: an unrelated history, forced, fails and is retried.
	other := e.NewRepo("other", map[string]string{"build.sh": buildScript, "who": "other"})
	cx := other.Git("rev-parse", "HEAD")
	shut()
	wantRejected(t, "forced push with a failing health check", other.Push(admin, "hello", "--force", "main"), "health check")
	if got := e.serverBranch("hello"); got != c3 {
		t.Fatalf("server branch %s after a failed forced push, want %s", got, c3)
	}
	open()
	if r := other.Push(admin, "hello", "--force", "main"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+cx[:7]) {
		t.Fatalf("retry of the forced push: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.serverBranch("hello"); got != cx {
		t.Fatalf("server branch %s after the forced retry, want %s", got, cx)
	}

	hist := e.MustEeveon("history", "hello").Stdout
	for _, want := range []string{" failed ", c2[:7], c3[:7]} {
		if !strings.Contains(hist, want) {
			t.Errorf("history lacks %q:\n%s", want, hist)
		}
	}

	// Deleting the deploy branch would leave nothing to deploy: refused.
	r = repo.Push(admin, "hello", ":main")
	if r.Code == 0 || e.serverBranch("hello") != cx {
		t.Fatalf("deleting the deploy branch: exit %d, branch %q\n%s", r.Code, e.serverBranch("hello"), r.Out())
	}
	// Other branches are stored as before, with no deploy.
	repo.Git("branch", "-f", "feature")
	if r := repo.Push(admin, "hello", "feature"); r.Code != 0 || strings.Contains(r.Stderr, "building") {
		t.Fatalf("push of another branch: exit %d\n%s", r.Code, r.Out())
	}
}

// The SSH verbs that deploy exit non-zero when nothing went live.
func TestVerbsExitNonZeroWhenNothingWentLive(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.restartWithConfig(shortHealthConfig)
	gate, open, shut := healthGate(e)
	open()
	admin, repo, _ := helloLiveOnBlue(t, e, "--build", "./build.sh", "--health-cmd", gate)
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	if r := repo.Push(admin, "hello"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c2[:7]+" on green") {
		t.Fatalf("second push: exit %d\n%s", r.Code, r.Out())
	}
	shut()
	for _, args := range [][]string{{"deploy", "hello"}, {"rollback", "hello"}} {
		if r := e.SSH(admin, args...); r.Code == 0 || !strings.Contains(r.Out(), "FAILED") {
			t.Errorf("ssh %s with a failing health check: exit %d\n%s", strings.Join(args, " "), r.Code, r.Out())
		}
		if r := e.Eeveon(args...); r.Code == 0 {
			t.Errorf("eeveon %s with a failing health check: exit 0\n%s", strings.Join(args, " "), r.Out())
		}
	}
	if e.Live("hello") != "green" {
		t.Fatalf("failed verbs changed current to %q", e.Live("hello"))
	}
	// approve re-checks health: a failing re-check is not a success.
	e.MustEeveon("site", "set", "hello", "--approval")
	open()
	repo.Commit("three", map[string]string{"x": "3"})
	if r := repo.Push(admin, "hello"); r.Code != 0 || !strings.Contains(r.Stderr, "awaiting approval") {
		t.Fatalf("push to an approval site: exit %d\n%s", r.Code, r.Out())
	}
	shut()
	if r := e.SSH(admin, "approve", "hello"); r.Code == 0 {
		t.Errorf("approve whose health re-check failed exited 0:\n%s", r.Out())
	}
	if e.Live("hello") != "green" {
		t.Fatalf("a failed approval changed current to %q", e.Live("hello"))
	}
}

var pendingHelloRe = regexp.MustCompile(`awaiting approval: ssh -p \d+ deploy@127\.0\.0\.1 approve hello (\d{8}-\d{6}-[0-9a-f]{4})`)

// A rejected or expired deploy can be pushed again.
func TestRejectedAndExpiredDeploysCanBePushedAgain(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	alice := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "hello", "--approval", "--approval-timeout", "2s", "--build", "./build.sh")
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")
	push := func(what string) string {
		t.Helper()
		r := repo.Push(alice, "hello")
		m := pendingHelloRe.FindStringSubmatch(r.Stderr)
		if r.Code != 0 || m == nil {
			t.Fatalf("%s: push did not end awaiting approval with exit 0: exit %d\n%s", what, r.Code, r.Out())
		}
		return m[1]
	}
	id := push("first push")
	e.MustEeveon("reject", "hello", id)
	id = push("the rejected commit pushed again")
	waitFor(t, 20*time.Second, "the pending deploy to expire", func() bool {
		return strings.Contains(e.MustEeveon("history", "hello").Stdout, id+"  expired")
	})
	id = push("the expired commit pushed again")
	if r := e.SSH(alice, "approve", "hello", id); r.Code != 0 || !strings.Contains(r.Stdout, "live: hello "+c1[:7]) {
		t.Fatalf("approve: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.serverBranch("hello"); got != c1 {
		t.Fatalf("server branch %q after the approved deploy went live, want %s", got, c1)
	}
}

// A plain git push to the repository path on the server (here as root,
// an admin of the local CLI) is the same deploy with the same exit status.
func TestLocalPushToRepoPath(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh")
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")
	path := filepath.Join(e.Data, "repos", "hello.git")
	r := run(t, repo.Dir, nil, "", "git", "push", path, "main")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c1[:7]+" on blue") {
		t.Fatalf("local push: exit %d\n%s", r.Code, r.Out())
	}
	repo.Commit("broken", map[string]string{"build.sh": "#!/bin/sh\nexit 4\n"})
	wantRejected(t, "local push of a failing build", run(t, repo.Dir, nil, "", "git", "push", path, "main"), "build: exited with status 4")
	if got := e.serverBranch("hello"); got != c1 {
		t.Fatalf("server branch %s after a failed local push, want %s", got, c1)
	}
}

// In OpenSSH mode the push is the same deploy: rejected on failure,
// retried by pushing again, and kept (not deployed) while the daemon is down.
func TestOpenSSHPushExitStatus(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.restartWithConfig(shortHealthConfig)
	s := startSSHD(t, e)
	key := e.NewKey("bob")
	e.MustEeveon("keys", "add", "--openssh", "--authorized-keys", s.AuthorizedKeys, "--user", "bob", "--role", "deployer", "--sites", "hello", key+".pub")
	gate, open, shut := healthGate(e)
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh", "--health-cmd", gate)
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")
	url := "ssh://" + s.User + "@127.0.0.1:" + s.Port + "/hello"
	args := s.args(e, key)
	gitSSH := "GIT_SSH_COMMAND=ssh " + strings.Join(args[:len(args)-2], " ")
	shut()
	wantRejected(t, "OpenSSH push with a failing health check", run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main"), "health check")
	open()
	if r := run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c1[:7]) {
		t.Fatalf("OpenSSH retry: exit %d\n%s", r.Code, r.Out())
	}
	e.Stop()
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	r := run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main")
	wantRejected(t, "OpenSSH push with the daemon down", r, "not deployed")
	if !strings.Contains(r.Stderr, "the eeveon server is not running") {
		t.Errorf("push with the daemon down does not say why:\n%s", r.Out())
	}
	e.Start()
	if r := run(t, repo.Dir, []string{gitSSH}, "", "git", "push", url, "main"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c2[:7]) {
		t.Fatalf("push after the daemon is back: exit %d\n%s", r.Code, r.Out())
	}
}

var statusPendingRe = regexp.MustCompile(`pending:  deploy (\d{8}-\d{6}-[0-9a-f]{4}) of ([0-9a-f]{7}) on \w+ by (\S+)`)

// Approval is a property of what goes live, not of the path: on a site
// that requires another admin's approval, every path that would put a
// commit live waits for it, and its requester may not approve it. The
// instant rollback swaps back to what was approved before and says so.
func TestApprovalOnEveryPath(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	alice := e.AddKey("alice", "admin", "")
	carol := e.AddKey("carol", "admin", "")
	bob := e.AddKey("bob", "deployer", "hello")
	remote := filepath.Join(e.Dir, "remote.git")
	if r := run(t, e.Dir, nil, "", "git", "init", "-q", "--bare", remote); r.Code != 0 {
		t.Fatal(r.Out())
	}
	e.MustEeveon("site", "add", "hello", "--approval", "--require-other-approver", "--build", "./build.sh")
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript})

	// pending waits for the site's deploy awaiting approval.
	pending := func(site string) (id, commit, user string) {
		t.Helper()
		var m []string
		waitFor(t, 20*time.Second, site+" to have a deploy awaiting approval", func() bool {
			m = statusPendingRe.FindStringSubmatch(e.MustEeveon("status", site).Stdout)
			return m != nil
		})
		return m[1], m[2], m[3]
	}
	// live is the commit the site serves (the build writes it).
	live := func(site string) string {
		return strings.Fields(e.ReadSite(site, "public/index.html") + " ? ?")[1]
	}
	// approveAs approves as who (an SSH key, or "" for the local CLI).
	approveAs := func(who, site, id string) Result {
		if who == "" {
			return e.Eeveon("approve", site, id)
		}
		return e.SSH(who, "approve", site, id)
	}

	// Make a first release live, and a second, so there is something to
	// roll back to and an older deploy to redeploy.
	c1 := repo.Git("rev-parse", "HEAD")
	repo.Push(bob, "hello")
	id1, _, _ := pending("hello")
	if r := e.SSH(carol, "approve", "hello", id1); r.Code != 0 {
		t.Fatalf("approve the first deploy: %s", r.Out())
	}
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	repo.Push(bob, "hello")
	id2, _, _ := pending("hello")
	e.SSH(carol, "approve", "hello", id2)
	if got := live("hello"); got != c2 {
		t.Fatalf("live %s, want %s", got, c2)
	}

	for _, tc := range []struct {
		path      string
		requester string // the key that asks ("" the local CLI, root)
		ask       func() Result
		commit    string // what goes live once approved; "" the live one (a redeploy)
	}{
		{"push", "bob", func() Result { return repo.Push(bob, "hello", "--force", c1+":refs/heads/main") }, c1},
		{"ssh deploy", "bob", func() Result { return e.SSH(bob, "deploy", "hello") }, ""},
		{"ssh deploy --ref", "alice", func() Result { return e.SSH(alice, "deploy", "hello", "--ref", c1) }, c1},
		{"rollback --to", "alice", func() Result { return e.SSH(alice, "rollback", "hello", "--to", id1) }, c1},
		{"local deploy", "", func() Result { return e.Eeveon("deploy", "hello", "--ref", c1) }, c1},
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := live("hello")
			if tc.commit == "" {
				tc.commit = before
			}
			r := tc.ask()
			if r.Code != 0 || !strings.Contains(r.Out(), "awaiting approval") {
				t.Fatalf("%s did not end awaiting approval: exit %d\n%s", tc.path, r.Code, r.Out())
			}
			if got := live("hello"); got != before {
				t.Fatalf("%s put %s live without approval", tc.path, got)
			}
			id, commit, user := pending("hello")
			if commit != tc.commit[:7] {
				t.Errorf("pending deploy of %s, want %s", commit, tc.commit[:7])
			}
			keyOf := map[string]string{"bob": bob, "alice": alice, "": ""}
			if tc.requester != "bob" {
				// The requester is an admin: not the one to approve it.
				if r := approveAs(keyOf[tc.requester], "hello", id); r.Code == 0 || !strings.Contains(r.Stderr, "requires another admin") {
					t.Fatalf("%s: %s approved their own deploy: exit %d\n%s", tc.path, user, r.Code, r.Out())
				}
			}
			if r := e.SSH(carol, "approve", "hello", id); r.Code != 0 || live("hello") != tc.commit {
				t.Fatalf("%s: carol's approval: exit %d, live %s\n%s", tc.path, r.Code, live("hello"), r.Out())
			}
		})
	}

	// The attack: push, reject your own pending deploy, then redeploy it
	// with rollback --to: it waits for another admin all the same.
	c3 := repo.Commit("three", map[string]string{"x": "3"})
	repo.Push(alice, "hello")
	id3, _, _ := pending("hello")
	e.SSH(alice, "reject", "hello", id3)
	before := live("hello")
	if r := e.SSH(alice, "rollback", "hello", "--to", id3); r.Code != 0 || !strings.Contains(r.Out(), "awaiting approval") || live("hello") != before {
		t.Fatalf("rollback --to a rejected deploy: exit %d, live %s\n%s", r.Code, live("hello"), r.Out())
	}
	id4, _, _ := pending("hello")
	if r := e.SSH(alice, "approve", "hello", id4); r.Code == 0 {
		t.Fatalf("alice approved the redeploy of her rejected push:\n%s", r.Out())
	}
	e.SSH(carol, "approve", "hello", id4)
	if live("hello") != c3 {
		t.Fatalf("live %s after carol's approval, want %s", live("hello"), c3)
	}

	// The instant rollback needs no new approval and says why.
	r := e.SSH(alice, "rollback", "hello")
	if r.Code != 0 || strings.Contains(r.Out(), "awaiting approval") || !strings.Contains(r.Out(), "no new approval") {
		t.Fatalf("instant rollback: exit %d\n%s", r.Code, r.Out())
	}
	if hist := e.MustEeveon("history", "hello").Stdout; !strings.Contains(hist, "no new approval: ") {
		t.Errorf("history does not say why the rollback needed no approval:\n%s", hist)
	}

	// The poller (and so the GitHub webhook, which asks it to poll).
	src := e.NewRepo("polled", map[string]string{"build.sh": buildScript})
	src.Git("remote", "add", "origin", remote)
	src.Git("push", "-q", "origin", "main")
	e.MustEeveon("site", "add", "web", "--poll", "file://"+remote, "--interval", "1s", "--approval", "--require-other-approver", "--build", "./build.sh")
	id, _, user := pending("web")
	if user != "poll" || e.Live("web") != "" {
		t.Fatalf("polled deploy by %s, live %q", user, e.Live("web"))
	}
	if r := e.SSH(carol, "approve", "web", id); r.Code != 0 || e.Live("web") != "blue" {
		t.Fatalf("approve the polled deploy: exit %d\n%s", r.Code, r.Out())
	}
}

package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	// Other branches and tags are stored as before, with no deploy.
	repo.Git("branch", "-f", "feature")
	repo.Git("tag", "v1")
	if r := repo.Push(admin, "hello", "feature", "v1"); r.Code != 0 || strings.Contains(r.Stderr, "building") {
		t.Fatalf("push of another branch: exit %d\n%s", r.Code, r.Out())
	}
	bare := filepath.Join(e.Data, "repos", "hello.git")
	if got := run(t, e.Dir, nil, "", "git", "--git-dir", bare, "rev-parse", "feature", "v1^{commit}").Stdout; got != c3+"\n"+c3+"\n" {
		t.Errorf("feature and v1 on the server: %q, want %s twice", got, c3)
	}
}

// What a deployer pushes besides the deploy branch cannot change what a
// deploy checks out or get around the rules: refs/replace (which would
// make a commit id check out as other content), eeveon's own refs, a tree
// as the branch, and an atomic push whose other refs git could undo after
// the deploy went live.
func TestPushCannotBendTheDeploy(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	e.AddKey("alice", "admin", "")
	bob := e.AddKey("bob", "deployer", "hello")
	e.MustEeveon("site", "add", "hello", "--build", "./build.sh")
	repo := e.NewRepo("hello", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	repo.Git("checkout", "-q", "-b", "evil", c1)
	evil := repo.Commit("evil", map[string]string{"build.sh": "#!/bin/sh\nmkdir -p public; echo EVIL > public/index.html\n"})
	repo.Git("checkout", "-q", "main")

	for _, ref := range []string{"refs/replace/" + c2, "refs/eeveon/pushed", "refs/notes/x"} {
		r := repo.Push(bob, "hello", evil+":"+ref)
		// eeveon's own refs are hidden too: git itself refuses those.
		if r.Code == 0 || !strings.Contains(r.Stderr, "only branches and tags can be pushed here") && !strings.Contains(r.Stderr, "deny updating a hidden ref") {
			t.Errorf("push to %s: exit %d\n%s", ref, r.Code, r.Out())
		}
	}
	if r := repo.Push(bob, "hello", c2+":refs/heads/main"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c2[:7]) {
		t.Fatalf("push of c2: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+c2+" color blue\n" {
		t.Fatalf("live page %q, want c2's", got)
	}

	// A tree pushed as the branch is refused before anything is built.
	tree := repo.Git("rev-parse", c1+"^{tree}")
	r := repo.Push(bob, "hello", "--force", tree+":refs/heads/main")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not a commit") {
		t.Errorf("push of a tree: exit %d\n%s", r.Code, r.Out())
	}
	// An atomic push of the branch and another ref deploys nothing.
	c3 := repo.Commit("three", map[string]string{"x": "3"})
	r = repo.Push(bob, "hello", "--atomic", "main", "main:refs/heads/other")
	if r.Code == 0 || !strings.Contains(r.Stderr, "atomic") || strings.Contains(r.Stderr, "live: hello") {
		t.Errorf("atomic push: exit %d\n%s", r.Code, r.Out())
	}
	if e.serverBranch("hello") != c2 || e.ReadSite("hello", "public/index.html") != "commit "+c2+" color blue\n" {
		t.Errorf("the refused pushes changed the site: branch %s", e.serverBranch("hello"))
	}
	if r := repo.Push(bob, "hello", "main"); r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+c3[:7]) {
		t.Fatalf("push of c3: exit %d\n%s", r.Code, r.Out())
	}

	// An abbreviated commit id that a deployer's tag also names is
	// ambiguous to deploy --ref: git would take the tag.
	repo.Git("tag", c1[:7], evil)
	if r := repo.Push(bob, "hello", "refs/tags/"+c1[:7]); r.Code != 0 {
		t.Fatalf("push of the tag: %s", r.Out())
	}
	r = e.Eeveon("deploy", "hello", "--ref", c1[:7])
	if r.Code == 0 || !strings.Contains(r.Stderr, "give the full commit id") || strings.Contains(e.ReadSite("hello", "public/index.html"), "EVIL") {
		t.Errorf("deploy --ref of an ambiguous id: exit %d, page %q\n%s", r.Code, e.ReadSite("hello", "public/index.html"), r.Out())
	}
	upper := strings.ToUpper(c2[:7])
	repo.Git("tag", upper, evil)
	repo.Push(bob, "hello", "refs/tags/"+upper)
	if r := e.Eeveon("deploy", "hello", "--ref", upper); r.Code == 0 || strings.Contains(e.ReadSite("hello", "public/index.html"), "EVIL") {
		t.Errorf("deploy --ref of an upper-case id a tag names: exit %d\n%s", r.Code, r.Out())
	}
	// A tag named like the branch is stored, but deploy --ref main is then
	// ambiguous; a tag or branch named like a full ref is refused.
	repo.Git("tag", "main", evil)
	if r := repo.Push(bob, "hello", "refs/tags/main"); r.Code != 0 {
		t.Fatalf("push of tag main: %s", r.Out())
	}
	if r := e.Eeveon("deploy", "hello", "--ref", "main"); r.Code == 0 || !strings.Contains(r.Stderr, "both a branch and a tag") {
		t.Errorf("deploy --ref main with a tag main: exit %d\n%s", r.Code, r.Out())
	}
	for _, ref := range []string{"refs/tags/refs/heads/main", "refs/heads/refs/tags/x", "refs/heads/HEAD"} {
		if r := repo.Push(bob, "hello", evil+":"+ref); r.Code == 0 || !strings.Contains(r.Stderr, "named HEAD or like a full ref") {
			t.Errorf("push to %s: exit %d\n%s", ref, r.Code, r.Out())
		}
	}
	if strings.Contains(e.ReadSite("hello", "public/index.html"), "EVIL") {
		t.Error("EVIL went live")
	}
}

// Two people push to the same branch: the second push was made against
// the branch before the first one's, as git sees it, so git refuses it
// (fetch first) instead of letting it replace the first one unseen; a
// forced one takes over, and the last push wins.
func TestPushOverAPushInProgress(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	release := filepath.Join(e.Dir, "release")
	build := "if [ \"$(cat slow 2>/dev/null)\" = yes ]; then i=0; while [ ! -e '" + release + "' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; fi; mkdir -p public; echo \"commit $EEVEON_COMMIT\" > public/index.html"
	e.MustEeveon("site", "add", "hello", "--build", build)
	a := e.NewRepo("a", map[string]string{"x": "0"})
	c0 := a.Git("rev-parse", "HEAD")
	if r := a.Push(admin, "hello", "main"); r.Code != 0 {
		t.Fatalf("first push: %s", r.Out())
	}
	b := e.NewRepo("b", nil)
	b.Git("fetch", "-q", a.Dir, "main")
	b.Git("reset", "-q", "--hard", "FETCH_HEAD")
	ca := a.Commit("slow", map[string]string{"slow": "yes"})
	cb := b.Commit("b", map[string]string{"b": "1"})

	done := make(chan Result, 1)
	go func() { done <- a.Push(admin, "hello", "main") }()
	waitFor(t, 20*time.Second, "A's deploy to build", func() bool {
		return strings.Contains(e.MustEeveon("status", "hello").Stdout, "running:  deploy ")
	})
	r := b.Push(admin, "hello", "main")
	if r.Code == 0 || strings.Contains(r.Stderr, "live: hello") {
		t.Fatalf("a push made against %s while %s deploys: exit %d\n%s", c0[:7], ca[:7], r.Code, r.Out())
	}
	// Forced, it takes over: A is superseded or replaced, B goes live.
	forced := make(chan Result, 1)
	go func() { forced <- b.Push(admin, "hello", "--force", "main") }()
	waitFor(t, 20*time.Second, "B's deploy to wait", func() bool { return e.serverBranch("hello") == cb })
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Code != 0 {
		t.Errorf("A's push: exit %d\n%s", r.Code, r.Out())
	}
	if r := <-forced; r.Code != 0 || !strings.Contains(r.Stderr, "live: hello "+cb[:7]) {
		t.Fatalf("B's forced push: exit %d\n%s", r.Code, r.Out())
	}
	if got := e.ReadSite("hello", "public/index.html"); got != "commit "+cb+"\n" || e.serverBranch("hello") != cb {
		t.Errorf("live page %q, branch %s; want B's %s", got, e.serverBranch("hello"), cb)
	}
}

// The branch on the server is the live commit after every way of going
// live, and after a crash between the switch and the record.
func TestBranchFollowsWhatIsLive(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin, repo, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh")
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	repo.Push(admin, "hello")
	id1 := ""
	for _, h := range e.siteHistory("hello") {
		if h.Commit == c1 {
			id1 = h.ID
		}
	}
	if r := e.SSH(admin, "rollback", "hello", "--to", id1); r.Code != 0 || e.serverBranch("hello") != c1 {
		t.Fatalf("rollback --to: exit %d, branch %s\n%s", r.Code, e.serverBranch("hello"), r.Out())
	}
	// deploy SITE redeploys the live commit, not the one rolled back from.
	if r := e.SSH(admin, "deploy", "hello"); r.Code != 0 || !strings.Contains(r.Stdout, "live: hello "+c1[:7]) {
		t.Fatalf("deploy after rollback --to: exit %d\n%s", r.Code, r.Out())
	}
	if r := e.SSH(admin, "rollback", "hello"); r.Code != 0 || e.serverBranch("hello") != c1 {
		t.Fatalf("instant rollback: exit %d, branch %s\n%s", r.Code, e.serverBranch("hello"), r.Out())
	}
	// A deploy goes live and the server dies before it records that:
	// after the restart the deploy is live, and so is the branch.
	e.MustEeveon("site", "set", "hello", "--on-swap", "sleep 30")
	done := make(chan Result, 1)
	go func() { done <- e.Eeveon("deploy", "hello", "--ref", c2) }()
	waitFor(t, 20*time.Second, "the swap", func() bool { return strings.HasPrefix(e.ReadSite("hello", "public/index.html"), "commit "+c2) })
	if e.serverBranch("hello") != c1 {
		t.Fatalf("the branch moved before the deploy was recorded")
	}
	e.Kill()
	<-done
	e.Start()
	waitFor(t, 20*time.Second, "the branch to follow the live commit", func() bool { return e.serverBranch("hello") == c2 })
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

	bare := filepath.Join(e.Data, "repos", "hello.git")
	n := 0
	newCommit := func() string { n++; return repo.Commit("change", map[string]string{"n": strconv.Itoa(n)}) }
	for _, tc := range []struct {
		path      string
		requester string // the key that asks ("" the local CLI, root)
		ask       func() Result
		commit    func() string // what goes live once approved
	}{
		{"push by a deployer", "bob", func() Result { return repo.Push(bob, "hello", "--force", c1+":refs/heads/main") }, func() string { return c1 }},
		{"push by an admin", "alice", func() Result { newCommit(); return repo.Push(alice, "hello", "--force", "main") }, func() string { return repo.Git("rev-parse", "HEAD") }},
		{"plain git push on the server", "", func() Result { newCommit(); return run(t, repo.Dir, nil, "", "git", "push", "--force", bare, "main") }, func() string { return repo.Git("rev-parse", "HEAD") }},
		{"ssh deploy", "bob", func() Result { return e.SSH(bob, "deploy", "hello") }, nil},
		{"ssh deploy --ref", "alice", func() Result { return e.SSH(alice, "deploy", "hello", "--ref", c1) }, func() string { return c1 }},
		{"rollback --to", "alice", func() Result { return e.SSH(alice, "rollback", "hello", "--to", id2) }, func() string { return c2 }},
		{"local deploy", "", func() Result { return e.Eeveon("deploy", "hello", "--ref", c2) }, func() string { return c2 }},
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := live("hello")
			r := tc.ask()
			want := before // a redeploy of the live commit
			if tc.commit != nil {
				want = tc.commit()
			}
			if r.Code != 0 || !strings.Contains(r.Out(), "awaiting approval") {
				t.Fatalf("%s did not end awaiting approval: exit %d\n%s", tc.path, r.Code, r.Out())
			}
			if got := live("hello"); got != before {
				t.Fatalf("%s put %s live without approval", tc.path, got)
			}
			id, commit, user := pending("hello")
			if commit != want[:7] {
				t.Errorf("pending deploy of %s, want %s", commit, want[:7])
			}
			keyOf := map[string]string{"bob": bob, "alice": alice, "": ""}
			if tc.requester != "bob" {
				// The requester is an admin: not the one to approve it.
				if r := approveAs(keyOf[tc.requester], "hello", id); r.Code == 0 || !strings.Contains(r.Stderr, "requires another admin") {
					t.Fatalf("%s: %s approved their own deploy: exit %d\n%s", tc.path, user, r.Code, r.Out())
				}
			}
			if r := e.SSH(carol, "approve", "hello", id); r.Code != 0 || live("hello") != want {
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

// Every release that went live stays in the repository for rollback --to,
// though a force push and git gc leave it on no branch.
func TestRollbackToSurvivesForcePushAndGC(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin, _, c1 := helloLiveOnBlue(t, e, "--build", "./build.sh")
	id1 := e.lastDeploy("hello").ID
	other := e.NewRepo("other", map[string]string{"build.sh": buildScript, "who": "other"})
	if r := other.Push(admin, "hello", "--force", "main"); r.Code != 0 {
		t.Fatalf("forced push: %s", r.Out())
	}
	bare := filepath.Join(e.Data, "repos", "hello.git")
	for _, args := range [][]string{{"reflog", "expire", "--expire=now", "--all"}, {"gc", "-q", "--prune=now"}} {
		if r := run(t, e.Dir, nil, "", "git", append([]string{"--git-dir", bare}, args...)...); r.Code != 0 {
			t.Fatalf("git %v: %s", args, r.Out())
		}
	}
	if r := e.SSH(admin, "rollback", "hello", "--to", id1); r.Code != 0 || !strings.Contains(r.Stdout, "live: hello "+c1[:7]) {
		t.Fatalf("rollback --to after a force push and gc: exit %d\n%s", r.Code, r.Out())
	}
	// Clients are not shown eeveon's own refs.
	if r := run(t, e.Dir, []string{e.GitSSH(admin)}, "", "git", "ls-remote", e.URL("hello")); strings.Contains(r.Stdout, "refs/eeveon") {
		t.Errorf("ls-remote shows eeveon's refs:\n%s", r.Stdout)
	}
}

package integration

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

var pendingRe = regexp.MustCompile(`awaiting approval: ssh -p (\d+) deploy@127\.0\.0\.1 approve critical (\d{8}-\d{6}-[0-9a-f]{4})`)

func TestApprovals(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	alice := e.AddKey("alice", "admin", "")
	carol := e.AddKey("carol", "admin", "")
	bob := e.AddKey("bob", "deployer", "")
	e.MustEeveon("site", "add", "critical", "--approval", "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo("critical", map[string]string{"build.sh": buildScript})
	c1 := repo.Git("rev-parse", "HEAD")

	push := func(key string) (Result, string) {
		t.Helper()
		r := repo.Push(key, "critical")
		m := pendingRe.FindStringSubmatch(r.Stderr)
		if r.Code != 0 || m == nil || m[1] != e.Port {
			t.Fatalf("push did not end awaiting approval on port %s: exit %d\n%s", e.Port, r.Code, r.Out())
		}
		return r, m[2]
	}

	_, id1 := push(bob)
	if e.Live("critical") != "" {
		t.Fatal("a deploy awaiting approval went live")
	}
	if st := e.SSH(bob, "status", "critical"); !strings.Contains(st.Stdout, "pending:  deploy "+id1+" of "+c1[:7]) {
		t.Fatalf("status does not show the pending deploy:\n%s", st.Out())
	}
	if r := e.SSH(bob, "approve", "critical"); r.Code == 0 || !strings.Contains(r.Stderr, "permission denied: deployer may not approve critical") {
		t.Fatalf("deployer approve: exit %d\n%s", r.Code, r.Out())
	}
	r := e.SSH(alice, "approve", "critical")
	if r.Code != 0 || !strings.Contains(r.Stdout, "approved by alice") || !strings.Contains(r.Stdout, "live: critical "+c1[:7]+" on blue") {
		t.Fatalf("approve: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("critical") != "blue" {
		t.Fatalf("approved deploy not live: %q", e.Live("critical"))
	}
	if r := e.SSH(alice, "approve", "critical"); r.Code == 0 || !strings.Contains(r.Stderr, "nothing is waiting for approval on critical") {
		t.Fatalf("second approve: exit %d\n%s", r.Code, r.Out())
	}

	// A newer push supersedes the pending one; its id can no longer be approved.
	repo.Commit("two", map[string]string{"x": "2"})
	_, id2 := push(bob)
	repo.Commit("three", map[string]string{"x": "3"})
	_, id3 := push(bob)
	if r := e.SSH(alice, "approve", "critical", id2); r.Code == 0 || !strings.Contains(r.Stderr, "deploy "+id2+" is superseded") {
		t.Fatalf("approving a superseded deploy: exit %d\n%s", r.Code, r.Out())
	}
	if r := e.SSH(alice, "reject", "critical", id3); r.Code != 0 || !strings.Contains(r.Stdout, "rejected") {
		t.Fatalf("reject: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("critical") != "blue" || e.ReadSite("critical", "public/index.html") != "commit "+c1+" color blue\n" {
		t.Fatal("reject changed what is served")
	}
	hist := e.MustEeveon("history", "critical").Stdout
	for _, want := range []string{id1 + "  pending_approval", id1 + "  live", id2 + "  superseded", id3 + "  rejected"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history lacks %q:\n%s", want, hist)
		}
	}

	// Pending state survives a restart.
	repo.Commit("four", map[string]string{"x": "4"})
	_, id4 := push(bob)
	e.Stop()
	e.Start()
	if st := e.SSH(alice, "status", "critical"); !strings.Contains(st.Stdout, "pending:  deploy "+id4) {
		t.Fatalf("pending deploy lost in a restart:\n%s", st.Out())
	}
	// Separation of duties: the pusher may not approve.
	e.MustEeveon("site", "set", "critical", "--require-other-approver")
	repo.Commit("five", map[string]string{"x": "5"})
	_, id5 := push(alice)
	if r := e.SSH(alice, "approve", "critical", id5); r.Code == 0 || !strings.Contains(r.Stderr, "requires another admin") {
		t.Fatalf("self-approval: exit %d\n%s", r.Code, r.Out())
	}
	if r := e.SSH(carol, "approve", "critical", id5); r.Code != 0 || e.Live("critical") != "green" {
		t.Fatalf("approval by another admin: exit %d, live %q\n%s", r.Code, e.Live("critical"), r.Out())
	}

	// The local CLI (root here: admin) rejects and approves too.
	repo.Commit("six", map[string]string{"x": "6"})
	_, id6 := push(bob)
	if r := e.Eeveon("reject", "critical", id6); r.Code != 0 || !strings.Contains(r.Stdout, "rejected") {
		t.Fatalf("local reject: exit %d\n%s", r.Code, r.Out())
	}
	c7 := repo.Commit("seven", map[string]string{"x": "7"})
	_, id7 := push(bob)
	if r := e.Eeveon("approve", "critical", id7); r.Code != 0 || !strings.Contains(r.Stdout, "live: critical "+c7[:7]) {
		t.Fatalf("local approve: exit %d\n%s", r.Code, r.Out())
	}
	if h := e.MustEeveon("history", "critical").Stdout; !strings.Contains(h, id6+"  rejected") || !strings.Contains(h, id7+"  live") {
		t.Errorf("history after local decisions:\n%s", h)
	}
}

func TestApprovalExpires(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	alice := e.AddKey("alice", "admin", "")
	e.MustEeveon("site", "add", "critical", "--approval", "--approval-timeout", "1s")
	repo := e.NewRepo("critical", map[string]string{"index.html": "v1"})
	r := repo.Push(alice, "critical")
	m := pendingRe.FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("push did not wait for approval:\n%s", r.Out())
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.MustEeveon("history", "critical").Stdout, m[2]+"  expired") {
		if time.Now().After(deadline) {
			t.Fatalf("the pending deploy did not expire:\n%s", e.MustEeveon("history", "critical").Stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := e.SSH(alice, "approve", "critical", m[2]); r.Code == 0 || !strings.Contains(r.Stderr, "is expired") {
		t.Fatalf("approving an expired deploy: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("critical") != "" {
		t.Fatal("an expired deploy went live")
	}
}

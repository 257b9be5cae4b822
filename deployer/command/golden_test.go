package command

import (
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/log"
	"golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/keys"
)

// The tables people read (status, history, sites, keys list, whoami,
// help) are compared with testdata/*.golden. After a deliberate change of
// the output, rewrite them with
//
//	go test ./deployer/command/ -run Golden -update
//
// and read the diff.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// transcript records command lines and what they printed, as a golden
// file holds them.
type transcript struct {
	f *fixture
	b strings.Builder
}

func (tr *transcript) run(id keys.Identity, args ...string) {
	r := tr.f.run(id, args...)
	fmt.Fprintf(&tr.b, "$ %s    (as %s, %s)\n", strings.Join(args, " "), id.User, id.Role)
	tr.b.WriteString(r.stdout)
	for _, l := range strings.SplitAfter(r.stderr, "\n") {
		if l != "" {
			tr.b.WriteString("stderr: " + l)
		}
	}
	fmt.Fprintf(&tr.b, "exit %d\n\n", r.code)
}

// check compares the transcript with testdata/NAME.golden, with the data
// dir written as $DATA.
func (tr *transcript) check(t *testing.T, name string) {
	t.Helper()
	got := strings.ReplaceAll(tr.b.String(), tr.f.d.Dir, "$DATA")
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (if the change is meant, rewrite it with -update and read the diff)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// at is a fixed time, minutes after a fixed start.
func at(min float64) time.Time {
	return time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC).Add(time.Duration(min * float64(time.Minute)))
}

// rec is a finished deploy of web.
func rec(id string, state deployer.State, color, commit, user, trigger string, start, took float64, why string) deployer.Record {
	r := deployer.Record{
		ID: id, Site: "web", Commit: commit, Ref: "refs/heads/main", Color: color, Strategy: deployer.BlueGreen,
		State: state, User: user, Trigger: trigger, StartedAt: at(start), FinishedAt: at(start + took), Error: why,
	}
	if state == deployer.StateLive && why != "" {
		r.Error, r.Note = "", why
	}
	return r
}

// writeHistory writes a site's .deploy_history and makes live what
// current is (a colour's symlink, or in-place), as finished deploys leave
// them.
func (f *fixture) writeHistory(site, live string, recs ...deployer.Record) {
	f.t.Helper()
	s, err := deployer.LoadSite(f.d, site)
	if err != nil {
		f.t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			f.t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	if err := os.MkdirAll(s.Path, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Path, ".deploy_history"), []byte(b.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
	var err2 error
	switch live {
	case "in-place": // current is the live directory itself
		err2 = os.Mkdir(filepath.Join(s.Path, "current"), 0o755)
	default:
		if err2 = os.Mkdir(filepath.Join(s.Path, live), 0o755); err2 == nil {
			err2 = os.Symlink(live, filepath.Join(s.Path, "current"))
		}
	}
	if err2 != nil {
		f.t.Fatal(err2)
	}
}

// writeRecord stores a deploy record as the engine does.
func (f *fixture) writeRecord(r deployer.Record) {
	f.t.Helper()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.MkdirAll(f.d.DeploysDir(r.Site), 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.d.DeploysDir(r.Site), r.ID+".json"), b, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

const (
	c1 = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
	c2 = "b2c3d4e5f60718293a4b5c6d7e8f901234567890"
	c3 = "c3d4e5f60718293a4b5c6d7e8f90123456789012"
	c4 = "d4e5f60718293a4b5c6d7e8f9012345678901234"
)

// webHistory: two deploys live, a failed one after them, a rollback.
var webHistory = []deployer.Record{
	rec("20250304-100000-0a0a", deployer.StateLive, "blue", c1, "alice", "push", 0, 0.25, ""),
	rec("20250304-101000-1b1b", deployer.StateLive, "green", c2, "bob", "push", 10, 1.5, ""),
	rec("20250304-102000-2c2c", deployer.StateFailed, "blue", c3, "bob", "push", 20, 0.5, "build: exit status 2"),
	rec("20250304-103000-3d3d", deployer.StateLive, "blue", c1, "alice", deployer.TriggerRollback, 30, 0.01, "instant rollback to blue"),
	rec("20250304-104000-4e4e", deployer.StateLive, "green", c2, "alice", "ssh", 40, 2, ""),
	rec("20250304-105000-5f5f", deployer.StateFailed, "blue", c4, "bob", "push", 50, 0.75, "health: GET http://127.0.0.1:8080/up: 503"),
}

// realEngineFixture is a data dir as a server leaves it after some
// deploys, read through a real engine that recovered from it.
func realEngineFixture(t *testing.T) *fixture {
	f := newFixture(t,
		deployer.Site{Name: "web", Approval: true},
		deployer.Site{Name: "docs", Branch: "pages", Strategy: deployer.InPlace},
		deployer.Site{Name: "api"},
	)
	f.writeHistory("web", "green", webHistory...)
	for _, r := range webHistory {
		f.writeRecord(r)
	}
	// A deploy of web waits for approval (it expires long after this test).
	pending := rec("20250304-110000-6a6a", deployer.StatePendingApproval, "blue", c3, "bob", "push", 60, 1, "")
	pending.FinishedAt = time.Time{}
	exp := time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)
	pending.ExpiresAt = &exp
	f.writeRecord(pending)
	docs := rec("20250304-090000-7b7b", deployer.StateLive, "in-place", c1, "carol", "poll", -60, 0.1, "")
	docs.Site, docs.Ref, docs.Strategy = "docs", "refs/heads/pages", deployer.InPlace
	f.writeHistory("docs", "in-place", docs)
	e := deployer.NewEngine(f.d, deployer.Default(), log.New(io.Discard))
	t.Cleanup(func() { e.Shutdown(t.Context()) })
	e.Recover()
	f.rt.Engine = e
	return f
}

func TestGoldenStatus(t *testing.T) {
	f := realEngineFixture(t)
	tr := &transcript{f: f}
	tr.run(alice, "status")
	tr.run(bob, "status")
	tr.run(bob, "status", "api") // not a site bob may see
	tr.check(t, "status")
}

func TestGoldenHistory(t *testing.T) {
	f := realEngineFixture(t)
	tr := &transcript{f: f}
	tr.run(alice, "history", "web")
	tr.run(bob, "history", "web", "-n", "2")
	tr.run(alice, "history", "docs")
	tr.run(alice, "history", "api") // no deploys yet
	tr.check(t, "history")
}

// daemonState is what only the daemon knows, on top of the files: the
// deploy running now and the apps' processes.
type daemonState struct {
	Engine
	running map[string]deployer.Record
	apps    map[string]deployer.AppStatus
}

func (d daemonState) Status(site string) (deployer.SiteStatus, error) {
	st, err := deployer.FileStatus(d.Data(), site)
	if r, ok := d.running[site]; ok {
		st.Running = &r
	}
	if a, ok := d.apps[site]; ok {
		st.App = &a
	}
	return st, err
}

func TestGoldenStatusDaemon(t *testing.T) {
	f := newFixture(t,
		deployer.Site{Name: "web"},
		deployer.Site{Name: "shop", Start: "./server", Proxy: "127.0.0.1:18080", Ports: []int{18081, 18082}},
		deployer.Site{Name: "blog", Start: "./server", Proxy: "127.0.0.1:18090", Ports: []int{18091, 18092}},
		deployer.Site{Name: "wiki", Start: "./server", Proxy: "127.0.0.1:18100", Ports: []int{18101, 18102}},
	)
	f.writeHistory("web", "green", webHistory[:2]...)
	// A colour that is live but whose deploy has no line (history lost).
	f.writeHistory("blog", "blue")
	running := rec("20250304-120000-8c8c", deployer.StateRunning, "blue", c3, "bob", "push", 120, 0, "")
	running.Phase = "building"
	// Duration measures to FinishedAt when it is set: a fixed 95s here.
	running.FinishedAt = running.StartedAt.Add(95 * time.Second)
	f.rt.Engine = daemonState{
		Engine:  f.rt.Engine,
		running: map[string]deployer.Record{"web": running},
		apps: map[string]deployer.AppStatus{
			"shop": {Proxy: "127.0.0.1:18080", Color: "green", Port: 18082, PID: 4242, Running: true, Restarts: 1},
			"blog": {Color: "blue", Port: 18091},
		},
	}
	tr := &transcript{f: f}
	tr.run(alice, "status")
	tr.check(t, "status-daemon")

	empty := newFixture(t)
	tr = &transcript{f: empty}
	tr.run(alice, "status")
	tr.check(t, "status-empty")
}

func TestGoldenSitesWhoamiHelp(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "web"}, deployer.Site{Name: "api"}, deployer.Site{Name: "docs"})
	local := keys.Identity{User: "root", Role: keys.RoleAdmin, Remote: "local", Source: "local"}
	all := keys.Identity{User: "dave", Role: keys.RoleDeployer, Fingerprint: "SHA256:dave", Source: "ssh"}
	tr := &transcript{f: f}
	tr.run(alice, "sites")
	tr.run(bob, "sites")
	tr.check(t, "sites")

	tr = &transcript{f: f}
	for _, id := range []keys.Identity{alice, bob, all, local} {
		tr.run(id, "whoami")
	}
	tr.run(alice, "whoami", "extra")
	tr.check(t, "whoami")

	tr = &transcript{f: f}
	tr.run(bob, "help")
	tr.run(bob, "frobnicate")
	tr.check(t, "help")
}

// fixedKey is an ed25519 public key made from a fixed seed.
func fixedKey(t *testing.T, seed byte) ssh.PublicKey {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytesOf(seed, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func bytesOf(b byte, n int) []byte { return []byte(strings.Repeat(string(rune(b)), n)) }

func TestGoldenKeysList(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "web"}, deployer.Site{Name: "api"})
	store := keys.Open(f.d.AuthorizedKeys())
	for i, e := range []keys.Entry{
		{User: "alice", Role: keys.RoleAdmin, Comment: "alice@laptop"},
		{User: "bob", Role: keys.RoleDeployer, Sites: []string{"web", "api"}, Comment: "ci"},
		{User: "carol", Role: keys.RoleDeployer},
	} {
		e.Key = fixedKey(t, byte('a'+i))
		if _, err := store.Add(e, ""); err != nil {
			t.Fatal(err)
		}
	}
	// A hand-edited line that does not parse is reported, not used.
	af, err := os.OpenFile(f.d.AuthorizedKeys(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := af.WriteString("ssh-ed25519 not-base64 mallory\n"); err != nil {
		t.Fatal(err)
	}
	af.Close()
	f.rt.Keys = store
	tr := &transcript{f: f}
	tr.run(alice, "keys", "list")
	tr.run(bob, "keys", "list")
	tr.run(alice, "keys", "add")
	tr.check(t, "keys")
}

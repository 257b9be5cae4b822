package command

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/keys"
)

var (
	alice = keys.Identity{User: "alice", Role: keys.RoleAdmin, Fingerprint: "SHA256:alice", Remote: "127.0.0.1:50000", Source: "ssh"}
	bob   = keys.Identity{User: "bob", Role: keys.RoleDeployer, Sites: []string{"web"}, Remote: "openssh", Source: "openssh"}
)

// fixture is a router over a temporary data dir whose sites are saved as
// eeveon site add saves them (with their bare repositories).
type fixture struct {
	t  *testing.T
	d  deployer.Data
	rt *Router
}

func newFixture(t *testing.T, sites ...deployer.Site) *fixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	d, err := deployer.NewData(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sites {
		if _, err := deployer.SaveSite(d, s, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	rt := &Router{Engine: Offline(d, deployer.Default()), Audit: NewAudit(d.AuditLog()), Log: log.New(io.Discard)}
	return &fixture{t: t, d: d, rt: rt}
}

// result is what a client of the router sees.
type result struct {
	code           int
	stdout, stderr string
}

func (f *fixture) run(id keys.Identity, args ...string) result {
	var out, errOut bytes.Buffer
	code := f.rt.Run(context.Background(), id, args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut})
	return result{code, out.String(), errOut.String()}
}

func (f *fixture) control(id keys.Identity, req control.Request) (control.Result, result) {
	var out, errOut bytes.Buffer
	res := f.rt.Control(context.Background(), id, req, &out, &errOut)
	return res, result{res.Code, out.String(), errOut.String()}
}

// lastAudit is the newest line of the audit log.
func (f *fixture) lastAudit() Event {
	f.t.Helper()
	b, err := os.ReadFile(f.d.AuditLog())
	if err != nil {
		f.t.Fatal(err)
	}
	var ev Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		ev = Event{}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			f.t.Fatal(err)
		}
	}
	return ev
}

const (
	commit1 = "1111111111111111111111111111111111111111"
	zeros   = "0000000000000000000000000000000000000000"
)

// The hidden verb push deploys a commit without an admin's deploy --ref:
// no command line may reach it, only a control request's Push.
func TestPushIsNoCommandLine(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "web"})
	line := "push web refs/heads/main " + zeros + " " + commit1
	var out, errOut bytes.Buffer
	fe := Session{Router: f.rt, Run: f.rt.Run}
	code := fe.Handle(context.Background(), alice, line, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut})
	for _, r := range []result{f.run(alice, strings.Fields(line)...), {code, out.String(), errOut.String()}} {
		if r.code != 2 || r.stdout != "" || !strings.HasSuffix(r.stderr, "eeveon: unknown command \"push\"\n") ||
			!strings.Contains(r.stderr, "There is no shell here") {
			t.Errorf("push as a command line: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
		}
		if ev := f.lastAudit(); ev.Outcome != `error: unknown command "push"` || ev.Site != "" {
			t.Errorf("audit of push as a command line: %+v", ev)
		}
	}
	if help := f.run(alice, "help"); help.code != 0 || strings.Contains(help.stdout, "\n  push") {
		t.Errorf("help lists the hidden verb:\n%s", help.stdout)
	}
	if got := RedactLine("push web;x"); got != "(not parsed)" {
		t.Errorf("RedactLine of a hidden verb = %q, want (not parsed)", got)
	}
}

func TestControlPushRefusals(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "web"}, deployer.Site{Name: "api"})
	for _, tc := range []struct {
		name    string
		id      keys.Identity
		push    control.Push
		reason  string
		outcome string
	}{
		{"other branch", alice, control.Push{Site: "web", Ref: "refs/heads/dev", Old: zeros, New: commit1},
			"only main deploys web", "refused"},
		{"delete", alice, control.Push{Site: "web", Ref: "refs/heads/main", Old: commit1, New: zeros},
			"deleting main would leave web with nothing to deploy; it stays", "refused"},
		{"bad commit", alice, control.Push{Site: "web", Ref: "refs/heads/main", Old: zeros, New: "abc"},
			"", "refused"},
		{"site not seen", bob, control.Push{Site: "api", Ref: "refs/heads/main", Old: zeros, New: commit1},
			"no such site: api", "error: no such site: api"},
		// It reaches the engine, which cannot deploy here (no server):
		// the deploy never started, so the reason is the error.
		{"no server", bob, control.Push{Site: "web", Ref: "refs/heads/main", Old: zeros, New: commit1},
			ErrNeedsServer.Error(), "error: " + ErrNeedsServer.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, r := f.control(tc.id, control.Request{Push: &tc.push})
			if res.Code != 1 || res.Reason == "" || (tc.reason != "" && res.Reason != tc.reason) {
				t.Errorf("result %+v, want code 1, reason %q", res, tc.reason)
			}
			if r.stderr != "eeveon: "+res.Reason+"\n" {
				t.Errorf("stderr %q, want the reason on one line", r.stderr)
			}
			ev := f.lastAudit()
			if !strings.HasPrefix(ev.Command, "push") || ev.Site != tc.push.Site || ev.Outcome != tc.outcome || ev.User != tc.id.User {
				t.Errorf("audit %+v, want push of %s with outcome %q", ev, tc.push.Site, tc.outcome)
			}
		})
	}
}

// startedDeploy is an engine whose deploys start and fail, as a failing
// build does: the outcome mapping of a push, without building anything.
type startedDeploy struct{ Engine }

func (startedDeploy) Deploy(_ context.Context, req deployer.Request, out io.Writer) (deployer.Record, error) {
	io.WriteString(out, "==> FAILED (failed): build failed\n")
	return deployer.Record{ID: "20250102-030405-abcd", Site: req.Site, Commit: req.Commit, State: deployer.StateFailed}, errors.New("build failed")
}

func TestControlPushOutcome(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "web"})
	f.rt.Engine = startedDeploy{f.rt.Engine}
	res, r := f.control(bob, control.Request{Push: &control.Push{Site: "web", Ref: "refs/heads/main", Old: zeros, New: commit1}})
	if res.Code != 1 || res.Reason != "deploy 20250102-030405-abcd failed: build failed" {
		t.Errorf("result %+v", res)
	}
	// The deploy's own output said why; the router adds nothing.
	if r.stdout != "==> FAILED (failed): build failed\n" || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if ev := f.lastAudit(); ev.Command != `push "1111111"` || ev.Outcome != "error: build failed" || ev.Site != "web" {
		t.Errorf("audit %+v", ev)
	}
}

func TestControlArgsRunTheCommandLine(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "web"})
	res, r := f.control(bob, control.Request{Args: []string{"whoami"}})
	if res.Code != 0 || res.Reason != "" || r.stdout != "user bob, role deployer, sites web\n" {
		t.Errorf("whoami over control: %+v %+v", res, r)
	}
	res, _ = f.control(bob, control.Request{Args: []string{"deploy", "web", "--ref", "main"}})
	if ev := f.lastAudit(); res.Code != 1 || ev.Outcome != "denied" || ev.Command != "deploy web --ref main" {
		t.Errorf("deploy --ref by a deployer: %+v, audit %+v", res, ev)
	}
}

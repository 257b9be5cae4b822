package command

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/keys"
)

// session runs line through the front end; Run records what it was
// handed instead of sending it anywhere.
func (f *fixture) session(id keys.Identity, env []string, line, stdin string) (result, [][]string) {
	var handed [][]string
	fe := Session{Router: f.rt, MaxLen: 100, Env: env, Run: func(_ context.Context, got keys.Identity, args []string, stdio IO) int {
		if got.User != id.User {
			f.t.Errorf("Run got identity %+v, want %s", got, id.User)
		}
		handed = append(handed, args)
		return 7
	}}
	var out, errOut bytes.Buffer
	code := fe.Handle(context.Background(), id, line, IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut})
	return result{code, out.String(), errOut.String()}, handed
}

func TestSessionFrontEnd(t *testing.T) {
	f := newFixture(t)
	for _, blank := range []string{"", "   ", "\t"} {
		r, handed := f.session(bob, nil, blank, "")
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "There is no shell here") ||
			!strings.HasSuffix(r.stderr, "eeveon: no shell here; run one of the commands above, e.g. ssh HOST status\n") || handed != nil {
			t.Errorf("blank command %q: %+v, handed %q", blank, r, handed)
		}
		if ev := f.lastAudit(); ev.Command != "shell" || ev.Outcome != "denied" {
			t.Errorf("blank command %q audited as %+v", blank, ev)
		}
	}
	r, handed := f.session(bob, nil, "status web; cat /etc/passwd", "")
	if r.code != 2 || !strings.Contains(r.stderr, "shell metacharacter") || handed != nil {
		t.Errorf("metacharacter: %+v, handed %q", r, handed)
	}
	if ev := f.lastAudit(); ev.Command != "status … (not parsed)" || !strings.HasPrefix(ev.Outcome, "error: bad command line") {
		t.Errorf("metacharacter audited as %+v", ev)
	}
	if r, _ := f.session(bob, nil, "status "+strings.Repeat("x", 100), ""); r.code != 2 || !strings.Contains(r.stderr, "longer than 100 bytes") {
		t.Errorf("long line: %+v", r)
	}
	r, handed = f.session(bob, nil, `history 'web' -n 3`, "")
	if r.code != 7 || len(handed) != 1 || strings.Join(handed[0], "|") != "history|web|-n|3" {
		t.Errorf("a verb is handed to Run, parsed: %+v, handed %q", r, handed)
	}
}

func TestSessionGit(t *testing.T) {
	f := newFixture(t, deployer.Site{Name: "web"}, deployer.Site{Name: "api"})
	// A fetch by a deployer of web, in git protocol v2 (the client's
	// GIT_PROTOCOL is the one variable of its environment git gets).
	env := []string{"GIT_PROTOCOL=version=2", "EEVEON_HOOK_USER=mallory"}
	r, handed := f.session(bob, env, "git-upload-pack '/web.git'", "0000")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "000eversion 2\n") || handed != nil {
		t.Errorf("fetch: %+v, handed %q", r, handed)
	}
	if ev := f.lastAudit(); ev.Command != "fetch" || ev.Site != "web" || ev.Outcome != "ok" || ev.User != "bob" {
		t.Errorf("fetch audited as %+v", ev)
	}
	// A site bob may not see is refused like one that does not exist.
	r, _ = f.session(bob, nil, "git receive-pack 'api'", "")
	if r.code != 1 || r.stderr != "eeveon: no such site: api\n" || r.stdout != "" {
		t.Errorf("push to a site not seen: %+v", r)
	}
	if ev := f.lastAudit(); ev.Command != "push api" || ev.Outcome != "error: no such site: api" {
		t.Errorf("refused push audited as %+v", ev)
	}
}

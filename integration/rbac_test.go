package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This file drives the permission table (keys/rbac.go) end to end: every
// verb of the command surface and both git transports, through the real
// OpenSSH and git clients, for one key per role. It also covers how the
// key store follows hand edits and `eeveon keys add` without a restart, and
// the local CLI.

// sshWith runs the real ssh client with key, extra client options (before
// the host) and a command.
func (e *Env) rbSSH(key string, opts []string, command ...string) Result {
	e.t.Helper()
	args := append(e.SSHArgs(key), opts...)
	args = append(args, "deploy@127.0.0.1")
	args = append(args, command...)
	return run(e.t, e.Dir, nil, "", "ssh", args...)
}

// quiet keeps ssh's own warnings (a new known_hosts entry) off stderr, so
// that stderr holds exactly what the server said.
var rbQuiet = []string{"-o", "LogLevel=ERROR"}

// gitQuiet is GIT_SSH_COMMAND for key with ssh's warnings off.
func (e *Env) rbGitSSH(key string) string {
	return e.GitSSH(key) + " -o LogLevel=ERROR"
}

// fingerprint is the SHA256 fingerprint of the public key next to key.
func rbFingerprint(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub").Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l %s: %v", key, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 || !strings.HasPrefix(f[1], "SHA256:") {
		t.Fatalf("ssh-keygen -l %s: %q", key, out)
	}
	return f[1]
}

// auditEvent is one line of <data>/audit.log.
type rbAuditEvent struct {
	User        string `json:"user"`
	Role        string `json:"role"`
	Fingerprint string `json:"fingerprint"`
	Remote      string `json:"remote"`
	Source      string `json:"source"`
	Command     string `json:"command"`
	Site        string `json:"site"`
	Outcome     string `json:"outcome"`
}

// audit reads the audit log; every line must be a JSON object.
func (e *Env) rbAudit() []rbAuditEvent {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.Data, "audit.log"))
	if err != nil {
		e.t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var evs []rbAuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var ev rbAuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			e.t.Fatalf("audit log line is not JSON: %v\n%s", err, sc.Text())
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// findAudit returns the first event that match accepts.
func rbFindAudit(evs []rbAuditEvent, match func(rbAuditEvent) bool) (rbAuditEvent, bool) {
	for _, ev := range evs {
		if match(ev) {
			return ev, true
		}
	}
	return rbAuditEvent{}, false
}

// trivialSite adds a site with the stamping build and has admin push it
// once, so that it has a live release, a history and a log.
func (e *Env) rbSite(admin, name string) *Repo {
	e.t.Helper()
	e.MustEeveon("site", "add", name, "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	repo := e.NewRepo(name, map[string]string{"build.sh": buildScript})
	if r := repo.Push(admin, name); r.Code != 0 {
		e.t.Fatalf("first push of %s: %s", name, r.Out())
	}
	return repo
}

// outcome is what a key should get for one row of the permission table.
type rbOutcome int

const (
	rbAllowed  rbOutcome = iota + 1
	rbDenied             // "eeveon: permission denied: <role> may not <verb> <site>"
	rbNotFound           // exactly what a site that does not exist gets
	rbUsage              // help on stderr, exit 2
)

// permKey is one key of the matrix.
type rbKey struct {
	name, user, role string
	key, fp          string
}

// permRow is one line of the matrix: an SSH command, or a git transport
// ("push" or "fetch") on site.
type rbRow struct {
	cmd  string // the SSH command line; empty for git rows
	git  string // "push" or "fetch"
	site string // the site named, "" for none
	// denyAs is "<verb>[ <site>]" of the refusal message.
	denyAs string
	want   map[string]rbOutcome // key name -> outcome
	// ok checks the output of an allowed command.
	ok func(t *testing.T, k rbKey, r Result)
}

func (row rbRow) name() string {
	if row.git != "" {
		return "git " + row.git + " " + row.site
	}
	return row.cmd
}

func rbStdoutHas(subs ...string) func(*testing.T, rbKey, Result) {
	return func(t *testing.T, k rbKey, r Result) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(r.Stdout, s) {
				t.Errorf("%s: stdout lacks %q:\n%s", k.name, s, r.Stdout)
			}
		}
	}
}

// TestPermMatrix checks every verb and both git transports for an admin, a
// deployer granted one site, and a deployer of all sites.
func TestPermMatrix(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	keyOf := map[string]*rbKey{
		"admin":   {name: "admin", user: "alice", role: "admin"},
		"granted": {name: "granted", user: "bob", role: "deployer"},
		"all":     {name: "all", user: "carol", role: "deployer"},
	}
	keyOf["admin"].key = e.AddKey("alice", "admin", "")
	keyOf["granted"].key = e.AddKey("bob", "deployer", "web")
	keyOf["all"].key = e.AddKey("carol", "deployer", "")
	for _, k := range keyOf {
		k.fp = rbFingerprint(t, k.key)
	}
	order := []*rbKey{keyOf["admin"], keyOf["granted"], keyOf["all"]}
	web := e.rbSite(keyOf["admin"].key, "web")
	e.rbSite(keyOf["admin"].key, "api")
	webMain := web.Git("rev-parse", "HEAD")

	every := func(o rbOutcome) map[string]rbOutcome {
		return map[string]rbOutcome{"admin": o, "granted": o, "all": o}
	}
	adminOnly := map[string]rbOutcome{"admin": rbAllowed, "granted": rbDenied, "all": rbDenied}
	hidden := map[string]rbOutcome{"admin": rbAllowed, "granted": rbNotFound, "all": rbAllowed}

	rows := []rbRow{
		{cmd: "help", want: every(rbAllowed), ok: rbStdoutHas("There is no shell here", "whoami", "rollback SITE")},
		{cmd: "whoami", want: every(rbAllowed), ok: func(t *testing.T, k rbKey, r Result) {
			sites := "all sites"
			if k.name == "granted" {
				sites = "web"
			}
			want := "user " + k.user + ", role " + k.role + ", sites " + sites + ", key " + k.fp + "\n"
			if r.Stdout != want {
				t.Errorf("%s: whoami = %q, want %q", k.name, r.Stdout, want)
			}
		}},
		{cmd: "sites", want: every(rbAllowed), ok: func(t *testing.T, k rbKey, r Result) {
			want := "api\nweb\n"
			if k.name == "granted" {
				want = "web\n"
			}
			if r.Stdout != want {
				t.Errorf("%s: sites = %q, want %q", k.name, r.Stdout, want)
			}
		}},
		{cmd: "status", want: every(rbAllowed), ok: func(t *testing.T, k rbKey, r Result) {
			if !strings.HasPrefix(r.Stdout, "web\n") && !strings.Contains(r.Stdout, "\nweb\n") {
				t.Errorf("%s: status lacks web:\n%s", k.name, r.Stdout)
			}
			seesAPI := strings.HasPrefix(r.Stdout, "api\n")
			if seesAPI != (k.name != "granted") {
				t.Errorf("%s: status shows api = %v:\n%s", k.name, seesAPI, r.Stdout)
			}
		}},
		{cmd: "status web", site: "web", want: every(rbAllowed), ok: rbStdoutHas("web\n  live:     ", "strategy: blue-green")},
		{cmd: "status api", site: "api", want: hidden, ok: rbStdoutHas("api\n  live:     ")},
		{cmd: "history web", site: "web", want: every(rbAllowed), ok: rbStdoutHas("STATE", " live ", "alice")},
		{cmd: "history api", site: "api", want: hidden, ok: rbStdoutHas("STATE", " live ")},
		{cmd: "logs web", site: "web", want: every(rbAllowed), ok: rbStdoutHas("built web")},
		{cmd: "deploy web", site: "web", want: every(rbAllowed), ok: rbStdoutHas("live: web " + webMain[:7])},
		{cmd: "deploy api", site: "api", want: hidden, ok: rbStdoutHas("live: api ")},
		{cmd: "deploy web --ref main", site: "web", denyAs: "deploy --ref web", want: adminOnly, ok: rbStdoutHas("live: web " + webMain[:7])},
		{cmd: "rollback web", site: "web", denyAs: "rollback web", want: adminOnly, ok: rbStdoutHas("live: web " + webMain[:7])},
		{cmd: "keys list", denyAs: "keys", want: adminOnly, ok: rbStdoutHas("USER", "alice", "bob", "carol", keyOf["granted"].fp)},
		{cmd: "frobnicate web", want: every(rbUsage)},
		{git: "push", site: "web", want: every(rbAllowed)},
		{git: "push", site: "api", want: hidden},
		{git: "fetch", site: "web", want: every(rbAllowed)},
		{git: "fetch", site: "api", want: hidden},
	}

	// do runs a row for k, naming site instead of row.site.
	do := func(row rbRow, k *rbKey, site string, tag string) Result {
		t.Helper()
		if row.git == "" {
			cmd := row.cmd
			if row.site != "" {
				cmd = strings.Replace(cmd, row.site, site, 1)
			}
			return e.rbSSH(k.key, rbQuiet, strings.Fields(cmd)...)
		}
		env := []string{e.rbGitSSH(k.key)}
		if row.git == "push" {
			// A branch of its own, which is stored, not deployed: the
			// bare repository shows whether the push got through.
			return run(t, web.Dir, env, "", "git", "push", e.URL(site), "HEAD:refs/heads/"+k.user+"-"+tag)
		}
		dir := filepath.Join(e.Dir, "clone-"+k.user+"-"+tag)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return run(t, dir, env, "", "git", "clone", "-q", e.URL(site), "clone")
	}

	for i, row := range rows {
		tag := strconv.Itoa(i)
		for _, k := range order {
			want := row.want[k.name]
			r := do(row, k, row.site, tag)
			label := k.name + " " + row.name()
			switch want {
			case rbAllowed:
				if r.Code != 0 {
					t.Errorf("%s: want allowed, got exit %d\n%s", label, r.Code, r.Out())
					continue
				}
				if row.ok != nil {
					row.ok(t, *k, r)
				}
				switch row.git {
				case "push":
					got := strings.TrimSpace(run(t, e.Dir, nil, "", "git", "--git-dir", e.Data+"/repos/"+row.site+".git",
						"rev-parse", "refs/heads/"+k.user+"-"+tag).Stdout)
					if got != webMain {
						t.Errorf("%s: the push did not store the branch: %q", label, got)
					}
				case "fetch":
					// (Not HEAD: see TestPermCloneChecksOutSiteBranch.)
					got := strings.TrimSpace(run(t, filepath.Join(e.Dir, "clone-"+k.user+"-"+tag, "clone"), nil, "", "git", "rev-parse", "--verify", "-q", "refs/remotes/origin/main").Stdout)
					if len(got) != 40 {
						t.Errorf("%s: the clone has no origin/main: %q", label, got)
					}
					if row.site == "web" && got != webMain {
						t.Errorf("%s: cloned %s, want %s", label, got, webMain)
					}
				}
			case rbDenied:
				msg := "eeveon: permission denied: " + k.role + " may not " + row.denyAs + "\n"
				if r.Code != 1 || r.Stderr != msg || r.Stdout != "" {
					t.Errorf("%s: want exit 1 and stderr %q, got exit %d\nstdout: %q\nstderr: %q", label, msg, r.Code, r.Stdout, r.Stderr)
				}
			case rbNotFound:
				// The same command on a site that does not exist must
				// look exactly the same, name aside.
				other := do(row, k, "nosuch", "n"+tag)
				if r.Code == 0 || r.Code != other.Code || r.Stdout != other.Stdout ||
					r.Stderr != strings.ReplaceAll(other.Stderr, "nosuch", row.site) {
					t.Errorf("%s: a hidden site differs from a missing one:\n%s: exit %d %q %q\nnosuch: exit %d %q %q",
						label, row.site, r.Code, r.Stdout, r.Stderr, other.Code, other.Stdout, other.Stderr)
				}
				if !strings.Contains(r.Stderr, "eeveon: no such site: "+row.site+"\n") {
					t.Errorf("%s: stderr lacks the not-found line:\n%s", label, r.Stderr)
				}
			case rbUsage:
				if r.Code != 2 || r.Stdout != "" || !strings.Contains(r.Stderr, "There is no shell here") ||
					!strings.HasSuffix(r.Stderr, "eeveon: unknown command \"frobnicate\"\n") {
					t.Errorf("%s: want help on stderr and exit 2, got exit %d\nstdout: %q\nstderr: %q", label, r.Code, r.Stdout, r.Stderr)
				}
			default:
				t.Fatalf("%s: no expectation", label)
			}
		}
	}

	// Every refusal is in the audit log, with who, from where, and what.
	evs := e.rbAudit()
	for _, row := range rows {
		for _, k := range order {
			want := row.want[k.name]
			if want == rbAllowed {
				continue
			}
			command := row.cmd
			if row.git != "" {
				command = row.git
			}
			ev, ok := rbFindAudit(evs, func(ev rbAuditEvent) bool {
				// The git path may add the repository path to the verb.
				return ev.User == k.user && ev.Site == row.site &&
					(ev.Command == command || row.git != "" && strings.HasPrefix(ev.Command, command+" "))
			})
			label := k.name + " " + row.name()
			if !ok {
				t.Errorf("%s: no audit line for user %s, command %q, site %q", label, k.user, command, row.site)
				continue
			}
			if ev.Fingerprint != k.fp || ev.Role != k.role || ev.Source != "ssh" || !strings.HasPrefix(ev.Remote, "127.0.0.1:") {
				t.Errorf("%s: audit line %+v", label, ev)
			}
			switch want {
			case rbDenied:
				if ev.Outcome != "denied" {
					t.Errorf("%s: audit outcome %q, want denied", label, ev.Outcome)
				}
			case rbNotFound:
				// The command path writes "error: no such site: …", the
				// git path "denied: no such site: …".
				if !strings.Contains(ev.Outcome, "no such site: "+row.site) {
					t.Errorf("%s: audit outcome %q", label, ev.Outcome)
				}
			case rbUsage:
				if !strings.HasPrefix(ev.Outcome, "error: unknown command") {
					t.Errorf("%s: audit outcome %q", label, ev.Outcome)
				}
			}
		}
	}
}

// TestPermDeployerBuildCannotEscalate: a deployer's push runs the build
// script it pushed. That script must not be able to make its author an
// TestPermDeployerBuildCannotEscalate: with run_as, the code a deployer
// pushes runs as a user who cannot reach the data dir, so its build cannot
// rewrite authorized_keys (or talk to the control socket) to become admin.
// Without run_as, builds run as the server's user: the README says the
// deployer role then trusts the pushed code.
func TestPermDeployerBuildCannotEscalate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run_as needs the server to run as root")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody to build as")
	}
	t.Parallel()
	e := NewEnv(t)
	// Site paths must be outside the (0700) data dir and traversable.
	srv, err := os.MkdirTemp("", "eeveon-srv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(srv) })
	if err := os.Chmod(srv, 0o755); err != nil {
		t.Fatal(err)
	}
	e.restartWithConfig("[deploy]\nrun_as = \"nobody\"\n")
	admin := e.AddKey("alice", "admin", "")
	bob := e.AddKey("bob", "deployer", "web")
	e.MustEeveon("site", "add", "web", "--path", filepath.Join(srv, "web"), "--build", "./build.sh", "--health-cmd", "test -s public/index.html")
	before, err := os.ReadFile(filepath.Join(e.Data, "authorized_keys"))
	if err != nil {
		t.Fatal(err)
	}
	keysFile := filepath.Join(e.Data, "authorized_keys")
	evil := e.NewRepo("evil", map[string]string{"build.sh": "#!/bin/sh\n" +
		"id -u > uid.txt\n" +
		"sed -i 's/--user bob --role deployer --sites web/--user bob --role admin/' '" + keysFile + "' && echo REWROTE\n" +
		// The control socket lives in the data dir: no way in, no claim.
		"test -x '" + e.Data + "' && echo ENTERED\n" +
		"cat '" + keysFile + "' >/dev/null 2>&1 && echo READ\n" +
		"mkdir -p public && echo ok > public/index.html\n"})
	r := run(t, evil.Dir, []string{e.GitSSH(bob)}, "", "git", "push", "-f", e.URL("web"), "main")
	if r.Code != 0 || !strings.Contains(r.Stderr, "live: web") {
		t.Fatalf("push with run_as: exit %d\n%s", r.Code, r.Out())
	}
	if strings.Contains(r.Stderr, "REWROTE") || strings.Contains(r.Stderr, "ENTERED") || strings.Contains(r.Stderr, "READ") {
		t.Errorf("the build reached the data dir:\n%s", r.Stderr)
	}
	uid, _ := os.ReadFile(filepath.Join(srv, "web", "current", "uid.txt"))
	if u, _ := user.Lookup("nobody"); strings.TrimSpace(string(uid)) != u.Uid {
		t.Errorf("the build ran as uid %q, want nobody (%s)", uid, u.Uid)
	}
	after, err := os.ReadFile(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("a deployer's build rewrote authorized_keys:\n%s", after)
	}
	if r := e.SSH(bob, "keys", "list"); r.Code == 0 {
		t.Errorf("bob became admin through his build:\n%s", r.Stdout)
	}
	// A site inside the data dir cannot work with run_as: said plainly.
	e.MustEeveon("site", "add", "inside", "--build", "true")
	in := e.NewRepo("inside", map[string]string{"f": "1"})
	if r := in.Push(admin, "inside"); !strings.Contains(r.Stderr, "must be outside the data dir") {
		t.Errorf("site inside the data dir with run_as:\n%s", r.Out())
	}
}

// TestPermDeployerMayNotOverrideStrategy: the strategy is the site's
// configuration, which is the admin's; a deployer's `deploy --strategy
// in-place` on a blue-green site would turn current into a plain
// directory and take the admin's instant rollback away.
func TestPermDeployerMayNotOverrideStrategy(t *testing.T) {

	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	bob := e.AddKey("bob", "deployer", "web")
	repo := e.rbSite(admin, "web")
	repo.Commit("two", map[string]string{"x": "2"})
	if r := repo.Push(admin, "web"); r.Code != 0 || e.Live("web") != "green" {
		t.Fatalf("second push: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}
	r := e.rbSSH(bob, rbQuiet, "deploy", "web", "--strategy", "in-place")
	if r.Code == 0 || !strings.HasPrefix(r.Stderr, "eeveon: permission denied: deployer may not deploy") {
		t.Errorf("deployer deploy --strategy in-place: exit %d\n%s", r.Code, r.Out())
	}
	if e.Live("web") != "green" {
		t.Errorf("current is no longer the green symlink (%q)", e.Live("web"))
	}
	if r := e.SSH(admin, "rollback", "web"); r.Code != 0 || e.Live("web") != "blue" {
		t.Errorf("admin rollback afterwards: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}
}

// TestPermCloneChecksOutSiteBranch: cloning a site checks out its branch.
func TestPermCloneChecksOutSiteBranch(t *testing.T) {

	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	repo := e.rbSite(admin, "web")
	head := repo.Git("rev-parse", "HEAD")
	r := run(t, e.Dir, []string{e.GitSSH(admin)}, "", "git", "clone", "-q", e.URL("web"), "clone")
	if r.Code != 0 || strings.Contains(r.Stderr, "unable to checkout") {
		t.Fatalf("clone: exit %d\n%s", r.Code, r.Out())
	}
	got := run(t, filepath.Join(e.Dir, "clone"), nil, "", "git", "rev-parse", "HEAD")
	if strings.TrimSpace(got.Stdout) != head {
		t.Errorf("the clone's HEAD is %q, want %s", got.Out(), head)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "clone", "build.sh")); err != nil {
		t.Errorf("the clone has no work tree: %v", err)
	}
}

// TestKeysHandEditReload: the server follows edits of authorized_keys,
// by hand or by `eeveon keys add`, without a restart.
func TestKeysHandEditReload(t *testing.T) {
	t.Parallel()
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	bob := e.AddKey("bob", "deployer", "web")
	carol := e.AddKey("carol", "deployer", "")
	e.MustEeveon("site", "add", "web", "--build", "./build.sh")
	akPath := filepath.Join(e.Data, "authorized_keys")

	if r := e.SSH(bob, "whoami"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "user bob, role deployer") {
		t.Fatalf("bob before: exit %d\n%s", r.Code, r.Out())
	}

	// Bob holds a connection open (a ControlMaster) across the edit: a
	// session opened on it afterwards must be refused too, because the
	// identity is looked up again for every session.
	ctl := filepath.Join(e.Dir, "cm")
	master := exec.Command("ssh", append(e.SSHArgs(bob), "-o", "LogLevel=ERROR", "-M", "-S", ctl, "-N", "deploy@127.0.0.1")...)
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = master.Process.Kill(); _ = master.Wait() })
	rbWaitFor(t, 10*time.Second, "the control master", func() bool { _, err := os.Stat(ctl); return err == nil })
	overMaster := func() Result {
		return e.rbSSH(bob, []string{"-S", ctl, "-o", "ControlMaster=no"}, "whoami")
	}
	if r := overMaster(); r.Code != 0 || !strings.HasPrefix(r.Stdout, "user bob") {
		t.Fatalf("session over the master: exit %d\n%s", r.Code, r.Out())
	}

	// Remove bob's line by rewriting the file in place.
	b, err := os.ReadFile(akPath)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" && !strings.Contains(l, "--user bob ") {
			kept = append(kept, l)
		}
	}
	if len(kept) != strings.Count(string(b), "\n")-1 {
		t.Fatalf("expected to drop exactly one line of:\n%s", b)
	}
	if err := os.WriteFile(akPath, []byte(strings.Join(kept, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.SSH(bob, "whoami")
	if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied (publickey)") || strings.Contains(r.Stdout, "user bob") {
		t.Fatalf("bob after removal: exit %d\n%s", r.Code, r.Out())
	}
	r = overMaster()
	if r.Code != 1 || r.Stderr != "eeveon: permission denied: unknown key\n" || r.Stdout != "" {
		t.Errorf("session on bob's old connection: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := e.SSH(admin, "whoami"); r.Code != 0 {
		t.Fatalf("alice after removing bob: exit %d\n%s", r.Code, r.Out())
	}

	// A malformed line is skipped; the other keys keep working.
	f, err := os.OpenFile(akPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("command=\"eeveon shell --user mallory --role admin\",restrict ssh-ed25519 AAAAnotbase64!! mallory\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	badLine := len(kept) + 1
	for _, k := range []string{admin, carol} {
		if r := e.SSH(k, "whoami"); r.Code != 0 {
			t.Errorf("%s with a malformed line in the file: exit %d\n%s", k, r.Code, r.Out())
		}
	}
	r = e.SSH(admin, "keys", "list")
	if r.Code != 0 || !strings.Contains(r.Stdout, "carol") || strings.Contains(r.Stdout, "bob") || strings.Contains(r.Stdout, "mallory") ||
		!strings.Contains(r.Stdout, "warning: authorized_keys line "+strconv.Itoa(badLine)+":") {
		t.Errorf("keys list with a malformed line: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}

	// Adding carol's key again updates its one line: deployer -> admin,
	// at once.
	if r := e.SSH(carol, "keys", "list"); r.Code != 1 || r.Stderr != "eeveon: permission denied: deployer may not keys\n" {
		t.Fatalf("carol as deployer: exit %d\n%s", r.Code, r.Out())
	}
	out := e.MustEeveon("keys", "add", "--user", "carol", "--role", "admin", carol+".pub")
	if !strings.HasPrefix(out.Stdout, "updated key "+rbFingerprint(t, carol)+" for carol (admin, all sites)") {
		t.Errorf("second keys add: %s", out.Out())
	}
	e.MustEeveon("keys", "add", "--user", "carol", "--role", "admin", carol+".pub")
	b, err = os.ReadFile(akPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(carol + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	keyField := strings.Fields(string(pub))[1]
	if n := strings.Count(string(b), keyField); n != 1 {
		t.Errorf("carol's key is on %d lines:\n%s", n, b)
	}
	if !strings.Contains(string(b), "--user carol --role admin\",restrict ssh-ed25519 "+keyField) {
		t.Errorf("carol's line was not updated:\n%s", b)
	}
	if !strings.Contains(string(b), "AAAAnotbase64!! mallory\n") {
		t.Errorf("keys add dropped the malformed line:\n%s", b)
	}
	if r := e.SSH(carol, "whoami"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "user carol, role admin, sites all sites") {
		t.Errorf("carol after the update: exit %d\n%s", r.Code, r.Out())
	}
	if r := e.SSH(carol, "keys", "list"); r.Code != 0 || !strings.Contains(r.Stdout, "alice") {
		t.Errorf("carol as admin may not list keys: exit %d\n%s", r.Code, r.Out())
	}
}

// TestLocalCLI: on the box, root is admin through the control socket, and
// the read-only verbs answer from the files when the server is down.
func TestLocalCLI(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("the local CLI is admin only for root or the admin group; run as root")
	}
	e := NewEnv(t)
	admin := e.AddKey("alice", "admin", "")
	repo := e.rbSite(admin, "web")
	c1 := repo.Git("rev-parse", "HEAD")
	c2 := repo.Commit("two", map[string]string{"x": "2"})
	if r := repo.Push(admin, "web"); r.Code != 0 || e.Live("web") != "green" {
		t.Fatalf("second push: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}

	r := e.Eeveon("rollback", "web")
	if r.Code != 0 || !strings.Contains(r.Stdout, "live: web "+c1[:7]+" on blue") || e.Live("web") != "blue" {
		t.Fatalf("local rollback: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}
	if _, ok := rbFindAudit(e.rbAudit(), func(ev rbAuditEvent) bool {
		return ev.User == "root" && ev.Role == "admin" && ev.Source == "local" && ev.Remote == "local" &&
			ev.Command == "rollback web" && ev.Site == "web" && ev.Outcome == "ok"
	}); !ok {
		t.Errorf("no audit line for the local rollback")
	}

	e.Stop()
	r = e.Eeveon("status", "web")
	if r.Code != 0 || r.Stderr != "eeveon: the server is not running; answering from the files\n" ||
		!strings.HasPrefix(r.Stdout, "web\n  live:     blue "+c1[:7]+" (main)") || !strings.Contains(r.Stdout, "by root") {
		t.Errorf("offline status: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = e.Eeveon("history", "web")
	if r.Code != 0 || !strings.Contains(r.Stdout, c2[:7]) || !strings.Contains(r.Stdout, "rollback") {
		t.Errorf("offline history: exit %d\n%s", r.Code, r.Out())
	}
	r = e.Eeveon("rollback", "web")
	if r.Code == 0 || !strings.Contains(r.Stderr, "the eeveon server is not running") || e.Live("web") != "blue" {
		t.Errorf("offline rollback: exit %d, live %q\n%s", r.Code, e.Live("web"), r.Out())
	}
}

// waitFor polls cond until it holds or d passes.
func rbWaitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

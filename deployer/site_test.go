package deployer

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSaveLoadListRemoveSite(t *testing.T) {
	d := newData(t)
	in := Site{Name: "hello", Branch: "prod", Build: "make site", HealthCmd: "test -f index.html",
		HealthURL: "http://127.0.0.1:8080/{color}/", Strategy: InPlace, Path: "www/hello"}
	saved, err := SaveSite(d, in, true, "")
	if err != nil {
		t.Fatal(err)
	}
	if saved.Path != filepath.Join(d.Dir, "www", "hello") {
		t.Errorf("SaveSite returned path %q, want it resolved against the data dir", saved.Path)
	}
	if fi, err := os.Stat(d.SiteFile("hello")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("site file: %v, mode %v", err, fi)
	}
	got, err := LoadSite(d, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, saved) {
		t.Errorf("LoadSite = %+v, want %+v", got, saved)
	}
	if _, err := os.Stat(filepath.Join(d.Repo("hello"), "HEAD")); err != nil {
		t.Errorf("SaveSite did not create the bare repo: %v", err)
	}

	if _, err := SaveSite(d, Site{Name: "hello"}, true, ""); !errors.Is(err, ErrSiteExists) {
		t.Errorf("second SaveSite(create) = %v, want ErrSiteExists", err)
	}
	// The refused create left the first definition alone.
	if again, _ := LoadSite(d, "hello"); !reflect.DeepEqual(again, saved) {
		t.Errorf("after a refused create, LoadSite = %+v", again)
	}
	// Without create, SaveSite updates.
	upd := saved
	upd.Build = "make other"
	if _, err := SaveSite(d, upd, false, ""); err != nil {
		t.Fatal(err)
	}
	if again, _ := LoadSite(d, "hello"); again.Build != "make other" {
		t.Errorf("update not saved: %+v", again)
	}

	if _, err := SaveSite(d, Site{Name: "api"}, true, ""); err != nil {
		t.Fatal(err)
	}
	sites, errs := ListSites(d)
	if len(errs) != 0 {
		t.Fatalf("ListSites errors: %v", errs)
	}
	if len(sites) != 2 || sites[0].Name != "api" || sites[1].Name != "hello" {
		t.Fatalf("ListSites = %+v, want api, hello", sites)
	}

	if err := RemoveSite(d, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSite(d, "hello"); !errors.Is(err, ErrSiteNotFound) {
		t.Errorf("LoadSite after RemoveSite = %v, want ErrSiteNotFound", err)
	}
	if err := RemoveSite(d, "hello"); !errors.Is(err, ErrSiteNotFound) {
		t.Errorf("second RemoveSite = %v, want ErrSiteNotFound", err)
	}
	// The repository is left on disk.
	if _, err := os.Stat(filepath.Join(d.Repo("hello"), "HEAD")); err != nil {
		t.Errorf("RemoveSite removed the repository: %v", err)
	}
	sites, _ = ListSites(d)
	if len(sites) != 1 || sites[0].Name != "api" {
		t.Errorf("ListSites after remove = %+v", sites)
	}
}

func TestSaveSiteRefusesInvalid(t *testing.T) {
	d := newData(t)
	for _, s := range []Site{{Name: "Bad"}, {Name: "x", Path: "/"}, {Name: "x", Strategy: "rolling"}} {
		if _, err := SaveSite(d, s, true, ""); err == nil {
			t.Errorf("SaveSite(%+v) accepted", s)
		}
	}
	if _, err := os.Stat(d.SitesDir()); err == nil {
		if ents, _ := os.ReadDir(d.SitesDir()); len(ents) > 0 {
			t.Errorf("invalid sites left files: %v", ents)
		}
	}
	if _, err := os.Stat(d.Repo("x")); err == nil {
		t.Error("an invalid site got a repository")
	}
}

func TestLoadSiteNotFound(t *testing.T) {
	d := newData(t)
	if _, err := LoadSite(d, "nope"); !errors.Is(err, ErrSiteNotFound) {
		t.Errorf("LoadSite(nope) = %v, want ErrSiteNotFound", err)
	}
	if _, err := LoadSite(d, "../etc"); err == nil || errors.Is(err, ErrSiteNotFound) {
		t.Errorf("LoadSite(../etc) = %v, want a name error", err)
	}
	if err := RemoveSite(d, "../x"); err == nil || errors.Is(err, ErrSiteNotFound) {
		t.Errorf("RemoveSite(../x) = %v, want a name error", err)
	}
}

func TestListSitesSkipsBroken(t *testing.T) {
	d := newData(t)
	for _, n := range []string{"a", "c"} {
		if _, err := SaveSite(d, Site{Name: n}, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, d.SiteFile("b"), "name = \"b\"\nfrobnicate = true\n")
	writeFile(t, filepath.Join(d.SitesDir(), "Upper.toml"), "name = \"Upper\"\n")
	writeFile(t, filepath.Join(d.SitesDir(), "README"), "not a site\n")
	writeFile(t, filepath.Join(d.SitesDir(), ".hidden.toml"), "garbage")
	sites, errs := ListSites(d)
	var got []string
	for _, s := range sites {
		got = append(got, s.Name)
	}
	if !reflect.DeepEqual(got, []string{"a", "c"}) {
		t.Errorf("ListSites = %v, want [a c]", got)
	}
	if len(errs) != 2 {
		t.Fatalf("ListSites errors = %v, want two (b.toml and Upper.toml)", errs)
	}
	all := errs[0].Error() + "\n" + errs[1].Error()
	if !strings.Contains(all, "frobnicate") || !strings.Contains(all, d.SiteFile("b")) || !strings.Contains(all, "Upper") {
		t.Errorf("ListSites errors do not name the broken files:\n%s", all)
	}
}

func TestListSitesEmpty(t *testing.T) {
	d := newData(t)
	sites, errs := ListSites(d)
	if len(sites) != 0 || len(errs) != 0 {
		t.Errorf("ListSites on an empty data dir = %v, %v", sites, errs)
	}
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitEnv isolates the tests from the user's git configuration.
var gitEnv = []string{
	"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
	"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
	"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
}

func TestEnsureRepo(t *testing.T) {
	d := newData(t)
	exe := "/opt/eeveon dir/bin/eeveon"
	if err := EnsureRepo(d, "hello", exe); err != nil {
		t.Fatal(err)
	}
	repo := d.Repo("hello")
	if got := gitOut(t, repo, "rev-parse", "--is-bare-repository"); got != "true" {
		t.Errorf("repo is not bare: %q", got)
	}
	if got := gitOut(t, repo, "config", "receive.fsckObjects"); got != "true" {
		t.Errorf("receive.fsckObjects = %q", got)
	}
	for _, name := range []string{"post-receive", "proc-receive"} {
		fi, err := os.Stat(filepath.Join(repo, "hooks", name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o111 != 0o111 {
			t.Errorf("%s hook mode %v is not executable", name, fi.Mode())
		}
	}
	hook := filepath.Join(repo, "hooks", "proc-receive")
	body, _ := os.ReadFile(hook)
	if !strings.Contains(string(body), ShellQuote(exe)+" hook proc-receive --data "+ShellQuote(d.Dir)) {
		t.Errorf("hook does not call %q:\n%s", exe, body)
	}
	if err := exec.Command("sh", "-n", hook).Run(); err != nil {
		t.Errorf("hook is not valid sh: %v", err)
	}

	// Idempotent: a second call changes nothing and moves nothing.
	before, _ := os.Stat(hook)
	if err := EnsureRepo(d, "hello", exe); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(hook)
	if !os.SameFile(before, after) {
		t.Error("a second EnsureRepo rewrote an identical hook")
	}
	if _, err := os.Stat(hook + ".local"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a second EnsureRepo made post-receive.local: %v", err)
	}

	// Our own hook for another exe is rewritten in place, not kept.
	if err := EnsureRepo(d, "hello", "/usr/bin/eeveon"); err != nil {
		t.Fatal(err)
	}
	body, _ = os.ReadFile(hook)
	if !strings.Contains(string(body), "'/usr/bin/eeveon' hook proc-receive") {
		t.Errorf("hook not updated for the new exe:\n%s", body)
	}
	if _, err := os.Stat(hook + ".local"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("our own old hook was moved to post-receive.local: %v", err)
	}
}

func TestEnsureRepoKeepsForeignHook(t *testing.T) {
	d := newData(t)
	if err := EnsureRepo(d, "hello", ""); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(d.Repo("hello"), "hooks", "post-receive")
	if _, err := os.Stat(hook); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("EnsureRepo with no exe wrote a hook: %v", err)
	}
	foreign := "#!/bin/sh\necho my own hook\n"
	if err := os.WriteFile(hook, []byte(foreign), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsureRepo(d, "hello", "/usr/bin/eeveon"); err != nil {
		t.Fatal(err)
	}
	local, err := os.ReadFile(hook + ".local")
	if err != nil || string(local) != foreign {
		t.Fatalf("post-receive.local = %q, %v; want the foreign hook", local, err)
	}
	if fi, _ := os.Stat(hook + ".local"); fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("post-receive.local lost its exec bit: %v", fi.Mode())
	}
	body, _ := os.ReadFile(hook)
	if !strings.Contains(string(body), hookMarker) {
		t.Errorf("post-receive is not ours:\n%s", body)
	}
	// Again: nothing moves, the foreign hook survives.
	if err := EnsureRepo(d, "hello", "/usr/bin/eeveon"); err != nil {
		t.Fatal(err)
	}
	if local, _ := os.ReadFile(hook + ".local"); string(local) != foreign {
		t.Errorf("second EnsureRepo changed post-receive.local to %q", local)
	}
}

// TestEnsureRepoSecondForeignHook: a foreign hook dropped over ours after
// the first one was moved aside must not silently destroy the first.
func TestEnsureRepoSecondForeignHook(t *testing.T) {
	d := newData(t)
	hook := filepath.Join(d.Repo("hello"), "hooks", "post-receive")
	if err := EnsureRepo(d, "hello", ""); err != nil {
		t.Fatal(err)
	}
	writeFile(t, hook, "#!/bin/sh\necho first\n")
	if err := EnsureRepo(d, "hello", "/usr/bin/eeveon"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, hook, "#!/bin/sh\necho second\n")
	_ = EnsureRepo(d, "hello", "/usr/bin/eeveon")
	ents, _ := os.ReadDir(filepath.Dir(hook))
	found := false
	for _, e := range ents {
		if b, _ := os.ReadFile(filepath.Join(filepath.Dir(hook), e.Name())); strings.Contains(string(b), "echo first") {
			found = true
		}
	}
	if !found {
		t.Error("the first foreign hook is gone")
	}
}

// hookFixture makes a site repo whose hook calls a fake eeveon that
// appends its arguments and stdin to exe.out and exits 7.
func hookFixture(t *testing.T) (d Data, repo, dir string, run func(hook, input string) (int, error)) {
	t.Helper()
	d = newData(t)
	dir = t.TempDir()
	fake := filepath.Join(dir, "fake eeveon")
	writeFile(t, fake, "#!/bin/sh\necho \"args: $*\" >> \""+dir+"/exe.out\"\ncat >> \""+dir+"/exe.out\"\nexit 7\n")
	if err := os.Chmod(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsureRepo(d, "hello", fake); err != nil {
		t.Fatal(err)
	}
	repo = d.Repo("hello")
	run = func(hook, input string) (int, error) {
		cmd := exec.Command("hooks/" + hook)
		cmd.Dir = repo
		cmd.Stdin = strings.NewReader(input)
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), nil
		}
		return 0, err
	}
	return d, repo, dir, run
}

const pushedRefs = "0000 1111 refs/heads/main\n"

// TestHookScriptRuns runs the generated proc-receive hook with a fake
// eeveon: it gets git's input once and its exit status is the hook's.
func TestHookScriptRuns(t *testing.T) {
	d, _, dir, run := hookFixture(t)
	code, err := run("proc-receive", pushedRefs)
	if err != nil || code != 7 {
		t.Fatalf("hook exit = %d, %v; want eeveon's 7", code, err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "exe.out"))
	if want := "args: hook proc-receive --data " + d.Dir + "\n" + pushedRefs; string(got) != want {
		t.Errorf("eeveon got %q, want %q", got, want)
	}
}

// TestHookScriptWithLocalHook: the post-receive hook runs the repository's
// own post-receive.local with the refs, its exit status is the hook's, and
// it never calls eeveon (the proc-receive hook deployed).
func TestHookScriptWithLocalHook(t *testing.T) {
	_, repo, dir, run := hookFixture(t)
	if code, err := run("post-receive", pushedRefs); err != nil || code != 0 {
		t.Errorf("post-receive without a local hook: exit %d, %v", code, err)
	}
	local := filepath.Join(repo, "hooks", "post-receive.local")
	writeFile(t, local, "#!/bin/sh\ncat > \""+dir+"/local.out\"\nexit 3\n")
	if err := os.Chmod(local, 0o755); err != nil {
		t.Fatal(err)
	}
	code, err := run("post-receive", pushedRefs)
	if b, _ := os.ReadFile(filepath.Join(dir, "local.out")); string(b) != pushedRefs {
		t.Errorf("local hook got %q, want %q", b, pushedRefs)
	}
	if err != nil || code != 3 {
		t.Errorf("hook exit = %d, %v; want the local hook's 3", code, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "exe.out")); err == nil {
		t.Errorf("post-receive called eeveon: %q", b)
	}
}

func TestValidateAppSite(t *testing.T) {
	d := Data{Dir: "/srv/eeveon"}
	for _, tc := range []struct {
		name string
		site Site
		err  string // "" for valid
	}{
		{"app", Site{Start: "./bin/api", Proxy: "127.0.0.1:8080"}, ""},
		{"app with ports", Site{Start: "./bin/api", Proxy: "127.0.0.1:8080", Ports: []int{9001, 9002}, HealthPath: "/healthz"}, ""},
		{"start without proxy", Site{Start: "./bin/api"}, "start and proxy go together"},
		{"proxy without start", Site{Proxy: "127.0.0.1:8080"}, "start and proxy go together"},
		{"in-place app", Site{Start: "./bin/api", Proxy: "127.0.0.1:8080", Strategy: InPlace}, "blue-green"},
		{"proxy not host:port", Site{Start: "x", Proxy: "8080"}, "must be host:port"},
		{"proxy port 0", Site{Start: "x", Proxy: "127.0.0.1:0"}, "must be host:port"},
		{"one port", Site{Start: "x", Proxy: "127.0.0.1:8080", Ports: []int{9001}}, "give two ports"},
		{"same ports", Site{Start: "x", Proxy: "127.0.0.1:8080", Ports: []int{9001, 9001}}, "two different ports"},
		{"port out of range", Site{Start: "x", Proxy: "127.0.0.1:8080", Ports: []int{9001, 70000}}, "1-65535"},
		{"port of the proxy", Site{Start: "x", Proxy: "127.0.0.1:8080", Ports: []int{8080, 9001}}, "the proxy listens"},
		{"relative health path", Site{Start: "x", Proxy: "127.0.0.1:8080", HealthPath: "up"}, "must be a URL path"},
		{"ports without app", Site{Ports: []int{9001, 9002}}, "need start and proxy"},
		{"health path without app", Site{HealthPath: "/up"}, "need start and proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.site
			s.Name = "api"
			err := s.Validate(d)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if !s.IsApp() || s.HealthPath == "" || s.HealthPath[0] != '/' {
					t.Errorf("after Validate: IsApp %v, health path %q", s.IsApp(), s.HealthPath)
				}
				if tc.site.HealthPath == "" && s.HealthPath != DefaultHealthPath {
					t.Errorf("default health path %q, want %q", s.HealthPath, DefaultHealthPath)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Validate = %v, want an error with %q", err, tc.err)
			}
		})
	}
}

func TestSaveLoadAppSite(t *testing.T) {
	d := newData(t)
	in := Site{Name: "api", Start: "exec ./bin/api", Proxy: "127.0.0.1:8080", Ports: []int{9001, 9002}}
	saved, err := SaveSite(d, in, true, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadSite(d, "api")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, saved) || got.HealthPath != DefaultHealthPath || !got.IsApp() {
		t.Errorf("LoadSite = %+v, want %+v", got, saved)
	}
}

// Package check is `eeveon check`: it verifies what a server needs (tools,
// permissions, configuration, sites, ports, disk, clock) and says how to
// fix what is wrong.
package check

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/internal/cgroup"
	"github.com/eeveon/eeveon/keys"
)

// Status of one check.
type Status string

// The statuses, from fine to broken.
const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is one line of the report.
type Result struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Options tune the checks.
type Options struct {
	// ServerRunning says the daemon answers on the control socket, so
	// ports it listens on are expected to be taken.
	ServerRunning bool
	// ServerAddrs are the addresses the running server reports it
	// listens on (from its state file), which may differ from the config.
	ServerAddrs []string
	// AgeKeyFiles are the secrets identity files to check for mode 0600
	// (the caller resolves them; missing files are skipped).
	AgeKeyFiles []string
}

type report []Result

func (r *report) add(check string, st Status, msg, fix string) {
	*r = append(*r, Result{Check: check, Status: st, Message: msg, Fix: fix})
}

// Run performs every check on the data dir d.
func Run(d deployer.Data, opt Options) []Result {
	var r report
	checkGit(&r)
	if err := cgroup.Usable(); err != nil {
		r.add("containment", Warn, "site commands cannot be put in cgroups of their own, so what a build starts may outlive it: "+err.Error(),
			"run eeveon serve as root, or under systemd with Delegate=yes (examples/systemd)")
	} else {
		r.add("containment", OK, "each build, health command and app colour runs in a cgroup of its own", "")
	}
	checkTool(&r, "sh", "/bin/sh", "runs build and health commands", "install a POSIX shell (dash or bash)")
	r.add("rsync", OK, "not needed: eeveon materialises commits with git", "")

	fi, err := os.Stat(d.Dir)
	if err != nil {
		r.add("data dir", Fail, fmt.Sprintf("%s: %v", d.Dir, errors.Unwrap(err)), "eeveon init --data "+d.Dir)
		return r
	}
	if cfg, err := deployer.LoadConfig(d); err == nil && adminGroupDir(fi, cfg.AdminGroup) {
		r.add("data dir", OK, fmt.Sprintf("%s mode 0750, group %s (its members use the local CLI as admins)", d.Dir, cfg.AdminGroup), "")
	} else {
		checkMode(&r, "data dir", d.Dir, fi, 0o700, "chmod 700 "+d.Dir)
	}
	checkOwner(&r, "data dir", d.Dir, fi)
	checkHostKey(&r, d)
	for _, p := range opt.AgeKeyFiles {
		if fi, err := os.Stat(p); err == nil {
			checkMode(&r, "secrets key", p, fi, 0o600, "chmod 600 "+p)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(d.Dir, "secrets")); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && !e.IsDir() && fi.Mode().Perm()&0o077 != 0 {
				p := filepath.Join(d.Dir, "secrets", e.Name())
				r.add("secrets store", Fail, fmt.Sprintf("%s has mode %04o: readable by others", p, fi.Mode().Perm()), "chmod 600 "+p)
			}
		}
	}
	checkKeys(&r, d)

	cfg, err := deployer.LoadConfig(d)
	if err != nil {
		r.add("config", Fail, err.Error(), "fix "+d.ConfigFile()+" (unknown keys are refused)")
		cfg = deployer.Default()
	} else {
		r.add("config", OK, d.ConfigFile()+" parses", "")
	}
	checkSites(&r, d)
	if opt.ServerRunning && len(opt.ServerAddrs) > 0 {
		for _, a := range opt.ServerAddrs {
			r.add("listen", OK, a+" is in use by the running eeveon server", "")
		}
	} else {
		checkListen(&r, "ssh listen", cfg.Listen, opt.ServerRunning)
		checkListen(&r, "http listen", cfg.HTTP.Listen, opt.ServerRunning)
	}
	checkDisk(&r, "disk (data)", d.Dir)
	checkClock(&r, d)
	return r
}

var gitVersionRe = regexp.MustCompile(`git version (\d+)\.(\d+)`)

func checkGit(r *report) {
	out, err := exec.Command("git", "--version").Output()
	if err != nil {
		r.add("git", Fail, "git is not installed or not on PATH", "apt-get install git (2.30 or newer)")
		return
	}
	m := gitVersionRe.FindStringSubmatch(string(out))
	if m == nil {
		r.add("git", Warn, "cannot read the git version: "+strings.TrimSpace(string(out)), "")
		return
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major < 2 || (major == 2 && minor < 30) {
		r.add("git", Fail, fmt.Sprintf("git %s.%s is too old", m[1], m[2]), "install git 2.30 or newer")
		return
	}
	r.add("git", OK, strings.TrimSpace(string(out)), "")
}

func checkTool(r *report, name, path, why, fix string) {
	if _, err := os.Stat(path); err != nil {
		r.add(name, Fail, path+" is missing; it "+why, fix)
		return
	}
	r.add(name, OK, path, "")
}

func checkMode(r *report, check, path string, fi fs.FileInfo, want fs.FileMode, fix string) {
	got := fi.Mode().Perm()
	switch {
	case got&0o002 != 0:
		r.add(check, Fail, fmt.Sprintf("%s has mode %04o: writable by everyone", path, got), fix)
	case got&^want != 0:
		st := Warn
		if want == 0o600 && got&0o044 != 0 {
			st = Fail // a key readable by others
		}
		r.add(check, st, fmt.Sprintf("%s has mode %04o, want %04o", path, got, want), fix)
	default:
		r.add(check, OK, fmt.Sprintf("%s mode %04o", path, got), "")
	}
}

// adminGroupDir reports whether the data dir is mode 0750 and owned by
// the admin group: the documented way to let that group use the CLI.
func adminGroupDir(fi fs.FileInfo, group string) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode().Perm() != 0o750 {
		return false
	}
	g, err := user.LookupGroup(group)
	return err == nil && g.Gid == strconv.FormatUint(uint64(st.Gid), 10)
}

func checkOwner(r *report, check, path string, fi fs.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	if int(st.Uid) != os.Getuid() {
		r.add(check+" owner", Warn, fmt.Sprintf("%s is owned by uid %d, not by this user (uid %d)", path, st.Uid, os.Getuid()),
			"run eeveon as the service user that owns the data dir")
	}
}

func checkHostKey(r *report, d deployer.Data) {
	fi, err := os.Stat(d.HostKey())
	if err != nil {
		r.add("host key", Fail, d.HostKey()+" is missing", "eeveon init --data "+d.Dir)
		return
	}
	checkMode(r, "host key", d.HostKey(), fi, 0o600, "chmod 600 "+d.HostKey())
	b, err := os.ReadFile(d.HostKey())
	if err == nil {
		_, err = gossh.ParsePrivateKey(b)
	}
	if err != nil {
		r.add("host key", Fail, fmt.Sprintf("%s does not parse: %v", d.HostKey(), err), "move it away and run eeveon init to make a new one")
	}
}

func checkKeys(r *report, d deployer.Data) {
	fi, err := os.Stat(d.AuthorizedKeys())
	if err != nil {
		r.add("keys", Warn, "no authorized_keys: nobody can push", "eeveon keys add --user NAME --role admin ~/.ssh/id_ed25519.pub")
		return
	}
	checkMode(r, "keys file", d.AuthorizedKeys(), fi, 0o600, "chmod 600 "+d.AuthorizedKeys())
	entries, problems, err := keys.Open(d.AuthorizedKeys()).List()
	if err != nil {
		r.add("keys", Fail, err.Error(), "")
		return
	}
	for _, p := range problems {
		r.add("keys", Warn, p.Error()+" (skipped)", "fix or remove that line")
	}
	if len(entries) == 0 {
		r.add("keys", Warn, "no keys: nobody can push", "eeveon keys add --user NAME --role admin ~/.ssh/id_ed25519.pub")
		return
	}
	admins := 0
	for _, e := range entries {
		if e.Role == keys.RoleAdmin {
			admins++
		}
	}
	r.add("keys", OK, fmt.Sprintf("%d keys, %d admin", len(entries), admins), "")
}

func checkSites(r *report, d deployer.Data) {
	sites, errs := deployer.ListSites(d)
	for _, err := range errs {
		r.add("site", Fail, err.Error(), "fix the file or remove it with eeveon site rm")
	}
	checkAppAddrs(r, sites)
	for _, s := range sites {
		name := "site " + s.Name
		if err := writable(s.Path); err != nil {
			r.add(name, Fail, fmt.Sprintf("path %s is not writable: %v", s.Path, err), "create it and give it to the service user")
			continue
		}
		hook, err := os.ReadFile(filepath.Join(d.Repo(s.Name), "hooks", "proc-receive"))
		if err != nil || !deployer.IsEeveonHook(hook) {
			r.add(name, Warn, "the repository has no eeveon proc-receive hook: pushes are stored but not deployed", "eeveon hooks install "+s.Name)
			continue
		}
		refs, _ := exec.Command("git", "--git-dir", d.Repo(s.Name), "config", "--get-all", "receive.procReceiveRefs").Output()
		if !slices.Contains(strings.Fields(string(refs)), "refs") {
			r.add(name, Warn, "pushes to the repository bypass eeveon's proc-receive hook (receive.procReceiveRefs): they are stored but not deployed", "eeveon hooks install "+s.Name)
			continue
		}
		if exe := hookExe(string(hook)); exe != "" {
			if _, err := os.Stat(exe); err != nil {
				r.add(name, Fail, "the proc-receive hook calls "+exe+", which is gone", "eeveon hooks install "+s.Name+" (or restart eeveon serve)")
				continue
			}
		}
		if _, err := os.Stat(filepath.Join(d.Repo(s.Name), "hooks", "post-receive.local")); err == nil {
			r.add(name, Warn, "hooks/post-receive.local runs after the push and its deploy: it can no longer stop a deploy", "move a hook that must stop deploys to hooks/pre-receive")
		}
		r.add(name, OK, fmt.Sprintf("%s, path %s", s.Strategy, s.Path), "")
		if s.Path != d.Dir && !strings.HasPrefix(s.Path, d.Dir+"/") {
			checkDisk(r, "disk ("+s.Name+")", s.Path)
		}
	}
}

// checkAppAddrs finds app sites that would fight over an address.
func checkAppAddrs(r *report, sites []deployer.Site) {
	for _, clash := range deployer.AddrClashes(sites) {
		r.add("app ports", Fail, clash, "give one of them another address: eeveon site set NAME --proxy ADDR or --ports A,B")
	}
}

var hookExeRe = regexp.MustCompile(`exec '([^']+)' hook proc-receive`)

func hookExe(hook string) string {
	m := hookExeRe.FindStringSubmatch(hook)
	if m == nil {
		return ""
	}
	return m[1]
}

// writable checks that dir (or its nearest existing parent) accepts a
// new file.
func writable(dir string) error {
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return errors.New("no existing parent")
		}
		dir = parent
	}
	f, err := os.CreateTemp(dir, ".eeveon-check-*")
	if err != nil {
		return errors.Unwrap(err)
	}
	f.Close()
	return os.Remove(f.Name())
}

func checkListen(r *report, name, addr string, serverRunning bool) {
	if addr == "" || addr == "off" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		r.add(name, OK, addr+" is free", "")
		return
	}
	if serverRunning {
		r.add(name, OK, addr+" is in use by the running eeveon server", "")
		return
	}
	r.add(name, Fail, fmt.Sprintf("cannot listen on %s: %v", addr, errors.Unwrap(err)), "stop what uses it or set another address in eeveon.toml")
}

func checkDisk(r *report, name, path string) {
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		path = filepath.Dir(path)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		r.add(name, Warn, "cannot read free space: "+err.Error(), "")
		return
	}
	free := st.Bavail * uint64(st.Bsize)
	total := st.Blocks * uint64(st.Bsize)
	msg := fmt.Sprintf("%s free on the volume of %s", human(free), path)
	switch {
	case free < 100<<20:
		r.add(name, Fail, msg, "free some space (eeveon vacuum removes old logs)")
	case free < 1<<30 || (total > 0 && free*20 < total):
		r.add(name, Warn, msg, "free some space (eeveon vacuum removes old logs)")
	default:
		r.add(name, OK, msg, "")
	}
}

func human(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	default:
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	}
}

// checkClock catches a clock that is far off: before this program was
// written, or behind the newest deploy record (time went backwards).
func checkClock(r *report, d deployer.Data) {
	now := time.Now()
	if now.Year() < 2025 {
		r.add("clock", Fail, "the clock says "+now.Format(time.RFC3339), "set the time (timedatectl set-ntp true)")
		return
	}
	var newest time.Time
	_ = filepath.WalkDir(d.DeploysRoot(), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasSuffix(p, ".json") {
			if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
		}
		return nil
	})
	if newest.After(now.Add(5 * time.Minute)) {
		r.add("clock", Warn, "a deploy record was written at "+newest.Format(time.RFC3339)+", after now ("+now.Format(time.RFC3339)+")",
			"check the clock (timedatectl); history order depends on it")
		return
	}
	r.add("clock", OK, now.UTC().Format(time.RFC3339), "")
}

// Failed reports whether any result is a FAIL.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

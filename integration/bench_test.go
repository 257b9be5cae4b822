package integration

// Benchmarks of the push path, the command round trip and the server's
// memory, each next to a baseline run on the same machine in the same run:
// OpenSSH sshd with plain git receive-pack (an authorized_keys line without
// a forced command, pushing to a bare repository path) and `ssh … true`.
// They run only with -bench (make bench prints a table of their medians and
// ratios); they assert nothing about timing, only that every push landed.
//
//	go test -run '^$' -bench . -benchtime 3x ./integration
//
// The metrics each benchmark reports (b.ReportMetric) are medians over its
// iterations: med-ms/push, med-ms/10-pushes, med-ms/call, RSS-MB and
// peak-RSS-MB (of the eeveon serve process; its children, git and the
// hook, are not included). The server is restarted before each
// measurement of its peak, because VmHWM is the peak over the process's
// lifetime.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// bnSizes are the generated repositories: file count and average file size
// (sizes vary from half to one and a half times the average).
var bnSizes = []struct {
	name       string
	files, avg int
}{
	{"small", 5, 2_000},       // ~10 kB
	{"medium", 3_000, 20_000}, // ~60 MB
	{"large", 200, 1_000_000}, // ~200 MB
}

// bnRun is run for pushes: it never fails the benchmark itself, so
// goroutines may call it (a command that cannot start has code -1 and the
// error in Stderr), and it allows a large push 10 minutes.
func bnRun(dir string, env []string, name string, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return Result{stdout.String(), stderr.String(), 0}
	case errors.As(err, &ee):
		return Result{stdout.String(), stderr.String(), ee.ExitCode()}
	}
	return Result{stdout.String(), stderr.String() + err.Error(), -1}
}

// bnMust runs a command and fails the benchmark unless it exits 0; it
// returns the trimmed stdout.
func bnMust(tb testing.TB, dir string, name string, args ...string) string {
	tb.Helper()
	r := run(tb, dir, nil, "", name, args...)
	if r.Code != 0 {
		tb.Fatalf("%s %q: exit %d\n%s", name, args, r.Code, r.Out())
	}
	return strings.TrimSpace(r.Stdout)
}

// bnMemKB reads a field of /proc/PID/status (VmRSS, VmHWM) in kB.
func bnMemKB(tb testing.TB, pid int, field string) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatalf("read memory of process %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				tb.Fatalf("%s of process %d: %q", field, pid, line)
			}
			return kb
		}
	}
	tb.Fatalf("process %d has no %s", pid, field)
	return 0
}

// bnMedian is the median of xs.
func bnMedian(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func bnMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// bnRepo is a generated bare repository the client pushes from.
type bnRepo struct {
	dir   string // the bare repository
	head  string // main's commit
	probe string // a path in main's tree, and
	blob  string // its blob id: what a deployed colour must hold there
	n     int    // change commits made so far
}

// bnMakeRepo writes one commit of files pseudo-random files (the same for
// the same arguments, and incompressible, so git cannot shrink the push)
// into a new bare repository with one git fast-import.
func bnMakeRepo(tb testing.TB, dir string, files, avg int) *bnRepo {
	tb.Helper()
	bnMust(tb, filepath.Dir(dir), "git", "init", "-q", "--bare", dir)
	cmd := exec.Command("git", "--git-dir", dir, "fast-import", "--quiet")
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	rng := rand.New(rand.NewPCG(uint64(files), uint64(avg)))
	buf := make([]byte, avg+avg/2+8)
	fmt.Fprintf(w, "commit refs/heads/main\ncommitter b <b@bench> 1700000000 +0000\ndata 9\ngenerated\n")
	for i := range files {
		n := avg/2 + rng.IntN(avg+1)
		for j := 0; j < n; j += 8 {
			binary.LittleEndian.PutUint64(buf[j:], rng.Uint64())
		}
		fmt.Fprintf(w, "M 644 inline d%02d/f%04d.bin\ndata %d\n", i/100, i, n)
		w.Write(buf[:n])
		w.WriteString("\n")
	}
	if err := w.Flush(); err != nil {
		tb.Fatalf("fast-import: %v\n%s", err, errOut.String())
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		tb.Fatalf("fast-import: %v\n%s", err, errOut.String())
	}
	r := &bnRepo{dir: dir, probe: "d00/f0000.bin"}
	r.head = bnMust(tb, dir, "git", "--git-dir", dir, "rev-parse", "refs/heads/main")
	r.blob = bnMust(tb, dir, "git", "--git-dir", dir, "rev-parse", "refs/heads/main:"+r.probe)
	return r
}

// change commits a one-file change on top of main: the typical push.
func (r *bnRepo) change(tb testing.TB) {
	tb.Helper()
	r.n++
	content := fmt.Sprintf("change %d\n", r.n)
	stream := fmt.Sprintf("commit refs/heads/main\ncommitter b <b@bench> %d +0000\ndata 7\nchange\nfrom %s\nM 644 inline change.txt\ndata %d\n%s\n",
		1700000000+r.n, r.head, len(content), content)
	cmd := exec.Command("git", "--git-dir", r.dir, "fast-import", "--quiet")
	cmd.Stdin = strings.NewReader(stream)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("fast-import: %v\n%s", err, out)
	}
	r.probe = "change.txt"
	r.head = bnMust(tb, r.dir, "git", "--git-dir", r.dir, "rev-parse", "refs/heads/main")
	r.blob = bnMust(tb, r.dir, "git", "--git-dir", r.dir, "rev-parse", "refs/heads/main:"+r.probe)
}

// push runs git push from the repository with env (GIT_SSH_COMMAND) and
// returns the result and its wall time.
func (r *bnRepo) push(env []string, url, refspec string) (Result, time.Duration) {
	t0 := time.Now()
	res := bnRun(r.dir, env, "git", "--git-dir", r.dir, "push", url, refspec)
	return res, time.Since(t0)
}

// bnServer is the harness's Env (a server on a free loopback port, started
// and stopped with the benchmark) with one admin key.
type bnServer struct {
	*Env
	key string
}

func bnNewServer(tb testing.TB) *bnServer {
	tb.Helper()
	e := NewEnv(tb)
	return &bnServer{Env: e, key: e.AddKey("bench", "admin", "")}
}

// restart starts a fresh server process, so that its VmHWM covers only
// what follows, and makes one connection (whoami) so that one-off costs of
// the first session are not in the measurement.
func (s *bnServer) restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
	if r := s.SSH(s.key, "whoami"); r.Code != 0 {
		s.t.Fatalf("whoami: exit %d\n%s", r.Code, r.Out())
	}
}

func (s *bnServer) gitEnv() []string { return []string{s.GitSSH(s.key)} }

// removeSite removes a site and its files (site rm leaves them on disk).
func (s *bnServer) removeSite(site string) {
	s.t.Helper()
	s.MustEeveon("site", "rm", site)
	for _, p := range []string{filepath.Join(s.Data, "repos", site+".git"), s.SitePath(site), filepath.Join(s.Data, "deploys", site)} {
		if err := os.RemoveAll(p); err != nil {
			s.t.Fatal(err)
		}
	}
}

// checkLive fails unless the push r went live on color with the repo's
// head: the push output says so, current points at color, and the colour
// holds the probe file of the pushed commit.
func (s *bnServer) checkLive(tb testing.TB, site, color string, repo *bnRepo, r Result) {
	tb.Helper()
	if want := "live: " + site + " " + repo.head[:7] + " on " + color; r.Code != 0 || !strings.Contains(r.Stderr, want) {
		tb.Fatalf("push to %s: exit %d, output lacks %q:\n%s", site, r.Code, want, r.Out())
	}
	if got := s.Live(site); got != color {
		tb.Fatalf("%s: current -> %q, want %s", site, got, color)
	}
	got := bnMust(tb, s.Dir, "git", "hash-object", filepath.Join(s.SitePath(site), "current", repo.probe))
	if got != repo.blob {
		tb.Fatalf("%s: current/%s is blob %s, want %s of %s", site, repo.probe, got, repo.blob, repo.head[:7])
	}
}

// bnOpenSSH is OpenSSH's sshd on a free loopback port with its own config,
// host key and authorized_keys, in which key logs in without a forced
// command (a plain shell login, as git over ssh normally works).
type bnOpenSSH struct {
	port, user, dir string
	authorizedKeys  string
	key, knownHosts string
	pid             int
}

// bnStartOpenSSH starts sshd in a directory of e (whose NewKey makes its
// keys), or returns why it cannot (not installed, or cannot run here): the
// caller skips its OpenSSH baselines with that.
func bnStartOpenSSH(tb testing.TB, e *Env) (*bnOpenSSH, string) {
	tb.Helper()
	dir := filepath.Join(e.Dir, "openssh")
	sshdBin := "/usr/sbin/sshd"
	if _, err := os.Stat(sshdBin); err != nil {
		p, err := exec.LookPath("sshd")
		if err != nil {
			return nil, "OpenSSH sshd is not installed (apt-get install openssh-server): no OpenSSH baseline"
		}
		sshdBin = p
	}
	u, err := user.Current()
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	o := &bnOpenSSH{port: freePort(tb), user: u.Username, dir: dir,
		authorizedKeys: filepath.Join(dir, "authorized_keys"), knownHosts: filepath.Join(dir, "known_hosts")}
	hostKey := e.NewKey("openssh-host")
	o.key = e.NewKey("openssh-plain")
	pub, err := os.ReadFile(o.key + ".pub")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(o.authorizedKeys, pub, 0o600); err != nil {
		tb.Fatal(err)
	}
	if os.Getuid() == 0 {
		_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	}
	cfg := strings.Join([]string{
		"Port " + o.port, "ListenAddress 127.0.0.1", "HostKey " + hostKey,
		"PidFile " + filepath.Join(dir, "sshd.pid"), "AuthorizedKeysFile " + o.authorizedKeys,
		"StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password", "UsePAM no", "LogLevel ERROR", "AcceptEnv GIT_PROTOCOL",
		"MaxStartups 100", "MaxSessions 100",
		// Debian's bash sources ~/.bashrc for a command run by sshd when
		// SHLVL is unset; that would time this machine's dotfiles, not
		// OpenSSH (a git account has a bare shell). Likewise ~/.ssh/rc.
		"SetEnv SHLVL=1", "PermitUserRC no",
	}, "\n") + "\n"
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	var log bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(sshdBin, "-D", "-e", "-f", cfgPath)
	w := &lockedWriter{mu: &mu, w: &log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Sprintf("sshd cannot run here (%v): no OpenSSH baseline", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if tb.Failed() {
			mu.Lock()
			tb.Logf("sshd log:\n%s", log.String())
			mu.Unlock()
		}
	})
	o.pid = cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-done:
			mu.Lock()
			defer mu.Unlock()
			return nil, fmt.Sprintf("sshd exited at start, cannot run here: no OpenSSH baseline\n%s", log.String())
		default:
		}
		if c, err := net.Dial("tcp", "127.0.0.1:"+o.port); err == nil {
			c.Close()
			return o, ""
		}
	}
	tb.Fatalf("sshd did not start:\n%s", log.String())
	return nil, ""
}

func (o *bnOpenSSH) sshArgs(key string) []string {
	return []string{
		"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + o.knownHosts, "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR", "-p", o.port,
	}
}

func (o *bnOpenSSH) ssh(key string, command ...string) Result {
	return bnRun(o.dir, nil, "ssh", append(append(o.sshArgs(key), o.user+"@127.0.0.1"), command...)...)
}

// gitEnv pushes with the plain key: sshd runs git-receive-pack itself.
func (o *bnOpenSSH) gitEnv() []string {
	args := o.sshArgs(o.key)
	return []string{"GIT_SSH_COMMAND=ssh " + strings.Join(args[:len(args)-2], " ")}
}

func (o *bnOpenSSH) url(repoPath string) string {
	return "ssh://" + o.user + "@127.0.0.1:" + o.port + repoPath
}

// pushPlain pushes main to a fresh bare repository at path through
// OpenSSH and checks that it arrived; it returns the push's wall time.
func (o *bnOpenSSH) pushPlain(repo *bnRepo, path string) (time.Duration, error) {
	r, took := repo.push(o.gitEnv(), o.url(path), "main")
	if r.Code != 0 {
		return took, fmt.Errorf("push through OpenSSH to %s: exit %d\n%s", path, r.Code, r.Out())
	}
	if got := bnRun("", nil, "git", "--git-dir", path, "rev-parse", "refs/heads/main"); strings.TrimSpace(got.Stdout) != repo.head {
		return took, fmt.Errorf("%s: main is %q, want %s", path, got.Stdout, repo.head)
	}
	return took, nil
}

// BenchmarkPush pushes a small, a medium (~3,000 files, ~60 MB) and a
// large (~200 MB) repository to a fresh remote each iteration:
//   - openssh-git: the baseline, OpenSSH sshd + git receive-pack into a
//     bare repository;
//   - embedded-store: eeveon's embedded server, a branch that does not
//     deploy (transport, receive-pack and hook; no deploy);
//   - embedded-live: the deploying branch of a site with no build, so the
//     push returns once current points at the new colour (push-to-live).
//
// The embedded variants also report the server's peak RSS during the push
// (a fresh server process for each push).
func BenchmarkPush(b *testing.B) {
	dir := b.TempDir()
	srv := bnNewServer(b)
	ossh, why := bnStartOpenSSH(b, srv.Env)
	for _, size := range bnSizes {
		b.Run(size.name, func(b *testing.B) {
			repo := bnMakeRepo(b, filepath.Join(dir, "client-"+size.name+".git"), size.files, size.avg)
			b.Run("openssh-git", func(b *testing.B) {
				if ossh == nil {
					b.Skip(why)
				}
				var took []float64
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					remote := filepath.Join(dir, fmt.Sprintf("remote-%s-%d.git", size.name, i))
					bnMust(b, dir, "git", "init", "-q", "--bare", remote)
					b.StartTimer()
					d, err := ossh.pushPlain(repo, remote)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					took = append(took, bnMs(d))
					if err := os.RemoveAll(remote); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.ReportMetric(bnMedian(took), "med-ms/push")
			})
			b.Run("embedded-store", func(b *testing.B) { bnPushEmbedded(b, srv, repo, size.name+"-store", false) })
			b.Run("embedded-live", func(b *testing.B) { bnPushEmbedded(b, srv, repo, size.name+"-live", true) })
		})
	}
}

// bnPushEmbedded pushes repo to a new site each iteration, on a fresh
// server process: main (live) or a branch that does not deploy.
func bnPushEmbedded(b *testing.B, srv *bnServer, repo *bnRepo, prefix string, live bool) {
	var took, peak []float64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		site := fmt.Sprintf("%s-%d", prefix, i)
		srv.MustEeveon("site", "add", site)
		srv.restart()
		refspec := "main:refs/heads/bench"
		if live {
			refspec = "main"
		}
		b.StartTimer()
		r, d := repo.push(srv.gitEnv(), srv.URL(site), refspec)
		b.StopTimer()
		peak = append(peak, bnMemKB(b, srv.PID(), "VmHWM")/1024)
		took = append(took, bnMs(d))
		if live {
			srv.checkLive(b, site, "blue", repo, r)
		} else {
			if r.Code != 0 || !strings.Contains(r.Stderr, "stored bench; only main deploys "+site) {
				b.Fatalf("push to %s: exit %d\n%s", site, r.Code, r.Out())
			}
			stored := bnMust(b, srv.Dir, "git", "--git-dir", filepath.Join(srv.Data, "repos", site+".git"), "rev-parse", "refs/heads/bench")
			if stored != repo.head {
				b.Fatalf("%s: branch bench is %s, want %s", site, stored, repo.head)
			}
			if _, err := os.Lstat(filepath.Join(srv.SitePath(site), "current")); err == nil {
				b.Fatalf("%s: a branch that does not deploy made current", site)
			}
		}
		srv.removeSite(site)
		b.StartTimer()
	}
	b.ReportMetric(bnMedian(took), "med-ms/push")
	b.ReportMetric(bnMedian(peak), "peak-RSS-MB")
}

// BenchmarkPushToLive is the everyday push: a one-file change on top of
// a small and of a medium site that is already live, from push start until
// git push returns, which for eeveon is after current was swapped to the
// other colour (checked each time). The baseline pushes the same kind of
// change through OpenSSH + git receive-pack, with nothing deployed.
func BenchmarkPushToLive(b *testing.B) {
	dir := b.TempDir()
	srv := bnNewServer(b)
	ossh, why := bnStartOpenSSH(b, srv.Env)
	for _, size := range bnSizes[:2] {
		b.Run(size.name, func(b *testing.B) {
			b.Run("openssh-git", func(b *testing.B) {
				if ossh == nil {
					b.Skip(why)
				}
				repo := bnMakeRepo(b, filepath.Join(b.TempDir(), "client.git"), size.files, size.avg)
				remote := filepath.Join(dir, "remote-"+size.name+".git")
				bnMust(b, dir, "git", "init", "-q", "--bare", remote)
				if _, err := ossh.pushPlain(repo, remote); err != nil {
					b.Fatal(err)
				}
				var took []float64
				for b.Loop() {
					b.StopTimer()
					repo.change(b)
					b.StartTimer()
					d, err := ossh.pushPlain(repo, remote)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					took = append(took, bnMs(d))
					b.StartTimer()
				}
				b.ReportMetric(bnMedian(took), "med-ms/push")
			})
			b.Run("embedded-live", func(b *testing.B) {
				repo := bnMakeRepo(b, filepath.Join(b.TempDir(), "client.git"), size.files, size.avg)
				site := "tolive-" + size.name
				srv.MustEeveon("site", "add", site)
				r, _ := repo.push(srv.gitEnv(), srv.URL(site), "main")
				srv.checkLive(b, site, "blue", repo, r)
				color := "blue"
				var took []float64
				for b.Loop() {
					b.StopTimer()
					repo.change(b)
					color = bnOtherColor(color)
					b.StartTimer()
					r, d := repo.push(srv.gitEnv(), srv.URL(site), "main")
					b.StopTimer()
					srv.checkLive(b, site, color, repo, r)
					took = append(took, bnMs(d))
					b.StartTimer()
				}
				b.ReportMetric(bnMedian(took), "med-ms/push")
			})
		})
	}
}

func bnOtherColor(c string) string {
	if c == "blue" {
		return "green"
	}
	return "blue"
}

// bnCallsPerOp is how many round trips one iteration of
// BenchmarkSSHRoundTrip makes; the metric is the median over all of them.
const bnCallsPerOp = 10

// BenchmarkSSHRoundTrip is a whole ssh client run, connect to exit:
// `ssh … status` against the embedded server and through OpenSSH with the
// forced command, next to `ssh … true` as a plain OpenSSH login.
func BenchmarkSSHRoundTrip(b *testing.B) {
	srv := bnNewServer(b)
	srv.MustEeveon("site", "add", "hello")
	ossh, why := bnStartOpenSSH(b, srv.Env)
	var forced string
	if ossh != nil {
		forced = srv.NewKey("forced")
		srv.MustEeveon("keys", "add", "--openssh", "--authorized-keys", ossh.authorizedKeys, "--user", "forced", "--role", "admin", forced+".pub")
	}
	isStatus := func(r Result) bool { return r.Code == 0 && strings.HasPrefix(r.Stdout, "hello\n") }
	variants := []struct {
		name    string
		openssh bool
		call    func() Result
		ok      func(Result) bool
	}{
		{"openssh-true", true, func() Result { return ossh.ssh(ossh.key, "true") }, func(r Result) bool { return r.Code == 0 && r.Out() == "" }},
		{"embedded-status", false, func() Result { return srv.SSH(srv.key, "status") }, isStatus},
		{"openssh-eeveon-status", true, func() Result { return ossh.ssh(forced, "status") }, isStatus},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			if v.openssh && ossh == nil {
				b.Skip(why)
			}
			if r := v.call(); !v.ok(r) { // also records the host key
				b.Fatalf("%s: exit %d\n%s", v.name, r.Code, r.Out())
			}
			var took []float64
			for b.Loop() {
				for range bnCallsPerOp {
					t0 := time.Now()
					r := v.call()
					took = append(took, bnMs(time.Since(t0)))
					if !v.ok(r) {
						b.Fatalf("%s: exit %d\n%s", v.name, r.Code, r.Out())
					}
				}
			}
			b.ReportMetric(bnMedian(took), "med-ms/call")
		})
	}
}

// bnConcurrent is how many pushes BenchmarkServerRSS/push-x10 runs at once.
const bnConcurrent = 10

// BenchmarkServerRSS is the server's memory: the resident set of a freshly
// started, idle eeveon serve next to that of the idle sshd listener, and
// the peak (VmHWM) of a fresh eeveon serve during 10 concurrent pushes of
// the medium repository to 10 sites (each deploys), next to the same 10
// pushes through OpenSSH + git receive-pack (whose time is the baseline;
// sshd forks a process per connection, so it has no comparable peak).
// The peak during the large push is BenchmarkPush/large/embedded-*.
func BenchmarkServerRSS(b *testing.B) {
	dir := b.TempDir()
	srv := bnNewServer(b)
	ossh, why := bnStartOpenSSH(b, srv.Env)
	b.Run("idle", func(b *testing.B) {
		b.Run("openssh-sshd", func(b *testing.B) {
			if ossh == nil {
				b.Skip(why)
			}
			var rss []float64
			for b.Loop() {
				rss = append(rss, bnMemKB(b, ossh.pid, "VmRSS")/1024)
			}
			b.ReportMetric(bnMedian(rss), "RSS-MB")
		})
		b.Run("embedded", func(b *testing.B) {
			var rss []float64
			for b.Loop() {
				b.StopTimer()
				srv.Stop()
				srv.Start()
				time.Sleep(500 * time.Millisecond) // let start-up settle
				rss = append(rss, bnMemKB(b, srv.PID(), "VmRSS")/1024)
				b.StartTimer()
			}
			b.ReportMetric(bnMedian(rss), "RSS-MB")
		})
	})
	b.Run("push-x10", func(b *testing.B) {
		repo := bnMakeRepo(b, filepath.Join(dir, "client.git"), bnSizes[1].files, bnSizes[1].avg)
		b.Run("openssh-git", func(b *testing.B) {
			if ossh == nil {
				b.Skip(why)
			}
			var took []float64
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				remotes := make([]string, bnConcurrent)
				for j := range remotes {
					remotes[j] = filepath.Join(dir, fmt.Sprintf("remote-%d-%d.git", i, j))
					bnMust(b, dir, "git", "init", "-q", "--bare", remotes[j])
				}
				errs := make([]error, bnConcurrent)
				var wg sync.WaitGroup
				b.StartTimer()
				t0 := time.Now()
				for j, remote := range remotes {
					wg.Go(func() { _, errs[j] = ossh.pushPlain(repo, remote) })
				}
				wg.Wait()
				d := time.Since(t0)
				b.StopTimer()
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
				took = append(took, bnMs(d))
				for _, remote := range remotes {
					if err := os.RemoveAll(remote); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(bnMedian(took), "med-ms/10-pushes")
		})
		b.Run("embedded-live", func(b *testing.B) {
			var took, peak []float64
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				sites := make([]string, bnConcurrent)
				for j := range sites {
					sites[j] = fmt.Sprintf("x10-%d-%d", i, j)
					srv.MustEeveon("site", "add", sites[j])
				}
				srv.restart()
				results := make([]Result, bnConcurrent)
				var wg sync.WaitGroup
				b.StartTimer()
				t0 := time.Now()
				for j, site := range sites {
					wg.Go(func() { results[j], _ = repo.push(srv.gitEnv(), srv.URL(site), "main") })
				}
				wg.Wait()
				d := time.Since(t0)
				b.StopTimer()
				peak = append(peak, bnMemKB(b, srv.PID(), "VmHWM")/1024)
				took = append(took, bnMs(d))
				for j, site := range sites {
					srv.checkLive(b, site, "blue", repo, results[j])
					srv.removeSite(site)
				}
				b.StartTimer()
			}
			b.ReportMetric(bnMedian(took), "med-ms/10-pushes")
			b.ReportMetric(bnMedian(peak), "peak-RSS-MB")
		})
	})
}

package poll

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/eeveon/eeveon/deployer"
)

// benchRepos is how many unchanged remotes one round polls.
const benchRepos = 50

// BenchmarkPollRound measures the CPU time (user+sys, of this process and
// of the children it waited for) of one round over 50 unchanged local
// repositories: the poller's check of all of them, next to a loop of git
// ls-remote and a loop of git fetch into clones, in the same run.
//
//	go test -run '^$' -bench PollRound -benchtime 3x ./deployer/poll
func BenchmarkPollRound(b *testing.B) {
	dir := b.TempDir()
	urls := make([]string, benchRepos)
	for i := range urls {
		urls[i] = "file://" + makeBenchRepo(b, filepath.Join(dir, "remotes", fmt.Sprintf("r%02d.git", i)), i)
	}

	// The poller, caught up with every remote.
	d, err := deployer.NewData(filepath.Join(dir, "data"))
	if err != nil {
		b.Fatal(err)
	}
	quiet := log.New(io.Discard)
	engine := deployer.NewEngine(d, deployer.Default(), quiet)
	for i, u := range urls {
		name := fmt.Sprintf("s%02d", i)
		if _, err := deployer.SaveSite(d, deployer.Site{Name: name, Poll: u}, true, ""); err != nil {
			b.Fatal(err)
		}
		// Caught up: the tip was deployed in an earlier round.
		tip := gitRun(b, dir, "--git-dir", strings.TrimPrefix(u, "file://"), "rev-parse", "refs/heads/main")
		if err := saveState(d, name, state{LastSeen: tip, LastDeployed: tip}); err != nil {
			b.Fatal(err)
		}
	}
	p := New(engine, quiet)
	p.reload(time.Now(), true)
	if len(p.sites) != benchRepos {
		b.Fatalf("%d polled sites, want %d", len(p.sites), benchRepos)
	}
	// Clones for the git fetch loop.
	clones := make([]string, len(urls))
	for i, u := range urls {
		clones[i] = filepath.Join(dir, "clones", fmt.Sprintf("c%02d", i))
		gitRun(b, dir, "clone", "-q", u, clones[i])
	}

	b.Run("poller", func(b *testing.B) {
		measure(b, func() {
			benchRound(p)
		})
		if n := p.fetches.Load(); n != 0 {
			b.Fatalf("the poller fetched %d times from unchanged remotes", n)
		}
		for _, e := range p.sites {
			if e.state.Failures != 0 {
				b.Fatalf("%s: %s", e.site.Name, e.state.LastError)
			}
		}
	})

	b.Run("git-ls-remote", func(b *testing.B) {
		measure(b, func() {
			for _, u := range urls {
				gitRun(b, dir, "ls-remote", u, "refs/heads/main")
			}
		})
	})

	b.Run("git-fetch", func(b *testing.B) {
		measure(b, func() {
			for _, c := range clones {
				gitRun(b, c, "fetch", "-q")
			}
		})
	})
}

// benchRound is one poll round as the loop runs it: the sites directory
// check, then every site's remote check, at most MaxConcurrent at a time.
func benchRound(p *Poller) {
	p.reload(time.Now(), false)
	var wg sync.WaitGroup
	for _, e := range p.sites {
		wg.Go(func() { p.poll(context.Background(), e.site, e) })
	}
	wg.Wait()
}

// measure runs round b.N times and reports its CPU time per round, in
// all and the part spent in child processes (git, git-upload-pack, ssh).
func measure(b *testing.B, round func()) {
	b.ResetTimer()
	self0, kids0 := cpuTime()
	for range b.N {
		round()
	}
	self1, kids1 := cpuTime()
	b.StopTimer()
	perRound := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(perRound(self1-self0+kids1-kids0), "cpu-ms/round")
	b.ReportMetric(perRound(kids1-kids0), "child-cpu-ms/round")
}

// cpuTime is the user+sys CPU time of this process and of its
// waited-for children.
func cpuTime() (self, kids time.Duration) {
	var s, k syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &k)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(s.Utime) + tv(s.Stime), tv(k.Utime) + tv(k.Stime)
}

// makeBenchRepo makes a bare repo with three commits on main (one
// fast-import, not a process per commit) and returns its path.
func makeBenchRepo(b *testing.B, path string, n int) string {
	b.Helper()
	gitRun(b, filepath.Dir(filepath.Dir(path)), "init", "-q", "--bare", path)
	var stream strings.Builder
	for c := 1; c <= 3; c++ {
		content := fmt.Sprintf("repo %d commit %d\n", n, c)
		msg := fmt.Sprintf("commit %d\n", c)
		fmt.Fprintf(&stream, "commit refs/heads/main\ncommitter t <t@test> %d +0000\ndata %d\n%s", 1700000000+c, len(msg), msg)
		fmt.Fprintf(&stream, "M 644 inline index.html\ndata %d\n%s\n", len(content), content)
	}
	cmd := exec.Command("git", "--git-dir", path, "fast-import", "--quiet")
	cmd.Stdin = strings.NewReader(stream.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("fast-import: %v\n%s", err, out)
	}
	return path
}

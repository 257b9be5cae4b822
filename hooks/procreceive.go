// Package hooks holds the entry points that git and OpenSSH call: the
// proc-receive hook that hands a push to the daemon and the OpenSSH forced
// command. They are thin clients of the control socket.
package hooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/hooks/hookenv"
)

// ProcReceive is `eeveon hook proc-receive`. git receive-pack runs it in
// the site's bare repository for the refs in receive.procReceiveRefs (the
// branches), after the pushed objects are stored and instead of
// updating those refs itself; it speaks git's pkt-line protocol on stdin
// and stdout (githooks(5), proc-receive). For the site's branch it hands
// the commit to the daemon, which moves the branch as git would and back
// if the deploy does not go live (deployer/branch.go), and streams the deploy's progress to stderr (the
// pusher's remote: lines). Its answer per ref is the push's outcome: "ok"
// when the deploy went live, waits for approval or was superseded by a
// newer push; "ng" with the reason otherwise, which git push shows as
// "! [remote rejected]" and exits non-zero for. Any other branch is left
// to git ("fall-through"): stored, not deployed.
func ProcReceive(d deployer.Data, gitDir string, stdin io.Reader, stdout, stderr io.Writer) int {
	sc := pktline.NewScanner(stdin)
	enc := pktline.NewEncoder(stdout)
	hello, err := readSection(sc)
	if err != nil || len(hello) == 0 || !strings.HasPrefix(hello[0], "version=1") {
		fmt.Fprintf(stderr, "eeveon: proc-receive: git did not offer protocol version 1 (%v)\n", err)
		return 1
	}
	_, features, _ := strings.Cut(hello[0], "\x00")
	atomic := slices.Contains(strings.Fields(features), "atomic")
	if err := encode(enc, "version=1"); err != nil {
		return 1
	}
	cmds, err := readSection(sc)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: proc-receive: read commands: %v\n", err)
		return 1
	}
	// Deploy output may be more than a client that went away lets through:
	// it never holds the answer git waits for.
	out := newDropWriter(stderr)
	defer out.Close()
	var answer []string
	site, err := siteOfRepo(d, gitDir)
	var s deployer.Site
	if err == nil {
		s, err = deployer.LoadSite(d, site)
	}
	if err == nil && atomic && len(cmds) > 1 {
		// git would undo the other refs after the deploy went live.
		err = errors.New("an atomic push of several refs cannot deploy: push the deploy branch on its own")
	}
	for _, c := range cmds {
		f := strings.Fields(c)
		if len(f) != 3 {
			fmt.Fprintf(stderr, "eeveon: proc-receive: bad command %q\n", c)
			return 1
		}
		old, commit, ref := f[0], f[1], f[2]
		switch {
		case err != nil:
			fmt.Fprintf(out, "eeveon: %v\n", err)
			answer = append(answer, "ng "+ref+" "+oneLine(err.Error()))
		case !strings.HasPrefix(ref, "refs/heads/") && !strings.HasPrefix(ref, "refs/tags/"):
			// refs/replace would change what a commit id checks out as,
			// refs/eeveon is eeveon's own: only branches and tags are pushed.
			answer = append(answer, "ng "+ref+" only branches and tags can be pushed here")
		case confusing(ref):
			// refs/tags/refs/heads/main would make main ambiguous to git.
			answer = append(answer, "ng "+ref+" a branch or tag may not be named HEAD or like a full ref (refs/...)")
		case ref != s.Ref():
			if strings.HasPrefix(ref, "refs/heads/") && strings.Trim(commit, "0") != "" {
				fmt.Fprintf(out, "==> %s is not deployed; only %s deploys %s\n", strings.TrimPrefix(ref, "refs/heads/"), s.Branch, s.Name)
			}
			answer = append(answer, "ok "+ref, "option fall-through")
		default:
			code, reason := deploy(d, gitDir, s, old, commit, ref, out)
			if code == 0 {
				answer = append(answer, "ok "+ref)
			} else {
				answer = append(answer, "ng "+ref+" "+oneLine(reason))
			}
		}
	}
	out.Close() // the deploy's lines before git's report of the refs
	if err := encode(enc, answer...); err != nil {
		return 1
	}
	return 0
}

// deploy hands one push of the site's branch to the daemon, after keeping
// the commit under deployer.PushedRef (the branch goes back to the live
// commit when the deploy does not go live, and no server may be there to
// take it at all: nothing pushed is lost whatever happens next).
func deploy(d deployer.Data, gitDir string, s deployer.Site, old, commit, ref string, stderr io.Writer) (int, string) {
	if strings.Trim(commit, "0") != "" {
		out, err := exec.Command("git", "--git-dir", gitDir, "update-ref", "-m", "eeveon: pushed", deployer.PushedRef, commit).CombinedOutput()
		if err != nil {
			fmt.Fprintf(stderr, "eeveon: keep the pushed commit: %v: %s\n", err, bytes.TrimSpace(out))
			return 1, "not deployed: the server could not keep the pushed commit"
		}
	}
	// The pusher's identity, set by the embedded SSH server (or the
	// OpenSSH forced command) on git receive-pack's environment. A local
	// push has none; the daemon then goes by the Unix account.
	claim := hookenv.Decode(os.Getenv)
	req := control.Request{Push: &control.Push{Site: s.Name, Ref: ref, Old: old, New: commit}, Claim: claim}
	res, err := control.CallResult(d.Socket(), req, stderr, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: %v\n", err)
		if errors.Is(err, control.ErrNoServer) {
			fmt.Fprintf(stderr, "eeveon: the push is kept in %s as %s but was not deployed; once the server runs, push again or run: eeveon deploy %s --ref %s\n",
				d.Repo(s.Name), deployer.PushedRef, s.Name, commit)
			return 1, "not deployed: the eeveon server is not running"
		}
		// The server may have deployed it all the same (it died late).
		return 1, "outcome unknown: " + err.Error() + "; see eeveon status"
	}
	if res.Code != 0 && res.Reason == "" {
		res.Reason = "not deployed (see the lines above)"
	}
	return res.Code, res.Reason
}

// readSection reads pkt-lines up to the next flush.
func readSection(sc *pktline.Scanner) ([]string, error) {
	var lines []string
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) == 0 {
			return lines, nil
		}
		lines = append(lines, strings.TrimSuffix(string(b), "\n"))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, io.ErrUnexpectedEOF
}

// encode writes lines as pkt-lines and a flush.
func encode(enc *pktline.Encoder, lines ...string) error {
	for _, l := range lines {
		if err := enc.EncodeString(l); err != nil {
			return err
		}
	}
	return enc.Flush()
}

// confusing reports a branch or tag name that git could take for another
// ref: HEAD, or one that starts with refs/.
func confusing(ref string) bool {
	name, ok := strings.CutPrefix(ref, "refs/heads/")
	if !ok {
		name = strings.TrimPrefix(ref, "refs/tags/")
	}
	return name == "HEAD" || strings.HasPrefix(name, "refs/")
}

// oneLine makes a reason fit git's status line: one line of printable
// text (control characters, terminal escapes among them, become '?'),
// bounded.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\t' && r != '\n' {
			return '?'
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 300 {
		s = string(r[:300]) + "…"
	}
	if s == "" {
		s = "not deployed"
	}
	return s
}

// dropWriter passes writes on from a goroutine through a bounded queue.
// A reader that keeps up loses nothing (a full queue makes Write wait);
// one that takes nothing for stuckAfter (a git client that went away and
// left receive-pack not reading) is given up on: from then on writes are
// dropped, so the hook still answers git and the server never waits on
// it (the server's own bound on a client that does not read is longer).
type dropWriter struct {
	ch   chan []byte
	done chan struct{}
	once sync.Once

	mu     sync.Mutex
	closed bool
	stuck  bool
}

const stuckAfter = 10 * time.Second

func newDropWriter(w io.Writer) *dropWriter {
	d := &dropWriter{ch: make(chan []byte, 256), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for b := range d.ch {
			_, _ = w.Write(b)
		}
	}()
	return d
}

func (d *dropWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.stuck {
		return len(p), nil
	}
	t := time.NewTimer(stuckAfter)
	defer t.Stop()
	select {
	case d.ch <- append([]byte(nil), p...):
	case <-t.C:
		d.stuck = true
	}
	return len(p), nil
}

// Close lets the queue drain for a few seconds at most. Writes after it
// are dropped.
func (d *dropWriter) Close() {
	d.once.Do(func() {
		d.mu.Lock()
		d.closed = true
		close(d.ch)
		d.mu.Unlock()
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
		}
	})
}

// siteOfRepo maps the hook's repository to its site: it must be
// <data>/repos/NAME.git.
func siteOfRepo(d deployer.Data, gitDir string) (string, error) {
	abs, err := filepath.Abs(gitDir)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	repos := d.ReposDir()
	if real, err := filepath.EvalSymlinks(repos); err == nil {
		repos = real
	}
	name, ok := strings.CutSuffix(filepath.Base(abs), ".git")
	if !ok || filepath.Dir(abs) != repos || names.Site(name) != nil {
		return "", fmt.Errorf("%s is not a site repository of %s", abs, d.Dir)
	}
	return name, nil
}

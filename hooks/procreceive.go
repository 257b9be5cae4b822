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
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/keys"
)

// ProcReceive is `eeveon hook proc-receive`. git receive-pack runs it in
// the site's bare repository for the refs in receive.procReceiveRefs (the
// branches), after the pushed objects are stored and instead of
// updating those refs itself; it speaks git's pkt-line protocol on stdin
// and stdout (githooks(5), proc-receive). For the site's branch it hands
// the commit to the daemon, which deploys it and moves the branch only if
// the deploy went live, and streams the deploy's progress to stderr (the
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
	if err := encode(enc, "version=1"); err != nil {
		return 1
	}
	cmds, err := readSection(sc)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: proc-receive: read commands: %v\n", err)
		return 1
	}
	var answer []string
	site, err := siteOfRepo(d, gitDir)
	var s deployer.Site
	if err == nil {
		s, err = deployer.LoadSite(d, site)
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
			fmt.Fprintf(stderr, "eeveon: %v\n", err)
			answer = append(answer, "ng "+ref+" "+oneLine(err.Error()))
		case ref != s.Ref():
			if strings.Trim(commit, "0") != "" {
				fmt.Fprintf(stderr, "==> stored %s; only %s deploys %s\n", strings.TrimPrefix(ref, "refs/heads/"), s.Branch, s.Name)
			}
			answer = append(answer, "ok "+ref, "option fall-through")
		default:
			code, reason := deploy(d, gitDir, s, old, commit, ref, stderr)
			if code == 0 {
				answer = append(answer, "ok "+ref)
			} else {
				answer = append(answer, "ng "+ref+" "+oneLine(reason))
			}
		}
	}
	if err := encode(enc, answer...); err != nil {
		return 1
	}
	return 0
}

// deploy hands one push of the site's branch to the daemon, after keeping
// the commit under deployer.PushedRef (the branch itself moves only when
// the deploy goes live, so nothing pushed is lost whatever happens next).
func deploy(d deployer.Data, gitDir string, s deployer.Site, old, commit, ref string, stderr io.Writer) (int, string) {
	if strings.Trim(commit, "0") != "" {
		out, err := exec.Command("git", "--git-dir", gitDir, "update-ref", "-m", "eeveon: pushed", deployer.PushedRef, commit).CombinedOutput()
		if err != nil {
			fmt.Fprintf(stderr, "eeveon: keep the pushed commit: %v: %s\n", err, bytes.TrimSpace(out))
			return 1, "not deployed: the server could not keep the pushed commit"
		}
	}
	req := control.Request{Push: &control.Push{Site: s.Name, Ref: ref, Old: old, New: commit}, Claim: claimFromEnv()}
	res, err := control.CallResult(d.Socket(), req, stderr, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: %v\n", err)
		if errors.Is(err, control.ErrNoServer) {
			fmt.Fprintf(stderr, "eeveon: the push is kept in %s as %s but was not deployed; once the server runs, push again or run: eeveon deploy %s --ref %s\n",
				d.Repo(s.Name), deployer.PushedRef, s.Name, commit)
			return 1, "not deployed: the eeveon server is not running"
		}
		return 1, "not deployed: " + err.Error()
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

// oneLine makes a reason fit git's status line: one line, bounded.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		s = "not deployed"
	}
	return s
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

// claimFromEnv is the pusher's identity, set by the embedded SSH server
// (or the OpenSSH forced command) on git receive-pack's environment. A
// local push has none; the daemon then goes by the Unix account.
func claimFromEnv() *keys.Identity {
	user := os.Getenv("EEVEON_HOOK_USER")
	if user == "" {
		return nil
	}
	id := &keys.Identity{
		User: user, Role: keys.Role(os.Getenv("EEVEON_HOOK_ROLE")),
		Fingerprint: os.Getenv("EEVEON_HOOK_FINGERPRINT"), Remote: os.Getenv("EEVEON_HOOK_REMOTE"),
		Source: os.Getenv("EEVEON_HOOK_SOURCE"),
	}
	if s := os.Getenv("EEVEON_HOOK_SITES"); s != "" {
		id.Sites = strings.Split(s, ",")
	}
	return id
}

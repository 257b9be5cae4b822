// Package hooks holds the entry points that git and OpenSSH call: the
// post-receive hook that hands a push to the daemon (and, in later work,
// the OpenSSH forced command). They are thin clients of the control socket.
package hooks

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/eeveon/eeveon/deployer"
	"github.com/eeveon/eeveon/deployer/control"
	"github.com/eeveon/eeveon/deployer/names"
	"github.com/eeveon/eeveon/keys"
)

// PostReceive is `eeveon hook post-receive`: git runs it in the bare
// repo after a push, with "old new ref" lines on stdin. It sends them to
// the daemon, which deploys, and streams the deploy's progress to the
// pusher (git shows it as remote: lines). Its exit status cannot undo the
// push; a failure only says that the commit was stored but not deployed.
func PostReceive(d deployer.Data, gitDir string, stdin io.Reader, stdout, stderr io.Writer) int {
	site, err := siteOfRepo(d, gitDir)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: %v\n", err)
		return 1
	}
	input, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: read pushed refs: %v\n", err)
		return 1
	}
	req := control.Request{Args: []string{"post-receive", site}, Input: input, Claim: claimFromEnv()}
	code, err := control.Call(d.Socket(), req, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "eeveon: %v\n", err)
		if errors.Is(err, control.ErrNoServer) {
			fmt.Fprintf(stderr, "eeveon: the push is stored in %s but was not deployed; once the server runs, deploy it with: eeveon deploy %s\n", site, site)
		}
		return 1
	}
	return code
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

package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// hookMarker identifies a hook written by eeveon (both of them carry it).
const hookMarker = "# eeveon post-receive hook"

// IsEeveonHook reports whether a hook is one eeveon wrote.
func IsEeveonHook(content []byte) bool { return bytes.Contains(content, []byte(hookMarker)) }

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ProcReceiveScript is the proc-receive hook installed in every bare
// repo: git hands it every pushed ref (receive.procReceiveRefs) instead of
// updating them itself, and it re-enters the eeveon binary, which
// has the server move the branch (as git would, and back when the deploy
// does not go live) and deploy the commit. Its answer is the push's: a deploy that did not go
// live rejects the ref, and git push exits non-zero.
func ProcReceiveScript(exe string, d Data) []byte {
	return []byte("#!/bin/sh\n" + hookMarker + " (proc-receive; rewritten by eeveon)\nexec " +
		ShellQuote(exe) + " hook proc-receive --data " + ShellQuote(d.Dir) + "\n")
}

// PostReceiveScript is the post-receive hook: it deploys nothing (the
// proc-receive hook did) and runs the repository's own post-receive hook,
// kept as post-receive.local, after the push as git would.
func PostReceiveScript() []byte {
	return []byte(`#!/bin/sh
` + hookMarker + ` (rewritten by eeveon; put a hook of your own in post-receive.local,
# or one that must be able to stop a deploy in pre-receive)
if ! git config --get-all receive.procReceiveRefs | grep -qx refs; then
	echo "eeveon: this repository stores pushes without deploying them (receive.procReceiveRefs is not set): run eeveon hooks install" >&2
fi
if [ -x hooks/post-receive.local ]; then
	exec hooks/post-receive.local
fi
exit 0
`)
}

// EnsureRepo creates the site's bare repository if it is missing and
// (re)writes its hooks so that they call exe, with every pushed ref going
// through the proc-receive hook (with no exe: neither, a repository for
// tests and the poller). A post-receive hook that eeveon did not write is
// moved to post-receive.local and still runs.
func EnsureRepo(d Data, name, exe string) error {
	repo := d.Repo(name)
	if _, err := os.Stat(filepath.Join(repo, "HEAD")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(d.ReposDir(), 0o700); err != nil {
			return fmt.Errorf("create repo %s: %w", name, err)
		}
		out, err := exec.Command("git", "init", "--quiet", "--bare", repo).CombinedOutput()
		if err != nil {
			return fmt.Errorf("create repo %s: git init: %v: %s", name, err, bytes.TrimSpace(out))
		}
		// Verify objects on receive: a corrupt push is refused, not deployed.
		if out, err := exec.Command("git", "--git-dir", repo, "config", "receive.fsckObjects", "true").CombinedOutput(); err != nil {
			return fmt.Errorf("configure repo %s: %v: %s", name, err, bytes.TrimSpace(out))
		}
	}
	if exe == "" {
		return nil
	}
	// In this order, so that a failure half-way leaves a repository that
	// still deploys (an older eeveon's post-receive hook) or deploys the
	// new way, never one that takes pushes and deploys nothing.
	if err := writeHook(repo, name, "proc-receive", ProcReceiveScript(exe, d), false); err != nil {
		return err
	}
	// Every ref: the hook deploys the site's branch, leaves other branches
	// and tags to git and refuses the rest (refs/replace, refs/eeveon).
	if out, err := exec.Command("git", "--git-dir", repo, "config", "--replace-all", "receive.procReceiveRefs", "refs").CombinedOutput(); err != nil {
		return fmt.Errorf("configure repo %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	// eeveon's own refs (the last push, one per live release) are not
	// shown to clients.
	if out, err := exec.Command("git", "--git-dir", repo, "config", "--replace-all", "transfer.hideRefs", "refs/eeveon").CombinedOutput(); err != nil {
		return fmt.Errorf("configure repo %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return writeHook(repo, name, "post-receive", PostReceiveScript(), true)
}

// writeHook writes one of eeveon's hooks unless it is there already. A
// foreign hook in its place is kept as NAME.local when keep is set (the
// hook runs it), and refused otherwise.
func writeHook(repo, site, name string, want []byte, keep bool) error {
	hook := filepath.Join(repo, "hooks", name)
	old, err := os.ReadFile(hook)
	switch {
	case err == nil && bytes.Equal(old, want):
		return nil
	case err == nil && !IsEeveonHook(old) && !keep:
		return fmt.Errorf("%s is not eeveon's: eeveon deploys through this hook; move it away and run eeveon hooks install %s", hook, site)
	case err == nil && !IsEeveonHook(old):
		if _, err := os.Stat(hook + ".local"); err == nil {
			return fmt.Errorf("%s: a hook that is not eeveon's replaced ours, and %s.local exists too; merge yours into %s.local and run eeveon hooks install %s", hook, name, name, site)
		}
		if err := os.Rename(hook, hook+".local"); err != nil {
			return fmt.Errorf("keep existing hook of %s: %w", site, err)
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read hook of %s: %w", site, err)
	}
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		return fmt.Errorf("install hook for %s: %w", site, err)
	}
	return WriteFileAtomic(hook, want, 0o755)
}

// PrepareRepo makes a site's repository ready for pushes: it exists, its
// hooks call exe (see EnsureRepo), and its HEAD names the site's branch (so that a clone checks the
// deployed branch out).
func PrepareRepo(d Data, s Site, exe string) error {
	if err := EnsureRepo(d, s.Name, exe); err != nil {
		return err
	}
	out, err := exec.Command("git", "--git-dir", d.Repo(s.Name), "symbolic-ref", "HEAD", s.Ref()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("set HEAD of %s: %v: %s", s.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// PushedRef holds the commit of the last push to a site's branch, whatever
// its deploy did: the branch goes back to the live commit when a deploy
// does not go live (and a push the server never took does not move it),
// so this ref keeps such a push (and its objects) in the repository.
const PushedRef = "refs/eeveon/pushed"

// NoReplaceObjects is in the environment of every git eeveon runs on a
// site's repository: refs/replace would make a commit id check out (and
// show, and be approved) as other content.
const NoReplaceObjects = "GIT_NO_REPLACE_OBJECTS=1"

// git runs a git command and returns its trimmed stdout.
func git(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(append(os.Environ(), NoReplaceObjects), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		return "", fmt.Errorf("git %s: %s", gitSubcommand(args), firstNonEmpty(msg, err.Error()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// gitSubcommand names the git command in args for error messages: the
// first word after the global options (--git-dir X, --work-tree X, -c X).
func gitSubcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--git-dir" || a == "--work-tree" || a == "-c":
			i++
		case !strings.HasPrefix(a, "-"):
			return a
		}
	}
	return "command"
}

// abbrevRe is what git could take for an abbreviated object id.
var abbrevRe = regexp.MustCompile(`^[0-9a-fA-F]{4,63}$`)

// ResolveCommit resolves a revision in the site's repo to a full commit id.
// An abbreviated commit id that is also the name of a ref (a tag a
// deployer pushed, say) is refused as ambiguous: git would take the ref.
func ResolveCommit(ctx context.Context, d Data, site, rev string) (string, error) {
	if abbrevRe.MatchString(rev) && len(rev) != 40 {
		if full, _ := git(ctx, nil, "--git-dir", d.Repo(site), "rev-parse", "--verify", "--quiet", "--symbolic-full-name", "--end-of-options", rev); full != "" {
			return "", fmt.Errorf("%w: %q in %s is both %s and maybe an abbreviated commit id; give the full commit id or the full ref name", ErrUnknownRevision, rev, site, full)
		}
	}
	if !strings.HasPrefix(rev, "refs/") {
		// A deployer's tag may shadow a branch of the same name (git takes
		// the tag): a short name that is both is refused.
		out, _ := git(ctx, nil, "--git-dir", d.Repo(site), "for-each-ref", "--format=%(refname)", "refs/heads/"+rev, "refs/tags/"+rev)
		if n := strings.Count(out+"\n", "refs/heads/"+rev+"\n") + strings.Count(out+"\n", "refs/tags/"+rev+"\n"); n > 1 {
			return "", fmt.Errorf("%w: %q in %s is both a branch and a tag; give refs/heads/%s or refs/tags/%s", ErrUnknownRevision, rev, site, rev, rev)
		}
	}
	out, err := git(ctx, nil, "--git-dir", d.Repo(site), "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil || out == "" {
		return "", fmt.Errorf("%w: %q in %s", ErrUnknownRevision, rev, site)
	}
	return out, nil
}

// ErrUnknownRevision is returned when a ref or commit is not in the repo.
var ErrUnknownRevision = errors.New("unknown revision")

package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// hookMarker identifies a post-receive hook written by eeveon.
const hookMarker = "# eeveon post-receive hook"

// IsEeveonHook reports whether a post-receive hook is one eeveon wrote.
func IsEeveonHook(content []byte) bool { return bytes.Contains(content, []byte(hookMarker)) }

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// HookScript is the post-receive hook installed in every bare repo: a
// thin shell that re-enters the eeveon binary, which hands the pushed refs
// to the server.
func HookScript(exe string, d Data) []byte {
	run := ShellQuote(exe) + " hook post-receive --data " + ShellQuote(d.Dir)
	return []byte(`#!/bin/sh
` + hookMarker + ` (rewritten by eeveon; put a hook of your own in post-receive.local)
if [ -x hooks/post-receive.local ]; then
	input=$(cat)
	printf '%s\n' "$input" | hooks/post-receive.local || {
		echo "eeveon: hooks/post-receive.local failed (exit $?); not deploying" >&2
		exit 1
	}
	printf '%s\n' "$input" | ` + run + `
	exit $?
fi
exec ` + run + "\n")
}

// EnsureRepo creates the site's bare repository if it is missing and
// (re)writes its post-receive hook so that it calls exe. A hook that
// eeveon did not write is moved to post-receive.local and still runs,
// before ours.
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
	hook := filepath.Join(repo, "hooks", "post-receive")
	want := HookScript(exe, d)
	old, err := os.ReadFile(hook)
	switch {
	case err == nil && bytes.Equal(old, want):
		return nil
	case err == nil && !IsEeveonHook(old):
		if _, err := os.Stat(hook + ".local"); err == nil {
			return fmt.Errorf("%s: a hook that is not eeveon's replaced ours, and post-receive.local exists too; merge yours into post-receive.local and run eeveon hooks install %s", hook, name)
		}
		if err := os.Rename(hook, hook+".local"); err != nil {
			return fmt.Errorf("keep existing hook of %s: %w", name, err)
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read hook of %s: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		return fmt.Errorf("install hook for %s: %w", name, err)
	}
	return WriteFileAtomic(hook, want, 0o755)
}

// PrepareRepo makes a site's repository ready for pushes: it exists, its
// hook calls exe, and its HEAD names the site's branch (so that a clone
// checks the deployed branch out).
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

// git runs a git command and returns its trimmed stdout.
func git(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), env...)
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

// ResolveCommit resolves a revision in the site's repo to a full commit id.
func ResolveCommit(ctx context.Context, d Data, site, rev string) (string, error) {
	out, err := git(ctx, nil, "--git-dir", d.Repo(site), "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil || out == "" {
		return "", fmt.Errorf("%w: %q in %s", ErrUnknownRevision, rev, site)
	}
	return out, nil
}

// ErrUnknownRevision is returned when a ref or commit is not in the repo.
var ErrUnknownRevision = errors.New("unknown revision")
